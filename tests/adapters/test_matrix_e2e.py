"""Rosey on Matrix end to end: the real ``rosey run`` with a ``type = "matrix"`` adapter process
(supervised, sandboxed, its own NATS identity and secret) against a real Synapse, and people on
that homeserver (matrix-nio clients) saying commands.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.line_platform import LINE_ADAPTER, LinePlatform
from tests.adapters.matrix_server import PASSWORD, Human, SynapseServer, humans, synapse, user_id
from tests.cli.conftest import RunningRosey, start_run

__all__ = ["synapse"]  # the module's server fixture

BOT = user_id("rosey")
ECHO = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
OTHER_SECRET = "other-adapter-secret-Vx81"

# Says its arguments back verbatim: "!parrot !echo loop" makes the bot say "!echo loop" itself.
PARROT_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Parrot(PluginInterface):
    plugin_name = "parrot"

    async def handle_command(self, event):
        await self.publish_result({"message": " ".join(event.data.get("args") or [])}, event.correlation_id)
"""

# A hostile plugin: looks everywhere for an adapter's credentials and says what it found.
STEAL_PLUGIN = """
import glob
import os

from bot.rosey.plugins.plugin_interface import PluginInterface


class Steal(PluginInterface):
    plugin_name = "steal"

    async def handle_command(self, event):
        found = [f"{k}={v}" for k, v in os.environ.items()]
        for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
            try:
                with open(path, "rb") as stream:
                    found.append(stream.read().decode(errors="replace"))
            except OSError:
                pass
        for path in glob.glob("STATE/**/*", recursive=True) + glob.glob("WORKDIR/secrets/*"):
            try:
                with open(path, errors="replace") as stream:
                    found.append(stream.read(100000))
            except OSError:
                pass
        await self.publish_result({"message": "stolen: " + " ".join(found)[-12000:]}, event.correlation_id)
"""

# A compromised platform library inside a Matrix adapter: "!probe read PATH" / "!probe connect PORT"
# said in a room make it try, and say in the room what it got (so the test sees what left the process).
HOSTILE_ADAPTER = """
import asyncio
import os

from bot.rosey.adapters.matrix import MatrixAdapter
from bot.rosey.core.chat import OutgoingMessage


class HostileMatrix(MatrixAdapter):
    async def emit(self, event_type, *, channel, user, text="", **fields):
        if not text.startswith("!probe "):
            return await super().emit(event_type, channel=channel, user=user, text=text, **fields)
        _, probe, arg = text.split(" ", 2)
        if probe == "read":
            try:
                with open(arg, errors="replace") as stream:
                    result = "READ:" + stream.read()
            except OSError as exc:
                result = f"DENIED:{arg}:{exc.strerror}"
        else:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", int(arg)), 5)
                writer.close()
                result = f"CONNECTED:{arg}"
            except (OSError, TimeoutError) as exc:
                result = f"DENIED:{arg}:{getattr(exc, 'strerror', None) or exc!r}"
        self.outbox.put(OutgoingMessage(channel=channel, text=result))
"""


def _write_project(workdir: Path, server: SynapseServer, room: str, *, adapter: str, extra: str = "") -> None:
    plugins = workdir / "plugins"
    plugins.mkdir()
    (plugins / "echo.py").write_text(ECHO.read_text())
    (plugins / "parrot.py").write_text(PARROT_PLUGIN)
    state = workdir / ".rosey"
    (plugins / "steal.py").write_text(
        STEAL_PLUGIN.replace("STATE", str(state)).replace("WORKDIR", str(workdir))
    )
    secrets = workdir / "secrets"
    secrets.mkdir()
    (secrets / "other").write_text(OTHER_SECRET)
    os.chmod(secrets / "other", 0o600)
    (workdir / "rosey.toml").write_text(
        textwrap.dedent(
            f"""
            [adapters.matrix]
            {adapter}
            homeserver = "{server.url}"
            user = "{BOT}"
            rooms = ["{room}"]
            auto_join = ["@alice:localhost"]
            password_env = "MATRIX_PASSWORD"
            rate = 20
            burst = 20

            [adapters.other]
            type = "matrix"
            homeserver = "{server.url}"
            user = "@keyed:localhost"
            access_token_file = "secrets/other"
            enabled = false
            """
        )
        + extra
    )


@pytest.fixture
async def alice(synapse: SynapseServer) -> AsyncIterator[Human]:
    async with humans(synapse, "alice") as (person,):
        yield person


async def _run(workdir: Path) -> RunningRosey:
    return await start_run(workdir, env={"MATRIX_PASSWORD": PASSWORD})


def _body(event: dict[str, Any]) -> str:
    return str(event.get("content", {}).get("body", ""))


async def _answer(
    alice: Human, room: str, contains: str, *, count: int = 1, timeout: float = 30
) -> list[dict]:
    return await alice.wait_for(
        lambda r, e: r == room and e.get("sender") == BOT and contains in _body(e),
        count=count,
        timeout=timeout,
    )


async def test_rosey_answers_on_matrix_in_rooms_threads_and_privately_and_survives_sigkill(
    synapse: SynapseServer, alice: Human, tmp_path: Path
) -> None:
    room = await alice.create_room(invite=(BOT,))
    other = await LinePlatform().start()  # a second platform, to show it keeps answering
    line = f'\n[adapters.line]\ntype = "custom"\npath = "{LINE_ADAPTER}"\n'
    line += f"port = {other.port}\nports = [{other.port}]\n"
    _write_project(tmp_path, synapse, room, adapter='type = "matrix"', extra=line)
    bot = await _run(tmp_path)
    try:
        await alice.membership(room, BOT, "join")
        command = await alice.send(room, "!echo hi")
        (answer,) = await _answer(alice, room, "hi")
        assert answer["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": command}}

        # In a thread: answered in the thread.
        root = await alice.send(room, "a thread")
        relation = {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        }
        in_thread = await alice.send(room, "!echo threaded", **{"m.relates_to": relation})
        (answer,) = await _answer(alice, room, "threaded")
        assert answer["content"]["m.relates_to"]["rel_type"] == "m.thread"
        assert answer["content"]["m.relates_to"]["event_id"] == root
        assert answer["content"]["m.relates_to"]["m.in_reply_to"] == {"event_id": in_thread}

        # Privately: a DM room alice opens; the answer comes there, nowhere else.
        dm = await alice.create_room(invite=(BOT,), is_direct=True)
        await alice.membership(dm, BOT, "join")
        await alice.send(dm, "!echo between us")
        (answer,) = await _answer(alice, dm, "between us")
        assert not [e for r, e in alice.timeline if r == room and "between us" in _body(e)]

        # The bot's own messages are never commands: it says "!echo loop" and nothing answers it.
        await alice.send(room, "!parrot !echo loop")
        await _answer(alice, room, "!echo loop")
        await alice.send(room, "!echo marker")
        await _answer(alice, room, "marker")
        assert not [
            e
            for _, e in alice.timeline
            if e.get("sender") == BOT and "Echo" in _body(e) and "loop" in _body(e)
        ]

        # A plugin never sees an adapter's credential (its environment, files, state directory).
        await alice.send(room, "!steal")
        (stolen,) = await _answer(alice, room, "stolen:")
        assert "NATS_URL" in _body(stolen) or "ROSEY" in _body(stolen)  # it did look around
        session = (tmp_path / ".rosey" / "adapters" / "matrix" / "session.json").read_text()
        assert PASSWORD not in _body(stolen) and OTHER_SECRET not in _body(stolen)
        assert "access_token" not in _body(stolen) and session not in _body(stolen)

        # SIGKILL the adapter: restarted, resumes from its sync token, answers what was said
        # while it was down exactly once, and the next command.
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows["matrix"]["kind"] == "adapter"
        os.kill(rows["matrix"]["pid"], signal.SIGKILL)
        await other.event("!echo on the other platform", channel="#main")  # answered meanwhile
        assert "on the other platform" in (await other.next_said())["text"]
        await alice.send(room, "!echo while it was down")
        await _answer(alice, room, "while it was down")
        await alice.send(room, "!echo back again")
        await _answer(alice, room, "back again")
        rows_after = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows_after["matrix"]["pid"] not in (None, rows["matrix"]["pid"])
        assert (
            len([e for e in alice.timeline if "while it was down" in _body(e[1]) and e[1]["sender"] == BOT])
            == 1
        )
        assert len([e for e in alice.timeline if _body(e[1]).endswith(": hi") and e[1]["sender"] == BOT]) == 1
    finally:
        bot.proc.send_signal(signal.SIGTERM)
        await bot.proc.wait()
        await other.close()
    log = (tmp_path / "rosey-run.log").read_text()
    assert PASSWORD not in log and OTHER_SECRET not in log


async def test_a_compromised_matrix_adapter_reaches_nothing_but_its_homeserver(
    synapse: SynapseServer, alice: Human, tmp_path: Path
) -> None:
    (tmp_path / "hostile.py").write_text(HOSTILE_ADAPTER)
    room = await alice.create_room(invite=(BOT,))
    # The same adapter code and sandbox grants as type "matrix" (the homeserver's port), plus a probe.
    _write_project(
        tmp_path, synapse, room, adapter=f'type = "custom"\npath = "hostile.py"\nports = [{synapse.port}]'
    )
    bot = await _run(tmp_path)
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    other_port = listener.sockets[0].getsockname()[1]
    try:
        await alice.membership(room, BOT, "join")
        state = tmp_path / ".rosey"
        canary = state / "data" / "echo" / "canary.txt"
        canary.parent.mkdir(parents=True, exist_ok=True)
        canary.write_text("plugin-data-canary")
        own = state / "adapters" / "matrix" / "session.json"
        probes = [
            f"read {tmp_path / 'secrets' / 'other'}",  # another adapter's credential
            f"read {canary}",  # a plugin's data
            f"read {state / 'runtime.json'}",  # the core's state (and its credentials)
            f"read {tmp_path / 'rosey.toml'}",
            f"connect {other_port}",  # a listening port that is not its homeserver's
            f"read {own}",  # its own state: allowed (the control)
            f"connect {synapse.port}",  # its homeserver: allowed (the control)
        ]
        for probe in probes:
            await alice.send(room, f"!probe {probe}")
        said = [_body(e) for e in await _answer(alice, room, ":", count=len(probes))]
        assert [s.split(":", 1)[0] for s in said] == ["DENIED"] * 5 + ["READ", "CONNECTED"], said
        assert not [s for s in said if OTHER_SECRET in s or "plugin-data-canary" in s]
    finally:
        listener.close()
        bot.proc.send_signal(signal.SIGTERM)
        await bot.proc.wait()
