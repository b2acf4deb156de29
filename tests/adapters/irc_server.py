"""Real IRC servers on loopback for the IRC adapter's tests: miniircd always, ngircd when installed.

``irc_server`` is module scoped and parametrized over both servers (ngircd is skipped, naming
the Debian package, when ``ngircd`` is not on PATH). Each server listens on 127.0.0.1 on a port
picked at random and tried: a port that is taken makes the server exit with a bind error, and
the next one is tried (miniircd and ngircd cannot report a port the kernel chose; ngircd refuses
port 0). Readiness is the server's own "listening"/"ready" line on its output, never a sleep.
``stop()`` and ``restart()`` signal only the PID this fixture started.

What each server enforces (measured here, see the notes): miniircd has no flood control, no
channel modes but +k, no CAP beyond an empty ``CAP LS``; ngircd 26 processes about 3 commands
per second per user (a faster client is delayed, not disconnected), gives +o to a channel's
creator, knows +q +a +o +h +v, and closes a connection on an over-long line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydle
import pytest

from bot.rosey.adapters.irc import IrcAdapter
from bot.rosey.core.chat import OutgoingMessage
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects

KINDS = ("miniircd", "ngircd")
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
OPER_PASSWORD = "oper-pw-test"


@dataclass
class IrcServer:
    kind: str
    work_dir: Path
    password: str | None = None
    tls: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)
    _drainer: Any = None

    @property
    def pem(self) -> Path:
        return self.work_dir / "server.pem"

    def start(self, port: int | None = None) -> None:
        """Start on ``port`` (a restart) or on a free random port; return once it listens."""
        attempts = [port] if port else [random.randint(20000, 60000) for _ in range(20)]
        for candidate in attempts:
            if self._start_on(candidate):
                self.port = candidate
                return
        raise RuntimeError(f"{self.kind} did not start:\n" + "\n".join(self.output[-30:]))

    def _command(self, port: int) -> list[str]:
        if self.kind == "miniircd":
            miniircd = Path(sys.executable).with_name("miniircd")
            command = [str(miniircd), "--listen", HOST, "--ports", str(port), "--verbose"]
            if os.getuid() == 0:
                command += ["--setuid", "root"]  # miniircd refuses to run as root without it
            if self.password:
                command += ["--password", self.password]
            if self.tls:
                command += ["--ssl-pem-file", str(self.pem)]
            return command
        config = self.work_dir / "ngircd.conf"
        lines = [
            "[Global]",
            "Name = irc.rosey.test",
            "Info = Rosey test server",
            f"Listen = {HOST}",
            f"Ports = {port}",
            "AdminInfo1 = Rosey tests",
            "AdminInfo2 = loopback",
            "AdminEMail = nobody@localhost",
        ]
        if self.password:
            lines.append(f"Password = {self.password}")
        lines += ["[Limits]", "MaxConnectionsIP = 0", "PingTimeout = 120", "PongTimeout = 60"]
        lines += [
            "[Options]",
            "PAM = no",
            "Ident = no",
            "DNS = no",
            "MorePrivacy = no",
            "OperCanUseMode = yes",
        ]
        # An IRC operator may set +q/+a (owner, admin), which no channel op can on ngircd.
        lines += ["[Operator]", "Name = tester", f"Password = {OPER_PASSWORD}"]
        config.write_text("\n".join(lines) + "\n")
        return [shutil.which("ngircd") or "ngircd", "-n", "-f", str(config)]

    def _start_on(self, port: int) -> bool:
        self.proc = subprocess.Popen(
            self._command(port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready = "Listening on port" if self.kind == "miniircd" else "ready."
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        buffer = b""
        try:
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:  # exited: most likely the port was taken
                    self.proc.wait()
                    self.proc.stdout.close()
                    return False
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    self.output.append(text)
                    if "bind" in text.lower() and ("can't" in text.lower() or "could not" in text.lower()):
                        self._kill()
                        return False
                    if ready in text:
                        self._drain_in_background()
                        return True
        finally:
            selector.close()
        self._kill()
        raise RuntimeError(
            f"{self.kind} gave no ready line in {START_TIMEOUT} s:\n" + "\n".join(self.output[-30:])
        )

    def _drain_in_background(self) -> None:
        """Keep reading the server's output so that it never blocks on a full pipe."""
        import threading

        proc = self.proc
        assert proc is not None and proc.stdout is not None
        stream = proc.stdout

        def drain() -> None:
            for line in iter(stream.readline, b""):
                self.output.append(line.decode(errors="replace").rstrip())

        self._drainer = threading.Thread(target=drain, daemon=True)
        self._drainer.start()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        """Stop the server this fixture started (SIGTERM, then SIGKILL), by its PID."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is not None:
            self._kill()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._drainer is not None:
            self._drainer.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def restart(self) -> None:
        self.stop()
        self.start(self.port)


def make_pem(path: Path) -> None:
    """A self-signed certificate and key for 127.0.0.1, for miniircd's TLS listener."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(path),
            "-out",
            str(path.with_suffix(".crt")),
        ],
        check=True,
        capture_output=True,
    )
    path.write_bytes(path.read_bytes() + path.with_suffix(".crt").read_bytes())


def skip_unless_installed(kind: str) -> None:
    if kind == "ngircd" and shutil.which("ngircd") is None:
        pytest.skip("ngircd is not installed (Debian package `ngircd`: apt-get install ngircd)")


@pytest.fixture(scope="module", params=KINDS)
def irc_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IrcServer]:
    """A real IRC server (miniircd, then ngircd) for this test module."""
    kind: str = request.param
    skip_unless_installed(kind)
    server = IrcServer(kind, tmp_path_factory.mktemp(kind))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_server(kind: str, work_dir: Path, *, password: str | None = None, tls: bool = False) -> IrcServer:
    """A server with options (a password, TLS) for one test; the caller stops it."""
    skip_unless_installed(kind)
    work_dir.mkdir(parents=True, exist_ok=True)
    server = IrcServer(kind, work_dir, password=password, tls=tls)
    if tls:
        make_pem(server.pem)
    server.start()
    return server


# ---------------------------------------------------------------------- the people in the tests


class IrcUser(pydle.Client):  # type: ignore[misc]
    """A human on the server, on the same client library as the adapter: records every line."""

    RECONNECT_ON_ERROR = False

    def __init__(self, nick: str) -> None:
        super().__init__(nick, fallback_nicknames=[])
        self.seen: list[Any] = []
        self._used: set[int] = set()
        self._new = asyncio.Event()
        self.welcomed = asyncio.Event()

    async def on_data(self, data: bytes) -> None:  # one line after the other, in order
        self._receive_buffer += data
        while self._has_message():
            await self.on_raw(self._parse_message())

    async def whois(self, nickname: str) -> None:  # lines are handled in order: never wait for one
        return None

    async def on_raw(self, message: Any) -> None:
        self.seen.append(message)
        self._new.set()
        await super().on_raw(message)

    async def on_connect(self) -> None:
        await super().on_connect()
        self.welcomed.set()

    async def send(self, line: str | bytes) -> None:
        """One raw line (bytes are sent as they are, invalid UTF-8 included)."""
        data = line if isinstance(line, bytes) else line.encode()
        await self.connection.send(data + b"\r\n")

    async def expect(self, match: Callable[[Any], bool], timeout: float = 20.0) -> Any:
        """The first line not taken yet that ``match``es, waiting for it to arrive."""
        async with asyncio.timeout(timeout):
            while True:
                for index, message in enumerate(self.seen):
                    if index not in self._used and match(message):
                        self._used.add(index)
                        return message
                self._new.clear()
                await self._new.wait()

    async def said_by(self, nick: str, target: str, timeout: float = 20.0) -> str:
        """The text of the next PRIVMSG from ``nick`` to ``target``."""
        message = await self.expect(
            lambda m: (
                m.command == "PRIVMSG" and (m.source or "").split("!")[0] == nick and m.params[0] == target
            ),
            timeout,
        )
        return str(message.params[1])

    async def joined(self, channel: str, nick: str | None = None, timeout: float = 20.0) -> None:
        nick = nick or self.nickname
        await self.expect(
            lambda m: (
                m.command == "JOIN"
                and (m.source or "").split("!")[0].lower() == nick.lower()
                and m.params[0].lower() == channel.lower()
            ),
            timeout,
        )


async def connect_user(
    server: IrcServer, nick: str, channels: Sequence[str] = (), *, password: str | None = None
) -> IrcUser:
    """A user connected to ``server`` (registered) who joined ``channels``."""
    user = IrcUser(nick)
    await user.connect(HOST, server.port, tls=server.tls, tls_verify=False, password=password)
    async with asyncio.timeout(20):
        await user.welcomed.wait()
    for channel in channels:
        await user.send(f"JOIN {channel}")
        await user.joined(channel, nick)
        await user.expect(lambda m, c=channel: m.command == 366 and m.params[1].lower() == c.lower())
    return user


class Inbound:
    """What an adapter publishes on ``rosey.adapters.<name>.events.>``, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._used: set[int] = set()
        self._new = asyncio.Event()

    async def handle(self, event: Event) -> None:
        self.events.append((event.subject.rsplit(".", 1)[-1], dict(event.data)))
        self._new.set()

    async def next(self, kind: str | None = None, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """The first event not taken yet of ``kind`` whose data has ``fields`` (``user`` is the nick)."""
        async with asyncio.timeout(timeout):
            while True:
                for index, (event_kind, data) in enumerate(self.events):
                    if index in self._used or (kind is not None and event_kind != kind):
                        continue
                    if all(_field(data, key) == value for key, value in fields.items()):
                        self._used.add(index)
                        return data
                self._new.clear()
                await self._new.wait()

    def all(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [data for event_kind, data in self.events if kind is None or event_kind == kind]


def _field(data: dict[str, Any], key: str) -> Any:
    return data["user"]["id"] if key == "user" else data.get(key)


class RunningAdapter:
    def __init__(
        self, adapter: IrcAdapter, task: asyncio.Task[None], bus: EventBus, inbound: Inbound
    ) -> None:
        self.adapter = adapter
        self.task = task
        self.bus = bus
        self.inbound = inbound

    async def say(self, text: str, *, channel: str | None = None, private_to: str | None = None) -> None:
        message = OutgoingMessage(text=text, channel=channel, private_to=private_to)
        await self.bus.publish(Subjects.chat_send(self.adapter.name), message.to_wire(), source="test")

    async def connected(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            await self.adapter.outbox.connected.wait()


@asynccontextmanager
async def running_adapter(
    server: IrcServer,
    nats_url: str,
    state_dir: Path,
    *,
    nick: str,
    channels: Sequence[str] = (),
    name: str = "irc",
    secrets: dict[str, str] | None = None,
    wait: bool = True,
    **settings: Any,
) -> AsyncIterator[RunningAdapter]:
    """An IrcAdapter in this process on ``server``, with a bus to talk to it; stopped afterwards."""
    config: dict[str, Any] = {
        "server": HOST,
        "port": server.port,
        "tls": server.tls,
        "tls_verify": False,
        "nick": nick,
        "channels": list(channels),
        "reconnect_min": 0.2,
        "reconnect_max": 1.0,
        **settings,
    }
    adapter = IrcAdapter(
        name=name, settings=config, secrets=secrets or {}, state_dir=state_dir, nats_url=nats_url
    )
    bus = EventBus(nats_url, name="irc-test")
    await bus.connect()
    inbound = Inbound()
    await bus.subscribe(Subjects.all_adapter_events(name), inbound.handle)
    await bus.flush()
    task = asyncio.create_task(adapter.run())
    running = RunningAdapter(adapter, task, bus, inbound)
    try:
        if wait:
            await running.connected()
        yield running
    finally:
        adapter.stop()
        async with asyncio.timeout(15):
            await task
        await bus.disconnect()


class LogWatch(logging.Handler):
    """Records of ``bot.rosey.adapters`` loggers while active; ``found`` is set by one containing
    ``needle`` (an event to wait on, e.g. the adapter's "disconnected")."""

    def __init__(self, needle: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.needle = needle
        self.found = asyncio.Event()
        self.messages: list[str] = []
        self._logger = logging.getLogger("bot.rosey.adapters")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.needle in message:
            self.found.set()

    def __enter__(self) -> LogWatch:
        self._level = self._logger.level
        self._logger.setLevel(self.level)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    async def wait(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            await self.found.wait()


# ---------------------------------------------------------------------- a network with services

INSPIRCD_CONF = """
<server name="irc.rosey.test" description="Rosey test" network="RoseyTest" id="42X">
<admin name="test" nick="test" email="test@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<bind address="127.0.0.1" port="{link}" type="servers">
<connect name="main" allow="*" timeout="60" pingfreq="120" sendq="262144" recvq="8192"
         localmax="100" globalmax="100" useident="no" resolvehostnames="no">
<pid file="{work}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{work}/inspircd.log">
<module name="spanningtree">
<module name="services_account">
<module name="sasl">
<module name="cap">
<module name="ircv3">
<link name="services.rosey.test" ipaddr="127.0.0.1" port="{link}" allowmask="127.0.0.0/8"
      sendpass="{link_password}" recvpass="{link_password}">
<uline server="services.rosey.test" silent="yes">
<sasl target="services.rosey.test" requiressl="no">
"""

ATHEME_CONF = """
loadmodule "modules/protocol/inspircd";
loadmodule "modules/backend/opensex";
loadmodule "modules/crypto/pbkdf2v2";
loadmodule "modules/nickserv/main";
loadmodule "modules/nickserv/identify";
loadmodule "modules/nickserv/register";
loadmodule "modules/saslserv/main";
loadmodule "modules/saslserv/plain";
serverinfo {{
    name = "services.rosey.test"; desc = "Rosey test services"; numeric = "00A"; recontime = 1;
    netname = "RoseyTest"; hidehostsuffix = "users.rosey"; adminname = "test";
    adminemail = "test@localhost"; registeremail = "test@localhost"; mta = "/bin/false";
    loglevel = {{ error; info; admin; network; }}; maxlogins = 5; maxusers = 5; mdlimit = 30;
    emaillimit = 10; emailtime = 300; auth = none; casemapping = rfc1459;
}};
uplink "irc.rosey.test" {{
    host = "127.0.0.1"; port = {link};
    send_password = "{link_password}"; receive_password = "{link_password}";
}};
nickserv {{ nick = "NickServ"; user = "NickServ"; host = "services.rosey.test"; real = "Nicks"; }};
saslserv {{ nick = "SaslServ"; user = "SaslServ"; host = "services.rosey.test"; real = "SASL Agent"; }};
general {{ flood_msgs = 50; flood_time = 10; ratelimit_uses = 50; ratelimit_period = 60; }};
"""


@dataclass
class ServicesNetwork:
    """InspIRCd 3 linked to Atheme 7 services (Debian ``inspircd``, ``atheme-services``): the
    shape of a real network with SASL (SaslServ) and NickServ, on loopback."""

    work_dir: Path
    port: int = 0
    tls: bool = False
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(10):
            port, link = random.randint(20000, 60000), random.randint(20000, 60000)
            if self._start(port, link):
                self.port = port
                return
            self.stop()
        raise RuntimeError("InspIRCd + Atheme did not start; see " + str(self.work_dir))

    def _start(self, port: int, link: int) -> bool:
        values = {"port": port, "link": link, "work": self.work_dir, "link_password": "link-" + str(link)}
        (self.work_dir / "inspircd.conf").write_text(INSPIRCD_CONF.format(**values))
        (self.work_dir / "atheme.conf").write_text(ATHEME_CONF.format(**values))
        (self.work_dir / "atheme").mkdir(exist_ok=True)
        ircd = [
            shutil.which("inspircd") or "inspircd",
            "--nofork",
            f"--config={self.work_dir / 'inspircd.conf'}",
        ]
        if os.getuid() == 0:
            ircd.insert(1, "--runasroot")
        if not self._run(ircd, "is now running as"):
            return False
        services = [
            shutil.which("atheme-services") or "atheme-services",
            "-n",
            "-c", str(self.work_dir / "atheme.conf"),
            "-D", str(self.work_dir / "atheme"),
            "-l", str(self.work_dir / "atheme.log"),
            "-p", str(self.work_dir / "atheme.pid"),
        ]  # fmt: skip
        return self._run(services, "finished synching with uplink")

    def _run(self, command: list[str], ready: str) -> bool:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.work_dir, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        buffer = b""
        try:
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    return False
                buffer += chunk
                if ready.encode() in buffer:
                    _drain(proc)
                    return True
        finally:
            selector.close()
        return False

    def stop(self) -> None:
        """Stop the services, then the server: only the PIDs this fixture started."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs.clear()


def _drain(proc: subprocess.Popen[bytes]) -> None:
    import threading

    stream = proc.stdout
    assert stream is not None

    def drain() -> None:
        with contextlib.suppress(ValueError, OSError):
            for _ in iter(stream.readline, b""):
                pass

    threading.Thread(target=drain, daemon=True).start()


@pytest.fixture(scope="module")
def services_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesNetwork]:
    """InspIRCd with Atheme's NickServ and SaslServ, when both Debian packages are installed."""
    missing = [name for name in ("inspircd", "atheme-services") if shutil.which(name) is None]
    if missing:
        pytest.skip(
            "SASL and NickServ need a network with services: Debian packages "
            + " and ".join(f"`{name}`" for name in missing)
            + " (apt-get install inspircd atheme-services)"
        )
    network = ServicesNetwork(tmp_path_factory.mktemp("services"))
    network.start()
    try:
        yield network
    finally:
        network.stop()
