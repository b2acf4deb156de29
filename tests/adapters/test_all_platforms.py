"""One bot on IRC, Matrix, CyTube and the console at once: the same echo plugin answers on all four.

The real ``rosey run``, with three adapter processes (miniircd, a real Synapse, the CyTube
stand-in) and the console on a pseudo-terminal, as an operator types in it. Each platform's own
behaviour is tested in its module; this one checks that they live side by side in one bot: every
platform's command is answered on that platform only, and killing one adapter leaves the others
answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.adapters.cytube_server import CytubeUser, FakeCytube, cytube_server
from tests.adapters.irc_server import HOST, IrcServer, connect_user, start_server
from tests.adapters.matrix_server import PASSWORD, SynapseServer, humans, synapse, user_id
from tests.cli.conftest import ROSEY, rosey, user_env

pytest.importorskip("pydle", reason="pydle is not installed (pip install -e '.[irc]')")
pytest.importorskip("socketio", reason="python-socketio is not installed (pip install -e '.[cytube]')")

__all__ = ["cytube_server", "synapse"]  # module fixtures, used by name

pytestmark = pytest.mark.timeout(120)

ECHO = Path(__file__).resolve().parents[2] / "bot" / "rosey" / "plugins" / "examples" / "echo_plugin.py"
BOT_MATRIX = user_id("rosey")
CYTUBE_CHANNEL = "everywhere"


@pytest.fixture
def irc(tmp_path: Path) -> AsyncIterator[IrcServer]:
    server = start_server("miniircd", tmp_path / "ircd")
    try:
        yield server
    finally:
        server.stop()


class ConsoleBot:
    """``rosey run`` whose stdin is a terminal (a pty), so its console chat is on."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.lines: list[str] = []

    async def line(self, pattern: str, timeout: float = 30.0) -> str:
        """The next stdout line matching ``pattern`` (a regular expression)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"rosey run ended; its output: {self.lines}")
                text = raw.decode(errors="replace").replace("\r", "")
                self.lines.append(text)
                if re.search(pattern, text):
                    return text

    def type(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\n")


@contextlib.asynccontextmanager
async def console_bot(workdir: Path) -> AsyncIterator[ConsoleBot]:
    master, slave = pty.openpty()
    with (workdir / "rosey-run.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *ROSEY,
            "run",
            cwd=workdir,
            stdin=slave,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=user_env(),
        )
    os.close(slave)
    bot = ConsoleBot(proc, master)
    try:
        yield bot
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)


async def test_the_same_plugin_answers_on_irc_matrix_cytube_and_the_console(
    tmp_path: Path, irc: IrcServer, synapse: SynapseServer, cytube_server: FakeCytube
) -> None:
    workdir = tmp_path / "bot"
    (workdir / "plugins").mkdir(parents=True)
    (workdir / "plugins" / "echo.py").write_text(ECHO.read_text())
    (workdir / "secrets").mkdir()
    for name, secret in (("matrix", PASSWORD), ("cytube", "bot-secret")):
        (workdir / "secrets" / name).write_text(secret)
        os.chmod(workdir / "secrets" / name, 0o600)
    async with humans(synapse, "alice") as (alice,):
        room = await alice.create_room(invite=(BOT_MATRIX,))
        (workdir / "rosey.toml").write_text(
            textwrap.dedent(
                f"""
                [adapters.irc]
                type = "irc"
                server = "{HOST}"
                port = {irc.port}
                tls = false
                nick = "rosey"
                channels = ["#all"]

                [adapters.matrix]
                type = "matrix"
                homeserver = "{synapse.url}"
                user = "{BOT_MATRIX}"
                password_file = "secrets/matrix"
                rooms = ["{room}"]

                [adapters.cytube]
                type = "cytube"
                server = "{cytube_server.url}"
                channel = "{CYTUBE_CHANNEL}"
                user = "rosey_bot"
                password_file = "secrets/cytube"
                connect_rate = 5.0
                """
            )
        )
        ann = await connect_user(irc, "ann", ["#all"])
        try:
            async with (
                console_bot(workdir) as bot,
                CytubeUser(cytube_server, CYTUBE_CHANNEL, "bob", password="bob-pw") as bob,
            ):
                ready = await bot.line(r"^Rosey ready")
                assert "adapters 3/3 running (irc, matrix, cytube)" in ready, ready
                await ann.joined("#all", "rosey")
                await alice.membership(room, BOT_MATRIX, "join")
                await bob.wait_until(
                    lambda: bool(bob.seen("addUser") or _listed(bob, "rosey_bot")), timeout=30
                )

                await ann.send("PRIVMSG #all :!echo from irc")
                await alice.send(room, "!echo from matrix")
                await bob.say("!echo from cytube")
                bot.type("!echo from the console")

                assert "from irc" in await ann.said_by("rosey", "#all")
                await alice.wait_for(
                    lambda r, e: (
                        r == room and e.get("sender") == BOT_MATRIX and "from matrix" in str(e.get("content"))
                    ),
                    timeout=30,
                )
                said = await bob.wait_for(
                    "chatMsg",
                    lambda d: d.get("username") == "rosey_bot" and "from cytube" in d.get("msg", ""),
                )
                assert said
                assert await bot.line(r"rosey> .*from the console")
                # Each answer went to its own platform only.
                assert not [m for m in ann.seen if m.command == "PRIVMSG" and "from matrix" in str(m.params)]
                assert not bob.seen("chatMsg", lambda d: "from irc" in d.get("msg", ""))

                # One platform's adapter killed: the others keep answering while it comes back.
                code, out, err = await rosey("status", "--json", cwd=workdir)
                assert code == 0, err
                import json

                rows = {row["name"]: row for row in json.loads(out)["plugins"]}
                assert {rows[n]["kind"] for n in ("irc", "matrix", "cytube")} == {"adapter"}
                os.kill(rows["irc"]["pid"], signal.SIGKILL)
                await bob.say("!echo cytube meanwhile")
                bot.type("!echo console meanwhile")
                await bob.wait_for(
                    "chatMsg",
                    lambda d: d.get("username") == "rosey_bot" and "cytube meanwhile" in d.get("msg", ""),
                )
                assert await bot.line(r"rosey> .*console meanwhile")
                await ann.joined("#all", "rosey", timeout=30)  # the restarted adapter is back
                await ann.send("PRIVMSG #all :!echo irc again")
                assert "irc again" in await ann.said_by("rosey", "#all", timeout=30)
        finally:
            await ann.disconnect()


def _listed(person: CytubeUser, name: str) -> bool:
    return any(
        isinstance(user, dict) and user.get("name") == name
        for users in person.seen("userlist")
        if isinstance(users, list)
        for user in users
    )
