"""From an operator's configuration to the OS sandbox policy one plugin applies to itself."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from urllib.parse import urlsplit

from bot.rosey.config import AdapterConfig, PluginConfig, RoseyConfig, SandboxMode
from bot.rosey.plugins.process.foreign import exec_grants
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.supervision.spec import PluginSpec

__all__ = [
    "DATA_HEADROOM_MB",
    "adapter_sandbox",
    "holds_operator_files",
    "nats_port",
    "plugin_url",
    "sandbox_for",
]

logger = logging.getLogger(__name__)

DATA_HEADROOM_MB = 256  # executor thread stacks (8 MB each) and allocator slack


def holds_operator_files(directory: Path, config: RoseyConfig) -> bool:
    """Whether a directory holds the operator's rosey.toml or state (plugin_envs asks it too)."""
    sensitive = [config.state_dir.resolve()]
    if config.source is not None:
        sensitive.append(config.source.resolve())
    return any(path == directory or path.is_relative_to(directory) for path in sensitive)


def plugin_url(url: str) -> str:
    """The NATS URL to hand a plugin: the core's URL without the core's credentials in it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def nats_port(url: str) -> int:
    """The TCP port a plugin must reach for NATS (4222 when the URL names none)."""
    return urlsplit(url).port or 4222


def sandbox_for(
    config: RoseyConfig,
    plugin: PluginConfig,
    spec: PluginSpec,
    *,
    data_dir: Path,
    nats_url: str,
    module_file: Path | None = None,
    own_environment: Path | None = None,
) -> SandboxPolicy:
    """Default-deny policy plus this plugin's grants (``read_paths``, ``network``, ...).

    An entry-point plugin (``module_file`` given) may read its package's directory; a plugin
    with its own environment (``own_environment``, one generation under
    ``<state_dir>/venvs``) may read that one, and no other plugin's. Network
    grants open TCP connects by port (Landlock filters ports, not hosts); a grant naming a
    host rather than an IP address also allows UDP, which name resolution needs.
    """
    extra_read: list[Path] = list(plugin.read_paths)
    if module_file is not None:
        extra_read.append(module_file.resolve().parent)
    if own_environment is not None:
        extra_read.append(own_environment)
    plugin_file = spec.path
    if plugin_file is not None and holds_operator_files(plugin_file.resolve().parent, config):
        # A plugin file beside rosey.toml would make its directory, .rosey/ included (core
        # credentials, every plugin's password), readable. Grant the file alone instead.
        logger.warning(
            "plugin '%s' lives in %s, next to Rosey's configuration or state; it may read only its "
            "own file there (put plugins in their own directory, e.g. plugins/)",
            spec.name,
            plugin_file.parent,
        )
        extra_read.append(plugin_file)
        plugin_file = None
    ports = []
    needs_dns = False
    for grant in plugin.network:
        host, _, port = grant.rpartition(":")
        ports.append(int(port))
        needs_dns = needs_dns or not _is_address(host)
    return SandboxPolicy.for_plugin(
        plugin_file=plugin_file,
        data_dir=data_dir,
        nats_port=nats_port(nats_url),
        extra_read=extra_read,
        extra_write=plugin.write_paths,
        extra_ports=ports,
        allow_udp=needs_dns,
        allow_subprocess=plugin.max_processes > 0,
        # A plugin in another language: the launcher execs its program, and only that (PROTOCOL.md).
        exec_paths=exec_grants(Path(plugin.command[0])) if plugin.command else (),
        private_mounts=plugin.private_mounts,
        pid_namespace=plugin.pid_namespace,
        max_open_files=plugin.max_open_files,
        # A hard backstop far enough above the watchdog's RSS limit that the watchdog, which
        # reports the reason, normally acts first; a storm faster than its sweep stops here.
        max_data_mb=2 * plugin.max_memory_mb + DATA_HEADROOM_MB,
        # RLIMIT_FSIZE: no one file may outgrow the disk quota (EFBIG), whatever the sweeps see.
        max_file_size_mb=min(plugin.max_disk_mb, SandboxPolicy.max_file_size_mb),
        strict=config.sandbox is SandboxMode.STRICT,
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _module_grant(module_file: Path, config: RoseyConfig) -> Path:
    """A custom adapter's package directory, or its file alone beside the operator's files."""
    directory = module_file.resolve().parent
    return module_file.resolve() if holds_operator_files(directory, config) else directory


def adapter_sandbox(
    config: RoseyConfig,
    adapter: AdapterConfig,
    *,
    data_dir: Path,
    nats_url: str,
    module_file: Path | None = None,
) -> SandboxPolicy:
    """An adapter's sandbox: a plugin's defaults (read the runtime, write only its own state
    directory, no subprocess), with TCP connects to NATS and its platform's ports only.

    Landlock filters TCP by port, not host: an IRC adapter allowed port 6697 may reach 6697 on
    any host. A platform named by host name (not address) also gets UDP, for DNS.
    """
    return SandboxPolicy.for_plugin(
        plugin_file=None,
        data_dir=data_dir,
        nats_port=nats_port(nats_url),
        extra_read=[_module_grant(module_file, config)] if module_file is not None else [],
        extra_ports=adapter.tcp_ports(),
        allow_udp=any(host and not _is_address(host) for host in adapter.hosts()),
        allow_subprocess=False,
        max_open_files=256,
        max_data_mb=2 * adapter.max_memory_mb + DATA_HEADROOM_MB,
        strict=config.sandbox is SandboxMode.STRICT,
    )
