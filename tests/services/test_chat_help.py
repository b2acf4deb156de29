"""What ``!help`` says, given declarations and the router's access rules (platforms, channels, roles)."""

from __future__ import annotations

from bot.rosey.core.chat import ChatEvent, Role
from bot.rosey.plugins.commands import Command
from bot.rosey.plugins.declared_commands import PluginCommands
from bot.rosey.services.access import AccessPolicy, CommandAccess
from bot.rosey.services.chat_help import MAX_HELP_LINES, ChatHelp

DECLARED = {
    "roll": PluginCommands(plugin="roll", commands=(Command("roll", usage="[NdS...]", help="Roll dice"),)),
    "trivia": PluginCommands(
        plugin="trivia",
        commands=(Command("start", help="Start"), Command("answer", usage="<guess...>", aliases=("a",))),
    ),
    "plain": PluginCommands(plugin="plain", summary="A plugin that declares nothing"),
    "irconly": PluginCommands(plugin="irconly", commands=(Command("irconly", help="IRC only"),)),
    "lobby": PluginCommands(plugin="lobby", commands=(Command("lobby", help="Lobby only"),)),
}
POLICY = AccessPolicy(
    rules={
        "irconly": CommandAccess(platforms=("irc",)),
        "lobby": CommandAccess(channels=("#lobby",)),
        "trivia": CommandAccess(min_role=Role.VOICE),
    }
)


def chat(platform: str = "matrix", channel: str = "#lobby", *roles: str) -> ChatEvent:
    raw = {"text": "!help", "channel": channel, "user": {"id": "ann", "name": "ann", "roles": list(roles)}}
    return ChatEvent.from_wire(raw, event_type="message", platform=platform, platform_type=platform)


def ask(args: list[str], event: ChatEvent, declared: dict[str, PluginCommands] = DECLARED) -> str:
    help_ = ChatHelp(declared, lambda: list(declared))
    return help_(args, lambda plugin: POLICY.refusal(plugin, event), POLICY.is_admin(event))


def test_overview_follows_platforms_channels_and_roles() -> None:
    lines = ask([], chat("matrix", "#lobby")).splitlines()
    assert lines == [
        "Commands you can use (!help NAME for usage):",
        "!lobby — Lobby only",
        "!plain — A plugin that declares nothing",
        "!roll — Roll dice",
    ]
    assert "!irconly — IRC only" in ask([], chat("irc", "#lobby")).splitlines()
    assert "!lobby — Lobby only" not in ask([], chat("irc", "#elsewhere")).splitlines()
    voiced = ask([], chat("matrix", "#x", "voice")).splitlines()
    assert "!trivia start — Start" in voiced and "!trivia answer <guess...>" in voiced


def test_one_command() -> None:
    voiced = chat("matrix", "#x", "voice")
    assert (
        ask(["trivia"], voiced) == "usage: !trivia start — Start\nusage: !trivia answer <guess...> (also: a)"
    )
    assert ask(["trivia", "A"], voiced) == "usage: !trivia answer <guess...> (also: a)"
    assert ask(["trivia", "nope"], voiced) == "!trivia has no subcommand 'nope'; !help trivia lists them"
    assert ask(["trivia"], chat()) == "!trivia needs the voice role (you have user)"
    assert ask(["irconly"], chat()) == "!irconly is not available on matrix"
    assert ask(["plain"], chat()) == "!plain — A plugin that declares nothing (it declares no usage)"
    assert ask(["help"], chat()).startswith("usage: !help [command]")
    assert ask(["rosey"], chat()).startswith("no command !rosey")  # not an admin: not mentioned
    assert ask(["rosey"], chat("console", "console")).startswith("usage: !rosey status")


def test_a_plugin_with_many_commands_cannot_crowd_out_the_others() -> None:
    many = tuple(Command(f"c{i}", help=str(i)) for i in range(64))
    declared = {**DECLARED, "aaa": PluginCommands(plugin="aaa", commands=many)}
    lines = ask([], chat(), declared).splitlines()
    assert "!aaa … 57 more: !help aaa" in lines and "!roll — Roll dice" in lines
    assert len(ask(["aaa"], chat(), declared).splitlines()) == MAX_HELP_LINES
