"""Subject names: the builders, the name rules that keep a plugin inside its own subjects, plugin_of."""

from __future__ import annotations

import pytest

from bot.rosey.core.subjects import Subjects, validate_plugin_name, validate_token

pytestmark = pytest.mark.no_nats


def test_builders() -> None:
    assert Subjects.event("message") == "rosey.events.message"
    assert Subjects.plugin_command("echo", "execute") == "rosey.commands.echo.execute"
    assert Subjects.plugin_command("calendar_manager", "result") == "rosey.commands.calendar_manager.result"
    assert Subjects.plugin_event("echo", "started") == "rosey.plugins.echo.started"
    assert Subjects.all_plugin_events("echo") == "rosey.plugins.echo.>"
    assert Subjects.chat_send("cytube") == "rosey.chat.cytube.send"
    assert Subjects.supervisor("status") == "rosey.supervisor.status"
    assert Subjects.EVENTS_ALL == f"{Subjects.EVENTS}.>"


def test_lifecycle_builders() -> None:
    assert Subjects.lifecycle("echo", "crashed") == "rosey.lifecycle.echo.crashed"
    assert Subjects.lifecycle_events() == "rosey.lifecycle.*.*"
    assert Subjects.lifecycle_events(state="crashed") == "rosey.lifecycle.*.crashed"
    assert Subjects.lifecycle_events("echo") == "rosey.lifecycle.echo.*"
    # Outside the namespace a plugin may publish in (rosey.plugins.<name>.>).
    assert not Subjects.lifecycle("echo", "running").startswith(Subjects.PLUGINS + ".")
    with pytest.raises(ValueError, match="invalid plugin name"):
        Subjects.lifecycle("Echo", "running")
    with pytest.raises(ValueError, match="invalid state"):
        Subjects.lifecycle_events("echo", "a.b")


def test_control_builder() -> None:
    assert Subjects.control("echo", "ping") == "rosey.control.echo.ping"
    with pytest.raises(ValueError, match="invalid plugin name"):
        Subjects.control("Echo", "ping")


@pytest.mark.parametrize("name", ["echo", "calendar_manager", "a", "p2", "_x", "123"])
def test_valid_plugin_names(name: str) -> None:
    assert validate_plugin_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Echo", "my-plugin", "a.b", "a*", "a>", "with space", "é", "echo\n", None, 3]
)
def test_invalid_plugin_names_say_why(name: object) -> None:
    with pytest.raises(ValueError, match="lowercase letters, digits and underscores only") as info:
        validate_plugin_name(name)  # type: ignore[arg-type]
    assert f"invalid plugin name {name!r}" in str(info.value)


@pytest.mark.parametrize("token", ["", "a.b", "*", ">", "a b", "tab\t", "a*"])
def test_invalid_tokens_say_why(token: str) -> None:
    with pytest.raises(
        ValueError, match=r"invalid event type .*non-empty, without spaces, '\.', '\*' or '>'"
    ):
        validate_token(token, "event type")


def test_builders_validate_every_token() -> None:
    with pytest.raises(ValueError, match="invalid plugin name"):
        Subjects.plugin_command("evil.>", "execute")
    with pytest.raises(ValueError, match="invalid action"):
        Subjects.plugin_command("echo", "execute.>")
    with pytest.raises(ValueError, match="invalid event type"):
        Subjects.event("*")
    with pytest.raises(ValueError, match="invalid event name"):
        Subjects.plugin_event("echo", "")
    with pytest.raises(ValueError, match="invalid platform"):
        Subjects.chat_send("a.b")
    with pytest.raises(ValueError, match="invalid action"):
        Subjects.supervisor(">")
    with pytest.raises(ValueError, match="invalid plugin name"):
        Subjects.all_plugin_events("ECHO")


@pytest.mark.parametrize(
    ("subject", "plugin"),
    [
        ("rosey.commands.echo.execute", "echo"),
        ("rosey.commands.echo.result", "echo"),
        ("rosey.plugins.trivia.started", "trivia"),
        ("rosey.plugins.trivia", "trivia"),
        ("rosey.control.echo.ping", "echo"),
        ("rosey.events.message", None),
        ("rosey.chat.cytube.send", None),
        ("rosey.supervisor.status", None),
        ("rosey.commands", None),
        ("other.commands.echo.execute", None),
        ("", None),
    ],
)
def test_plugin_of(subject: str, plugin: str | None) -> None:
    assert Subjects.plugin_of(subject) == plugin


def test_plugin_of_inverts_the_builders() -> None:
    for subject in (
        Subjects.plugin_command("calendar_manager", "error"),
        Subjects.plugin_event("calendar_manager", "stopped"),
        Subjects.all_plugin_events("calendar_manager"),
        Subjects.lifecycle("calendar_manager", "crashed"),
    ):
        assert Subjects.plugin_of(subject) == "calendar_manager"
