"""Rosey on IRC end to end: the real ``rosey run`` starts the IRC adapter as a supervised,
sandboxed process; a human on a real IRC server (miniircd, and ngircd when installed) talks to
the bot and gets the plugins' answers back over IRC.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.adapters.irc_server import HOST, IrcServer, IrcUser, connect_user, irc_server, start_server
from tests.cli.conftest import ROSEY, RunningRosey, start_run, user_env

__all__ = ["irc_server"]

PASSWORD = "nickserv-pw-7Hq2"  # the IRC adapter's secret (NickServ): must reach its process only
OTHER_SECRET = "other-adapter-secret-Vb41"

SAY_PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Say(PluginInterface):
    plugin_name = "say"

    async def handle_command(self, event):
        user = event.data["user"]
        text = " ".join(event.data.get("args") or [])
        if text == "whoami":
            text = f"{user['name']} role={user['role']} private={event.data.get('private')}"
        await self.publish_result({"message": text}, event.correlation_id)
"""

# A compromised IRC adapter: the real IrcAdapter, plus what a hostile platform library inside
# its process could try, driven by private messages; it answers over IRC what it obtained.
HOSTILE_ADAPTER = """
import asyncio
import os

from bot.rosey.adapters.irc import IrcAdapter
from bot.rosey.core.chat import ChatEventType


class HostileIrc(IrcAdapter):
    async def relay(self, kind, channel, nick, text="", **kwargs):
        if kind is ChatEventType.PRIVATE_MESSAGE and text.startswith("probe "):
            _, what, arg = text.split(" ", 2)
            await self._client.send_line(f"PRIVMSG {nick} :{await self._probe(what, arg)}")
            return
        await super().relay(kind, channel, nick, text, **kwargs)

    async def _probe(self, what, arg):
        if what == "read":
            try:
                with open(arg, errors="replace") as stream:
                    return "READ:" + stream.read(200).replace("\\n", " ")
            except OSError as exc:
                return f"DENIED:{exc.strerror}"
        if what == "environ":
            return "ENV:" + " ".join(f"{k}={v}" for k, v in os.environ.items())[-400:]
        if what == "connect":
            host, _, port = arg.rpartition(":")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
            except (OSError, TimeoutError) as exc:
                return f"DENIED:{getattr(exc, 'strerror', None) or exc!r}"
            writer.close()
            return "CONNECTED"
        return "UNKNOWN"
"""


def _write_project(workdir: Path, server: IrcServer, *, nick: str, hostile: bool = False) -> None:
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "say.py").write_text(SAY_PLUGIN)
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "other").write_text(OTHER_SECRET)
    os.chmod(secrets / "other", 0o600)
    if hostile:
        (workdir / "adapters").mkdir(exist_ok=True)
        (workdir / "adapters" / "hostile_irc.py").write_text(HOSTILE_ADAPTER)
        kind = f'type = "custom"\npath = "adapters/hostile_irc.py"\nports = [{server.port}]'
    else:
        kind = 'type = "irc"'
    (workdir / "rosey.toml").write_text(
        textwrap.dedent(
            """
            [adapters.irc]
            {kind}
            server = "{host}"
            port = {port}
            tls = false
            nick = "{nick}"
            channels = ["#rosey"]
            reconnect_min = 0.2
            reconnect_max = 2.0

            [adapters.other]
            type = "irc"
            server = "{host}"
            port = {port}
            tls = false
            nick = "other{nick}"
            channels = ["#other"]
            auth = "nickserv"
            password_file = "secrets/other"
            """
        ).format(kind=kind, host=HOST, port=server.port, nick=nick)
    )


@pytest.fixture
async def bot(tmp_path: Path, irc_server: IrcServer) -> AsyncIterator[RunningRosey]:
    _write_project(tmp_path, irc_server, nick="rosey")
    instance = await start_run(tmp_path)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.kill()
            await instance.proc.wait()


def _nick(message: object) -> str:
    return str(getattr(message, "source", "") or "").split("!")[0]


async def _user_in_room(server: IrcServer, nick: str, bot_nick: str = "rosey") -> IrcUser:
    user = await connect_user(server, nick, ["#rosey"])
    names = [n.lstrip("~&@%+") for m in user.seen if m.command == 353 for n in m.params[-1].split()]
    if bot_nick not in names:
        await user.joined("#rosey", bot_nick)  # the bot was not there yet: wait for it
    return user


async def test_commands_in_a_channel_and_in_private(bot: RunningRosey, irc_server: IrcServer) -> None:
    alice = await _user_in_room(irc_server, "alice")
    await alice.send("PRIVMSG #rosey :!say hi there")
    assert await alice.said_by("rosey", "#rosey", timeout=30) == "hi there"
    await alice.send("PRIVMSG rosey :!say whoami")
    assert await alice.said_by("rosey", "alice", timeout=30) == "alice role=user private=True"
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    assert rows["irc"]["kind"] == "adapter" and rows["irc"]["state"] == "running", rows["irc"]
    await alice.quit()


async def test_the_bot_never_answers_itself(bot: RunningRosey, irc_server: IrcServer) -> None:
    bob = await _user_in_room(irc_server, "bob")
    await bob.send("PRIVMSG #rosey :!say !say loop")
    assert await bob.said_by("rosey", "#rosey", timeout=30) == "!say loop"
    await bob.send("PRIVMSG #rosey :!say marker")
    assert await bob.said_by("rosey", "#rosey", timeout=30) == "marker"  # not "loop"
    await bob.quit()


async def test_a_killed_adapter_is_restarted_reconnects_and_answers(
    bot: RunningRosey, irc_server: IrcServer
) -> None:
    carol = await _user_in_room(irc_server, "carol")
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    pid = rows["irc"]["pid"]
    os.kill(pid, signal.SIGKILL)
    await carol.expect(lambda m: m.command == "QUIT" and _nick(m) == "rosey", timeout=30)
    await carol.expect(lambda m: m.command == "JOIN" and _nick(m).startswith("rosey"), timeout=60)
    await carol.send("PRIVMSG #rosey :!say back again")
    message = await carol.expect(
        lambda m: m.command == "PRIVMSG" and _nick(m).startswith("rosey"), timeout=30
    )
    assert message.params == ["#rosey", "back again"]
    rows = {row["name"]: row for row in (await bot.status())["plugins"]}
    assert rows["irc"]["pid"] != pid
    await carol.quit()


async def test_a_compromised_adapter_reaches_nothing_but_its_own(
    tmp_path: Path, irc_server: IrcServer
) -> None:
    """The IRC adapter process (here with a hostile hook) cannot read a plugin's data, the core's
    state or another adapter's credential, does not hold that credential in its environment, and
    reaches no TCP port but NATS and its IRC server's."""
    _write_project(tmp_path, irc_server, nick="evil", hostile=True)
    state = tmp_path / ".rosey"
    canary = state / "data" / "say" / "canary.txt"
    canary.parent.mkdir(parents=True, exist_ok=True)
    canary.write_text("plugin-data-canary")
    bot = await start_run(tmp_path)
    try:
        dave = await _user_in_room(irc_server, "dave", bot_nick="evil")

        async def probe(what: str, arg: str = "-") -> str:
            await dave.send(f"PRIVMSG evil :probe {what} {arg}")
            return await dave.said_by("evil", "dave", timeout=20)

        for path in (tmp_path / "secrets" / "other", canary, state / "runtime.json"):
            result = await probe("read", str(path))
            assert result.startswith("DENIED"), (path, result)
        assert OTHER_SECRET not in await probe("environ")
        # What it needs is there: the system's CA certificates (for tls_verify).
        assert (await probe("read", "/etc/ssl/certs/ca-certificates.crt")).startswith("READ:-----BEGIN")
        listener_result = await probe("connect", f"{HOST}:{irc_server.port}")
        assert listener_result == "CONNECTED"
        listener = await asyncio.start_server(lambda r, w: w.close(), HOST, 0)
        try:
            port = listener.sockets[0].getsockname()[1]
            assert (await probe("connect", f"{HOST}:{port}")).startswith("DENIED")
        finally:
            listener.close()
        await dave.quit()
    finally:
        bot.proc.kill()
        await bot.proc.wait()


async def test_tls_under_the_sandbox(tmp_path: Path) -> None:
    """The sandboxed adapter process speaks TLS (tls_verify = false against a self-signed
    certificate); with verification on, it refuses the certificate and says why in its log."""
    server = start_server("miniircd", tmp_path / "server", tls=True)
    try:
        project = tmp_path / "project"
        project.mkdir()
        _write_project(project, server, nick="tlsbot")
        config = (project / "rosey.toml").read_text()
        config = config.replace("tls = false", "tls = true\ntls_verify = false", 1)
        config = config.split("[adapters.other]")[0]
        (project / "rosey.toml").write_text(config)
        bot = await start_run(project)
        try:
            erin = await connect_user(server, "erin", ["#rosey"])
            names = [n.lstrip("@+") for m in erin.seen if m.command == 353 for n in m.params[-1].split()]
            if "tlsbot" not in names:
                await erin.joined("#rosey", "tlsbot")
            await erin.send("PRIVMSG #rosey :!say over tls")
            assert await erin.said_by("tlsbot", "#rosey", timeout=30) == "over tls"
            await erin.quit()
        finally:
            bot.proc.kill()
            await bot.proc.wait()
        (project / "rosey.toml").write_text(config.replace("tls_verify = false", "tls_verify = true"))
        bot = await start_run(project)
        try:
            follow = await asyncio.create_subprocess_exec(
                *ROSEY, "logs", "irc", "--follow", cwd=project, env=user_env(),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            assert follow.stdout is not None
            try:
                async with asyncio.timeout(30):
                    while b"CERTIFICATE_VERIFY_FAILED" not in await follow.stdout.readline():
                        pass
            finally:
                follow.kill()
                await follow.wait()
        finally:
            bot.proc.kill()
            await bot.proc.wait()
    finally:
        server.stop()
