"""What a plugin process may do: the one object the runner computes and the child enforces.

The policy travels from runner to child as JSON in ``ROSEY_SANDBOX``, so it holds only plain
values; the child applies it in :func:`bot.rosey.plugins.sandbox.apply` before plugin code runs.
:meth:`SandboxPolicy.for_plugin` computes the default read-only set a Python plugin needs (the
runtime, its site-packages, the SDK package and the plugin's own directory, a few system files)
and nothing else: in an editable install the repository root holds the operator's ``rosey.toml``,
so the root itself is never granted, only its ``bot/`` package.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["SYSTEM_READ_PATHS", "SandboxPolicy"]

#: System files and directories a Python plugin reads after start-up; missing ones are skipped.
#: Measured with strace on a connected plugin: after the sandbox, CPython + asyncio + nats-py open
#: only the stdlib, site-packages, the SDK and shared libraries, and glibc's CPU count reads
#: /sys/devices/system/cpu/online (then /proc/stat, which is not granted: it describes the host).
#: Nothing under /proc is needed, so none is granted. Name resolution files are here so a NATS
#: URL with a host name ("localhost") still resolves; /etc/ssl/certs and the CA store serve
#: ``tls://`` NATS URLs. /etc/ssl/private is NOT granted.
SYSTEM_READ_PATHS: tuple[str, ...] = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/zoneinfo",
    "/usr/share/ca-certificates",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/resolv.conf",
    "/sys/devices/system/cpu/online",
    "/dev/urandom",
    "/dev/random",
)

#: Device files a plugin may open for writing as well as reading.
DEVICE_WRITE_PATHS: tuple[str, ...] = ("/dev/null",)


@dataclass(frozen=True, kw_only=True)
class SandboxPolicy:
    """The protections one plugin process applies to itself.

    ``connect_ports`` is a TCP connect allow-list by *port only*: Landlock cannot filter by
    destination host, so a plugin allowed to reach NATS on port 4222 can reach port 4222 on any
    host. Use a firewall or network namespace if the host matters.

    ``max_memory_mb`` sets RLIMIT_AS, which limits *virtual* memory, and that is a poor proxy
    for what a plugin uses. Measured here (2 CPUs): an idle connected plugin has 27 MB resident
    and 32 MB virtual with a numeric NATS URL, 107 MB virtual (peak 172 MB) once one resolver
    thread ran for a host-name URL, and 461 MB virtual for 30 MB resident once asyncio's default
    executor started its min(32, CPUs + 4) workers, each reserving an 8 MB stack and a 64 MB
    malloc arena; on a 32-CPU host that is over 2 GB. A limit low enough to matter would fail
    thread creation and malloc at random, so the default is None and the supervisor watches
    resident memory instead. If you set it, allow at least 512 MB.

    ``allow_metadata_changes``: permit chmod/chown/xattr/utime. Off by default because Landlock
    cannot restrict them and a root plugin owns every system file; the cost is that
    ``shutil.copy``/``copy2``/``copytree`` (which copy permission bits) fail with EPERM inside
    the data dir too; ``shutil.copyfile`` works.

    ``strict``: any protection that cannot be applied is fatal (exit 78, EX_CONFIG) instead of a
    one-line warning.

    ``private_mounts``: the plugin sees a file system holding only its granted paths (a mount
    namespace; :mod:`~bot.rosey.plugins.sandbox.mountns`), so ``stat()`` learns nothing of the
    rest. ``pid_namespace``: a plugin allowed to create processes gets them in a PID namespace
    that the kernel empties when the plugin dies (:mod:`~bot.rosey.plugins.sandbox.pidns`).
    Both need root, or unprivileged user namespaces; without either they are reported unavailable.

    ``exec_paths``: files the process may ``execve`` (and read), nothing else: how a plugin
    written in another language runs (the launcher sandboxes itself, then execs the program,
    see docs/plugins/PROTOCOL.md). Non-empty, it lets seccomp pass execve/execveat while fork,
    vfork and clone without CLONE_THREAD stay denied, so the process can only *become* one of
    these programs, in the same sandbox (Landlock, seccomp, no_new_privs and rlimits survive
    execve), never start a second process. Give the program and its ELF interpreter.
    """

    read_paths: tuple[str, ...] = ()
    write_paths: tuple[str, ...] = ()
    exec_paths: tuple[str, ...] = ()
    connect_ports: tuple[int, ...] = ()
    allow_bind: bool = False
    allow_udp: bool = False
    allow_subprocess: bool = False
    allow_metadata_changes: bool = False
    max_open_files: int = 256
    max_file_size_mb: int = 1024
    max_memory_mb: int | None = None
    # RLIMIT_AS when ``max_memory_mb`` is not set: a ceiling far above what any Python plugin
    # reserves, there to bound page tables. They are kernel memory no RSS figure shows, and
    # reading one byte every 2 MiB of a huge read-only mapping (the shared zero page, so RSS
    # stays flat) costs one 4 KiB page table each: measured here, 800 MB in 2.7 s at 12 MB RSS.
    # Page tables can cover at most 1/512 of the address space, so 32 GiB bounds them to 64 MiB.
    max_address_space_mb: int | None = 32 * 1024
    # RLIMIT_DATA: heap + private writable mappings (thread stacks included; glibc's PROT_NONE
    # arena reservations not). An idle plugin has ~17 MB here, so a cap well above the
    # supervisor's RSS limit stops an allocation storm without tripping normal plugins.
    max_data_mb: int | None = None
    # RLIMIT_SIGPENDING. The kernel counts queued signals per *user* and checks that count against
    # the limit of the process a signal is queued to: at the default (~96k here) one plugin
    # queueing realtime signals to itself uses up root's whole count, and then the host's own
    # sigqueue()/timer_create() fail with EAGAIN. A plugin needs none (Python's handlers use
    # standard signals, which the limit does not stop), so its share stays small.
    max_pending_signals: int = 64
    core_dumps: bool = False
    drop_capabilities: bool = True
    strict: bool = False
    private_mounts: bool = True
    pid_namespace: bool = True

    def __post_init__(self) -> None:
        # JSON gives lists; a frozen dataclass must still hold hashable tuples.
        for name in ("read_paths", "write_paths", "exec_paths"):
            value = tuple(str(p) for p in getattr(self, name))
            for path in value:
                if not os.path.isabs(path):
                    raise ValueError(f"{name} must hold absolute paths, got {path!r}")
            object.__setattr__(self, name, value)
        ports = tuple(int(p) for p in self.connect_ports)
        for port in ports:
            if not 0 < port < 65536:
                raise ValueError(f"connect_ports must be 1..65535, got {port}")
        object.__setattr__(self, "connect_ports", tuple(sorted(set(ports))))
        if self.max_open_files < 16:
            raise ValueError(f"max_open_files must be at least 16, got {self.max_open_files}")
        if self.max_file_size_mb < 1:
            raise ValueError(f"max_file_size_mb must be at least 1, got {self.max_file_size_mb}")
        if self.max_memory_mb is not None and self.max_memory_mb < 64:
            raise ValueError(f"max_memory_mb must be at least 64 (or None), got {self.max_memory_mb}")
        if self.max_address_space_mb is not None and self.max_address_space_mb < 1024:
            raise ValueError(
                f"max_address_space_mb must be at least 1024 (or None), got {self.max_address_space_mb}"
            )
        if self.max_pending_signals < 1:
            raise ValueError(f"max_pending_signals must be at least 1, got {self.max_pending_signals}")
        if self.max_data_mb is not None and self.max_data_mb < 64:
            raise ValueError(f"max_data_mb must be at least 64 (or None), got {self.max_data_mb}")

    # ------------------------------------------------------------------ wire format

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxPolicy:
        """Parse a policy; unknown keys are an error (a newer runner than launcher is a bug)."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("sandbox policy must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown sandbox policy keys: {', '.join(unknown)}")
        return cls(**raw)

    # ------------------------------------------------------------------ defaults

    @classmethod
    def for_plugin(
        cls,
        *,
        plugin_file: Path | None,
        data_dir: Path,
        nats_port: int,
        extra_read: Iterable[str | os.PathLike[str]] = (),
        extra_write: Iterable[str | os.PathLike[str]] = (),
        extra_ports: Iterable[int] = (),
        **options: Any,
    ) -> SandboxPolicy:
        """The default policy for one plugin: read the runtime, write ``data_dir``, reach NATS.

        ``plugin_file`` None means an entry-point plugin (``package.module:Class``): pass its
        package directory in ``extra_read`` unless it lives in site-packages.
        ``options`` are the remaining fields (``strict``, ``allow_udp``, ``max_open_files``, ...).
        Read paths that do not exist are dropped here; the child skips any path still missing
        when it applies the policy (``data_dir`` is created by the runner just before spawning).
        """
        read = [*SYSTEM_READ_PATHS]
        if plugin_file is not None:
            read.append(str(Path(plugin_file).resolve().parent))
        read.extend(str(Path(p).resolve()) for p in extra_read)
        write = [str(Path(data_dir).resolve()), *DEVICE_WRITE_PATHS]
        write.extend(str(Path(p).resolve()) for p in extra_write)
        return cls(
            read_paths=_existing_unique(read, resolved=_runtime_real_paths()),
            write_paths=tuple(dict.fromkeys(write)),
            connect_ports=(nats_port, *extra_ports),
            **options,
        )


def sdk_package_dir() -> Path:
    """The ``bot`` package directory (not the checkout that contains it)."""
    return Path(__file__).resolve().parents[3]


def python_runtime_paths() -> list[str]:
    """What the interpreter itself reads after start-up: stdlib, extension modules, site-packages.

    Only the ``lib`` directories of each prefix are granted, not the prefix: a virtualenv made in
    the repository root would otherwise expose the operator's configuration next to it.
    """
    import site
    import sysconfig

    paths: list[str] = [os.path.realpath(sys.executable)]
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for lib in ("lib", "lib64"):
            paths.append(os.path.join(prefix, lib))
    scheme = sysconfig.get_paths()
    paths.extend(scheme[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in scheme)
    paths.extend(site.getsitepackages())
    return paths


@functools.cache
def _runtime_real_paths() -> tuple[str, ...]:
    """The real paths of the interpreter's and the SDK's read paths, resolved once per process.

    They cannot change while this interpreter runs (its prefixes, its site-packages, where this
    package was imported from), and resolving them was half of every policy's cost: ~2 ms of
    ``lstat`` calls on the host's event loop per plugin start (issue 17: 50 starts at once).
    """
    runtime = [*python_runtime_paths(), str(sdk_package_dir())]
    return tuple(os.path.realpath(p) for p in runtime if os.path.lexists(p))


def _existing_unique(paths: Iterable[str], resolved: Iterable[str] = ()) -> tuple[str, ...]:
    """Real paths of ``resolved`` (real already) and of the existing ``paths``, without those
    already beneath another one."""
    real = dict.fromkeys([*resolved, *(os.path.realpath(p) for p in paths if os.path.lexists(p))])
    return tuple(p for p in real if not any(p.startswith(other.rstrip("/") + "/") for other in real))
