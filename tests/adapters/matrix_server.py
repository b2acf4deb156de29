"""A real Synapse homeserver on loopback for the Matrix adapter's tests, and a human to talk to it.

``synapse`` (module scoped) generates a config (``--generate-config``), then sets what a test
server needs: SQLite, one HTTP listener on 127.0.0.1 with port 0 (the port Synapse logs as
"now listening on TCP port N" is read from its log, and written back into the config so that a
restart binds the same port), ``trusted_key_servers: []``, no federation listener, no
presence. Users are registered with the shared secret (``register_new_matrix_user`` for the bot,
the same admin API in-process for the others).

Rate limits: ``rc_message`` keeps Synapse's real default (0.2 messages/s, burst 10), and the
user ``paced`` lives under it: the pacing test proves M_LIMIT_EXCEEDED handling against the real
limiter. Every other user is exempted from it with the admin API's per-user override
(``override_ratelimit``, 0 = unlimited; it takes whole numbers only, so it cannot set 0.2/s
itself), as an operator would exempt a busy bot, so that the flood tests (50 replies, a 40 KB
reply) run at full speed. ``rc_login``, ``rc_joins``, ``rc_invites`` and ``rc_room_creation``
are raised because tests log in, join, invite and create rooms far more often than people do.

Skips (with the package's name) when matrix-synapse or matrix-nio is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bot.rosey.core.chat import OutgoingMessage
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects

if TYPE_CHECKING:
    from bot.rosey.adapters.matrix import MatrixAdapter

SERVER_NAME = "localhost"
PASSWORD = "correct horse battery staple"
#: The humans and bots every module gets: (name, admin).
USERS = (
    ("rosey", False),
    ("alice", False),
    ("bob", False),
    ("carol", False),
    ("dave", False),
    ("paced", False),
    ("keyed", False),
    ("admin", True),
)
_RAISED = {"per_second": 1000, "burst_count": 1000}
_LISTENING = re.compile(r"now listening on TCP port (\d+)")

_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
    stream: ext://sys.stderr
loggers:
  synapse.app._base:
    level: INFO
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
"""


def user_id(name: str) -> str:
    return f"@{name}:{SERVER_NAME}"


class SynapseServer:
    """One Synapse process in ``data_dir``; ``stop()`` and ``start()`` keep its data and port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.config_path = data_dir / "homeserver.yaml"
        self.log_path = data_dir / "synapse.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.shared_secret = ""
        self.admin_token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ set-up

    def generate(self, template: Path) -> None:
        """This server's config, from ``template`` (a ``--generate-config`` output, see
        :func:`generate_template`) with its own paths and the test settings below."""
        import yaml  # Synapse's own dependency: there whenever Synapse is

        config = yaml.safe_load((template / "homeserver.yaml").read_text())
        key = self.data_dir / "signing.key"
        key.write_bytes(Path(config["signing_key_path"]).read_bytes())
        key.chmod(0o600)
        config.update(
            {
                "pid_file": str(self.data_dir / "homeserver.pid"),
                "database": {"name": "sqlite3", "args": {"database": str(self.data_dir / "homeserver.db")}},
                "media_store_path": str(self.data_dir / "media_store"),
                "signing_key_path": str(key),
            }
        )
        (self.data_dir / "log.yaml").write_text(_LOG_CONFIG)
        config.update(
            {
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "report_stats": False,
                "log_config": str(self.data_dir / "log.yaml"),
                "presence": {"enabled": False},
                "enable_registration": False,
                # Password hashing at its cheapest (Synapse's own test setting): tests log in
                # dozens of times, and bcrypt's default 12 rounds cost ~0.3 s of CPU each.
                "bcrypt_rounds": 4,
                # Raised: tests log in, join, invite and create rooms far faster than people.
                "rc_login": {"address": _RAISED, "account": _RAISED, "failed_attempts": _RAISED},
                "rc_registration": _RAISED,
                "rc_joins": {"local": _RAISED, "remote": _RAISED},
                "rc_joins_per_room": _RAISED,
                "rc_invites": {"per_room": _RAISED, "per_user": _RAISED, "per_issuer": _RAISED},
                "rc_room_creation": _RAISED,
            }
        )
        self.shared_secret = config["registration_shared_secret"]
        self._write_config(config)

    def _write_config(self, config: dict[str, Any] | None = None) -> None:
        import yaml

        if config is None:
            config = yaml.safe_load(self.config_path.read_text())
        config["listeners"] = [
            {
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        self.config_path.write_text(yaml.safe_dump(config))

    # ------------------------------------------------------------------ process

    def start(self, timeout: float = 60.0) -> None:
        """Start Synapse and return once it answers ``/_matrix/client/versions``."""
        assert self.proc is None or self.proc.poll() is not None
        listening = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_log, args=(self.proc, listening), daemon=True)
        self._reader.start()
        if not listening.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"Synapse did not start:\n{self.log_path.read_text()[-3000:]}")
        if self.port == 0:
            raise RuntimeError("Synapse did not say which port it listens on")
        self._write_config()  # the same port after a restart
        deadline = time.monotonic() + timeout
        while True:  # the socket is bound: the first request normally answers at once
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _read_log(self, proc: subprocess.Popen[bytes], listening: threading.Event) -> None:
        assert proc.stderr is not None
        with self.log_path.open("ab") as log:
            for line in proc.stderr:
                log.write(line)
                log.flush()
                found = _LISTENING.search(line.decode("utf-8", "replace"))
                if found:
                    self.port = int(found.group(1))
                    listening.set()
        listening.set()  # exited: start() sees the process gone

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
        self.proc = None

    # ------------------------------------------------------------------ accounts

    def register(self, users: tuple[tuple[str, bool], ...]) -> None:
        """Register ``users`` with the shared secret: the first with ``register_new_matrix_user``
        (the operator's recipe, proven here), the others through the same shared-secret admin
        API in this process (8 CLI runs cost ~7 s of CPU on 2 cores; these cost milliseconds)."""
        (first, first_admin), *others = users
        cli = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("register_new_matrix_user")),
                "-u",
                first,
                "-p",
                PASSWORD,
                "--admin" if first_admin else "--no-admin",
                "-k",
                self.shared_secret,
                self.url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            for name, admin in others:
                self._register(name, admin)
        finally:
            out, _ = cli.communicate(timeout=60)
        if cli.returncode != 0:
            raise RuntimeError(f"register_new_matrix_user {first} failed: {out.decode()}")

    def _register(self, name: str, admin: bool) -> None:
        """What ``register_new_matrix_user`` does: a nonce, then an HMAC-SHA1 of the fields."""
        path = "/_synapse/admin/v1/register"
        nonce = self.request("GET", path)["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [nonce.encode(), name.encode(), PASSWORD.encode(), b"admin" if admin else b"notadmin"]
            )
        )
        body = {
            "nonce": nonce,
            "username": name,
            "password": PASSWORD,
            "mac": mac.hexdigest(),
            "admin": admin,
        }
        self.request("POST", path, body)

    def login(self, name: str) -> dict[str, Any]:
        """Log ``name`` in (a new device each time): the login response."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": name},
            "password": PASSWORD,
        }
        return self.request("POST", "/_matrix/client/v3/login", body)

    def request(
        self, method: str, path: str, body: object = None, token: str | None = None
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                result: dict[str, Any] = json.loads(reply.read() or b"{}")
                return result
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def set_rate_limit(self, name: str, limits: dict[str, float]) -> None:
        """The admin API's per-user ``rc_message`` override."""
        path = f"/_synapse/admin/v1/users/{user_id(name)}/override_ratelimit"
        self.request("POST", path, limits, token=self.admin_token)

    def devices(self, name: str) -> list[str]:
        path = f"/_synapse/admin/v2/users/{user_id(name)}/devices"
        return [d["device_id"] for d in self.request("GET", path, token=self.admin_token)["devices"]]


def generate_template(directory: Path) -> Path:
    """``synapse.app.homeserver --generate-config`` in ``directory`` (secrets, signing key)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            SERVER_NAME,
            "--config-path",
            str(directory / "homeserver.yaml"),
            "--data-directory",
            str(directory),
            "--generate-config",
            "--report-stats=no",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return directory


_templates: dict[int, Path] = {}


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A real Synapse for this test module (about 3 s to start), with USERS registered."""
    if importlib.util.find_spec("synapse") is None:
        pytest.skip("matrix-synapse is not installed (pip install -e '.[test-servers]')")
    if importlib.util.find_spec("nio") is None:
        pytest.skip("matrix-nio is not installed (pip install -e '.[matrix]')")
    # One --generate-config per test session: each module's server starts from a copy.
    template = _templates.get(id(tmp_path_factory))
    if template is None:
        template = _templates[id(tmp_path_factory)] = generate_template(
            tmp_path_factory.mktemp("synapse-template")
        )
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    server.generate(template)
    server.start()
    try:
        server.register(USERS)
        server.admin_token = server.login("admin")["access_token"]
        for name, _ in USERS:  # everyone but `paced` may flood (the admin API's override)
            if name != "paced":
                server.set_rate_limit(name, {"messages_per_second": 0, "burst_count": 0})
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------- the human side


class Human:
    """A person on the homeserver, through matrix-nio: sends, creates rooms, sees what arrives."""

    def __init__(self, server: SynapseServer, name: str) -> None:
        import nio

        self.server = server
        self.user_id = user_id(name)
        self.name = name
        self.client = nio.AsyncClient(
            server.url,
            self.user_id,
            config=nio.AsyncClientConfig(max_timeout_retry_wait_time=0.5, encryption_enabled=False),
        )
        self.timeline: list[tuple[str, dict[str, Any]]] = []  # (room id, event), in order
        self.invites: list[str] = []
        self.sync_errors: list[str] = []
        self._news = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Human:
        import nio

        response = await self.client.login(PASSWORD, device_name="test")
        assert isinstance(response, nio.LoginResponse), response
        first = await self.client.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 0}}})
        assert isinstance(first, nio.SyncResponse), first
        self._task = asyncio.create_task(self._sync_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    async def _sync_loop(self) -> None:
        import nio

        while True:
            try:
                response = await self.client.sync(timeout=10_000)
            except Exception as exc:  # keep listening; the test sees sync_errors if it matters
                response = exc
            if not isinstance(response, nio.SyncResponse):
                self.sync_errors.append(str(response))
                await asyncio.sleep(0.2)
                continue
            async with self._news:
                for room_id, info in response.rooms.join.items():
                    self.timeline.extend((room_id, e.source) for e in info.timeline.events)
                self.invites.extend(response.rooms.invite)
                self._news.notify_all()

    async def wait_for(
        self, predicate: Callable[[str, dict[str, Any]], bool], *, count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` timeline events (since this human connected) that match."""

        def matches() -> list[dict[str, Any]]:
            return [e for room, e in self.timeline if predicate(room, e)]

        async with asyncio.timeout(timeout), self._news:
            await self._news.wait_for(lambda: len(matches()) >= count)
        return matches()[:count]

    async def wait_invite(self, room_id: str | None = None, timeout: float = 20.0) -> str:
        async with asyncio.timeout(timeout), self._news:
            await self._news.wait_for(lambda: any(room_id in (None, r) for r in self.invites))
        return next(r for r in self.invites if room_id in (None, r))

    async def bot_says(
        self, room_id: str, bot: str, *, count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """The bot's first ``count`` messages in ``room_id``."""
        return await self.wait_for(
            lambda room, e: room == room_id and e.get("sender") == bot and e.get("type") == "m.room.message",
            count=count,
            timeout=timeout,
        )

    async def membership(
        self, room_id: str, who: str, membership: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        events = await self.wait_for(
            lambda room, e: (
                room == room_id
                and e.get("type") == "m.room.member"
                and e.get("state_key") == who
                and e.get("content", {}).get("membership") == membership
            ),
            timeout=timeout,
        )
        return events[0]

    async def send(self, room_id: str, body: str | None = None, **content: Any) -> str:
        import nio

        message: dict[str, Any] = {"msgtype": "m.text", **content}
        if body is not None:
            message["body"] = body
        response = await self.client.room_send(room_id, "m.room.message", message)
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        import nio

        response = await self.client.room_send(room_id, event_type, content)
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def create_room(
        self,
        *,
        alias: str | None = None,
        invite: tuple[str, ...] = (),
        is_direct: bool = False,
        encrypted: bool = False,
        power: dict[str, int] | None = None,
    ) -> str:
        import nio

        state = []
        if encrypted:
            state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        response = await self.client.room_create(
            alias=alias,
            invite=list(invite),
            is_direct=is_direct,
            preset=nio.RoomPreset.private_chat,
            initial_state=state,
            # Room version 12: the creator outranks every level and must not be listed.
            power_level_override={"users": power} if power else None,
        )
        assert isinstance(response, nio.RoomCreateResponse), response
        return str(response.room_id)

    async def join(self, room_id: str) -> None:
        import nio

        response = await self.client.join(room_id)
        assert isinstance(response, nio.JoinResponse), response


@contextlib.asynccontextmanager
async def humans(server: SynapseServer, *names: str) -> AsyncIterator[list[Human]]:
    """Log ``names`` in as :class:`Human` s for the duration of a test."""
    people = [Human(server, name) for name in names]
    entered: list[Human] = []
    try:
        for person in people:
            entered.append(await person.__aenter__())
        yield entered
    finally:
        for person in entered:
            await person.__aexit__(None, None, None)


# ---------------------------------------------------------------------- the bus side


class Bus:
    """What the adapter publishes (``rosey.adapters.<name>.events.>``), and a way to make it talk."""

    def __init__(self, nats_url: str, name: str = "matrix") -> None:
        self.name = name
        self.bus = EventBus(nats_url, name="test-matrix")
        self.events: list[Event] = []
        self._news = asyncio.Condition()

    async def __aenter__(self) -> Bus:
        await self.bus.connect()
        await self.bus.subscribe(Subjects.all_adapter_events(self.name), self._on_event)
        await self.bus.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.disconnect()

    async def _on_event(self, event: Event) -> None:
        async with self._news:
            self.events.append(event)
            self._news.notify_all()

    def texts(self, kind: str = "message") -> list[str]:
        return [e.data["text"] for e in self.events if e.subject.endswith(f".{kind}")]

    async def wait(
        self,
        kind: str = "message",
        *,
        text: str | None = None,
        count: int = 1,
        timeout: float = 20.0,
        **fields: Any,
    ) -> list[Event]:
        """The first ``count`` events of ``kind`` whose text (and other data fields) match."""

        def matches() -> list[Event]:
            return [
                e
                for e in self.events
                if e.subject.endswith(f".events.{kind}")
                and (text is None or e.data.get("text") == text)
                and all(e.data.get(k) == v for k, v in fields.items())
            ]

        async with asyncio.timeout(timeout), self._news:
            await self._news.wait_for(lambda: len(matches()) >= count)
        return matches()[:count]

    async def say(self, **message: Any) -> None:
        await self.bus.publish(
            Subjects.chat_send(self.name), OutgoingMessage(**message).to_wire(), source="test"
        )
        await self.bus.flush()


@contextlib.asynccontextmanager
async def running_adapter(
    server: SynapseServer,
    nats_url: str,
    state_dir: Path,
    *,
    user: str = "rosey",
    secrets: dict[str, str] | None = None,
    wait_connected: bool = True,
    **settings: Any,
) -> AsyncIterator[MatrixAdapter]:
    """A MatrixAdapter in this process, logged in and synced (or not, ``wait_connected=False``)."""
    from bot.rosey.adapters.matrix import MatrixAdapter

    adapter = MatrixAdapter(
        name="matrix",
        settings={
            "homeserver": server.url,
            "user": user_id(user),
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
            **settings,
        },
        secrets={"password": PASSWORD} if secrets is None else secrets,
        state_dir=state_dir,
        nats_url=nats_url,
    )
    task = asyncio.create_task(adapter.run())
    try:
        if wait_connected:
            async with asyncio.timeout(30):
                done, _ = await asyncio.wait(
                    {task, asyncio.ensure_future(adapter.outbox.connected.wait())},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            if task in done:
                task.result()
                raise AssertionError("the adapter stopped before it connected")
        yield adapter
    finally:
        adapter.stop()
        await asyncio.wait_for(task, 15)


__all__ = [
    "PASSWORD",
    "USERS",
    "Bus",
    "Human",
    "SynapseServer",
    "humans",
    "running_adapter",
    "synapse",
    "user_id",
]
