"""Files (issue 13, 6d) on each platform, through the real ``rosey run``: a plugin answers with an
ICS file and the platform's server receives the exact bytes (Discord: an attachment of the reply;
Slack: files.getUploadURLExternal + the upload + files.completeUploadExternal; Matrix: the media
repository of a real Synapse and an m.file event); IRC and CyTube, which cannot take files, get a line
saying so; a file over the limit gets the plugin's FileTooLarge as a clear reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.adapters.cytube_server import FakeCytube, cytube_server
from tests.adapters.discord_server import DiscordStandIn
from tests.adapters.irc_server import IrcServer, irc_server
from tests.adapters.matrix_server import PASSWORD, Human, SynapseServer, humans, synapse
from tests.adapters.slack_server import SlackStandIn
from tests.cli.conftest import RunningRosey, start_run
from tests.files.conftest import FILES_PLUGIN
from tests.files.fixtures.files_plugin import ICS, PNG

__all__ = ["cytube_server", "irc_server", "synapse"]  # server fixtures of their modules

TOO_LARGE = "⚠️ files: big.bin is 9000000 bytes, over this plugin's limit of 8388608 bytes"


#: The files fixture plugin, as a table of the test's rosey.toml.
FILES_TABLE = f'\n[plugins.files]\npath = "{FILES_PLUGIN}"\n'


async def _stop(bot: RunningRosey) -> None:
    if bot.proc.returncode is None:
        bot.proc.kill()
        await bot.proc.wait()


def _nothing_waits(workdir: Path) -> bool:
    root = workdir / ".rosey" / "files"
    return not [p for p in root.rglob("*") if p.is_file()]


# ------------------------------------------------------------------ Discord


@pytest.fixture
async def discord_standin() -> AsyncIterator[DiscordStandIn]:
    pytest.importorskip("discord")
    from tests.adapters.test_discord import TOKEN

    server = await DiscordStandIn(TOKEN).start()
    try:
        yield server
    finally:
        await server.close()


async def test_discord_gets_the_file_as_an_attachment_of_the_reply(
    tmp_path: Path, discord_standin: DiscordStandIn
) -> None:
    from tests.adapters.test_discord import _run

    bot = await _run(tmp_path, discord_standin, extra=FILES_TABLE)
    try:
        said = await discord_standin.say("!files ics meeting.ics 'Your meeting'")
        post = await discord_standin.next_post(timeout=30)
        assert post["attachments"], post
        (attachment,) = post["attachments"]
        assert attachment["filename"] == "meeting.ics" and attachment["data"] == ICS
        assert post["content"] == "Your meeting" and int(post["message_reference"]["message_id"]) == said
        await discord_standin.say("!files big 9000000")
        post = await discord_standin.next_post(timeout=30)
        assert post["content"].startswith(TOO_LARGE) and not post["attachments"]
    finally:
        await _stop(bot)


# ------------------------------------------------------------------ Slack


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    pytest.importorskip("slack_bolt")
    server = await SlackStandIn().start()
    server.add_user("UALICE01", "alice")
    server.add_channel("CMAIN001", "main")
    server.add_channel("CTHREAD1", "threads")
    try:
        yield server
    finally:
        await server.close()


async def test_slack_gets_the_file_through_the_external_upload_flow(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    from tests.adapters.test_slack_e2e import _start

    bot = await _start(tmp_path, slack, extra=FILES_TABLE)
    try:
        await slack.message(
            "!files ics meeting.ics 'Your meeting'", channel="CTHREAD1", thread_ts="1700000000.1"
        )
        upload = await asyncio.wait_for(slack.uploads.get(), 30)
        (sent,) = upload["files"]
        assert sent["data"] == ICS and sent["filename"] == "meeting.ics" and sent["length"] == len(ICS)
        assert upload["channel"] == "CTHREAD1" and upload["thread_ts"] == "1700000000.1"
        assert upload["initial_comment"] == "Your meeting"
        await slack.message("!files big 9000000")
        post = await slack.next_post(timeout=30)
        assert post["text"].startswith(TOO_LARGE)
    finally:
        await _stop(bot)


# ------------------------------------------------------------------ IRC: no uploads


async def test_irc_says_it_cannot_receive_files(tmp_path: Path, irc_server: IrcServer) -> None:
    from tests.adapters.test_irc_e2e import _user_in_room, _write_project

    _write_project(tmp_path, irc_server, nick="rosey")
    with (tmp_path / "rosey.toml").open("a") as toml:
        toml.write(FILES_TABLE)
    bot = await start_run(tmp_path)
    try:
        alice = await _user_in_room(irc_server, "alice")
        await alice.send("PRIVMSG #rosey :!files ics meeting.ics")
        said = await alice.said_by("rosey", "#rosey", timeout=30)
        assert said == f"this platform cannot receive files: meeting.ics ({len(ICS)} bytes)"
        await alice.quit()
    finally:
        await _stop(bot)


# ------------------------------------------------------------------ Matrix (a real Synapse)


@pytest.fixture
async def alice(synapse: SynapseServer) -> AsyncIterator[Human]:
    async with humans(synapse, "alice") as (person,):
        yield person


async def test_matrix_gets_the_file_in_its_media_repository_and_an_m_file_event(
    synapse: SynapseServer, alice: Human, tmp_path: Path
) -> None:
    import nio

    from tests.adapters.test_matrix_e2e import BOT, _answer, _write_project

    room = await alice.create_room(invite=(BOT,))
    _write_project(tmp_path, synapse, room, adapter='type = "matrix"', extra=FILES_TABLE)
    bot = await start_run(tmp_path, env={"MATRIX_PASSWORD": PASSWORD})
    try:
        await alice.membership(room, BOT, "join")
        command = await alice.send(room, "!files ics meeting.ics 'Your meeting'")
        (event,) = await _answer(alice, room, "Your meeting")
        content = event["content"]
        assert content["msgtype"] == "m.file" and content["filename"] == "meeting.ics"
        assert content["info"] == {"mimetype": "text/calendar", "size": len(ICS)}
        assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": command}}
        downloaded = await alice.client.download(mxc=content["url"])
        assert isinstance(downloaded, nio.DownloadResponse), downloaded
        assert downloaded.body == ICS
        await alice.send(room, "!files png")
        (event,) = await _answer(alice, room, "a dot")
        assert event["content"]["msgtype"] == "m.image"
        downloaded = await alice.client.download(mxc=event["content"]["url"])
        assert downloaded.body == PNG
    finally:
        await _stop(bot)


# ------------------------------------------------------------------ CyTube: no uploads either


async def test_cytube_says_it_cannot_receive_files(tmp_path: Path, cytube_server: FakeCytube) -> None:
    from tests.adapters.cytube_server import CytubeUser
    from tests.adapters.test_cytube_e2e import _bot_in, _next_from, _write_project

    _write_project(tmp_path, cytube_server, "files_e2e")
    with (tmp_path / "rosey.toml").open("a") as toml:
        toml.write(FILES_TABLE)
    bot = await start_run(tmp_path)
    try:
        async with CytubeUser(cytube_server, "files_e2e", "alice", password="alice-pw") as alice:
            await _bot_in(alice)
            await alice.say("!files ics meeting.ics 'Your meeting'")
            assert await _next_from(alice, "rosey_bot") == "Your meeting"
            said = await _next_from(alice, "rosey_bot")
            assert said == f"this platform cannot receive files: meeting.ics ({len(ICS)} bytes)"
    finally:
        await _stop(bot)
