"""The Matrix adapter's pure parts, without a homeserver: HTML out of Markdown, settings and the
invite allow-list, power levels as roles, and the files it keeps across restarts."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

pytest.importorskip("markdown", reason="markdown is not installed (pip install -e '.[matrix]')")

from bot.rosey.adapters.matrix_events import (
    MAX_CONTENT_BYTES,
    after_own_join,
    creators_of,
    direct_map,
    message_content,
    privileged_creators,
    timestamp,
)
from bot.rosey.adapters.matrix_format import render_markdown, sanitize_html, strip_reply_fallback
from bot.rosey.adapters.matrix_settings import MatrixSettings, roles_for_level
from bot.rosey.adapters.matrix_state import MatrixState, Session
from bot.rosey.core.chat import Role
from bot.rosey.errors import ConfigError

pytestmark = pytest.mark.no_nats

HS = "https://matrix.example.org"


# ---------------------------------------------------------------------- Markdown -> HTML


@pytest.mark.parametrize(
    "text", ["hi", "two\nlines", "a & b < c > d", "para\n\npara", "don't 'quote' \"me\""]
)
def test_plain_text_needs_no_html(text: str) -> None:
    assert render_markdown(text) is None


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("**bold** and *it*", "<p><strong>bold</strong> and <em>it</em></p>"),
        ("`<b>` & x", "<p><code>&lt;b&gt;</code> &amp; x</p>"),
        ("<https://example.org>", '<p><a href="https://example.org">https://example.org</a></p>'),
        ("[x](mailto:a@example.org)", '<p><a href="mailto:a@example.org">x</a></p>'),
        ("```python\nprint(1)\n```", '<pre><code class="language-python">print(1)\n</code></pre>'),
        ("1. a\n2. b", "<ol>\n<li>a</li>\n<li>b</li>\n</ol>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        ("\\*not bold\\*", "<p>*not bold*</p>"),  # what Markdown shows differs from the body
    ],
)
def test_markdown_becomes_the_html_matrix_clients_render(text: str, html: str) -> None:
    assert render_markdown(text) == html


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script> **x**",
        "<img src=x onerror=alert(1)> **x**",
        '<a href="javascript:alert(1)">click</a> **x**',
        "<div onmouseover='x'>**x**</div>",
        "<iframe src=https://evil.example></iframe> **x**",
        "<!-- comment --> <style>body{}</style> **x**",
        "*x* <b>raw</b>",
    ],
)
def test_raw_html_in_a_plugins_text_is_shown_never_rendered(text: str) -> None:
    html = render_markdown(text)
    assert html is not None
    lowered = html.lower()
    for bad in (
        "<script",
        "<img",
        "<a ",
        "<div",
        "<iframe",
        "<style",
        "<!--",
        "<b>",
    ):
        assert bad not in lowered, (bad, html)
    assert not re.search(r"<[^>]*\bon\w+=", lowered)  # no handler inside any real tag
    assert "&lt;" in html  # the markup is there, as text


@pytest.mark.parametrize(
    ("link", "kept"),
    [
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
        ("vbscript:x", False),
        ("https://example.org/a?b=c&d=e", True),
        ("matrix:r/room:example.org", True),
    ],
)
def test_links_only_to_safe_schemes(link: str, kept: bool) -> None:
    html = render_markdown(f"[label]({link})")
    assert html is not None and "label" in html
    assert ("<a href=" in html) is kept


def test_an_image_keeps_its_text_and_loses_its_source() -> None:
    assert render_markdown("![a cat](https://example.org/cat.png)") == "<p>a cat</p>"


def test_the_sanitizer_balances_tags_and_drops_unknown_ones_and_attributes() -> None:
    html, rich, text = sanitize_html(
        '<p><b><i>x</b> y<span style="x">z</span><a href="https://e.org" onclick="y">l'
    )
    assert html == '<p><b><i>x</i></b> yz<a href="https://e.org">l</a></p>'
    assert rich and text == "x yzl"
    html, _, _ = sanitize_html('<a href="https://e.org/&quot;onmouseover=&quot;x">l</a>')
    assert html == '<a href="https://e.org/&quot;onmouseover=&quot;x">l</a>'  # quotes stay inside the value
    assert sanitize_html("<script>x</script><p>&lt;ok&gt;</p>")[0] == "<p>&lt;ok&gt;</p>"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("> <@alice:example.org> earlier\n\n!echo hi", "!echo hi"),
        ("> <@alice:example.org> line one\n> line two\n\n!echo hi\nmore", "!echo hi\nmore"),
        ("!echo hi", "!echo hi"),
        (">not a fallback", ""),
    ],
)
def test_reply_fallbacks_are_stripped(body: str, text: str) -> None:
    assert strip_reply_fallback(body) == text


# ---------------------------------------------------------------------- settings


def test_settings_defaults_and_types() -> None:
    settings = MatrixSettings.from_mapping({"homeserver": HS + "/", "user": "@rosey:example.org"})
    assert settings.homeserver == HS
    assert settings.rooms == () and settings.auto_join == ()
    assert settings.markdown and settings.notice and settings.encrypted_notice
    assert settings.catchup_max_age == 300.0


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"user": "@rosey:example.org"}, "homeserver"),
        ({"homeserver": "matrix.example.org", "user": "@rosey:example.org"}, "homeserver"),
        ({"homeserver": HS}, "user"),
        ({"homeserver": HS, "user": "rosey"}, "user"),
        ({"homeserver": HS, "user": "@rosey:example.org", "rooms": ["general"]}, "rooms"),
        ({"homeserver": HS, "user": "@rosey:example.org", "rooms": [3]}, "rooms"),
        ({"homeserver": HS, "user": "@rosey:example.org", "auto_join": ["a b"]}, "auto_join"),
        ({"homeserver": HS, "user": "@rosey:example.org", "markdown": "yes"}, "markdown"),
        ({"homeserver": HS, "user": "@rosey:example.org", "catchup_max_age": -1}, "catchup_max_age"),
    ],
)
def test_bad_settings_name_their_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MatrixSettings.from_mapping(raw)
    assert caught.value.key == key and key in str(caught.value)


def test_the_adapter_refuses_bad_settings_at_construction(tmp_path: Path) -> None:
    pytest.importorskip("nio", reason="matrix-nio is not installed (pip install -e '.[matrix]')")
    from bot.rosey.adapters.matrix import MatrixAdapter

    with pytest.raises(ConfigError, match="user"):
        MatrixAdapter(name="matrix", settings={"homeserver": HS, "user": "x"}, secrets={}, state_dir=tmp_path)


def test_auto_join_allow_list() -> None:
    settings = MatrixSettings(
        homeserver=HS,
        user="@rosey:example.org",
        auto_join=("!room:example.org", "#ops:example.org", "@alice:elsewhere.org", "friends.org"),
    )

    def decide(
        room: str = "!x", inviter: str = "@mallory:evil.org", aliases: tuple[str, ...] = ()
    ) -> str | None:
        return settings.auto_join_decision(
            room_id=room, inviter=inviter, room_aliases=aliases, configured=False
        )

    assert decide() is None
    assert decide(room="!room:example.org") == "!room:example.org"
    assert decide(aliases=("#ops:example.org",)) == "#ops:example.org"
    assert decide(inviter="@alice:elsewhere.org") == "@alice:elsewhere.org"
    assert decide(inviter="@bob:friends.org") == "friends.org"
    assert decide(inviter="@bob:evil.org", aliases=("#other:example.org",)) is None
    assert settings.auto_join_decision(room_id="!x", inviter="@m:evil.org", room_aliases=(), configured=True)
    anyone = MatrixSettings(homeserver=HS, user="@rosey:example.org", auto_join=("*",))
    assert anyone.auto_join_decision(room_id="!x", inviter="@m:evil.org", room_aliases=(), configured=False)


@pytest.mark.parametrize(
    ("level", "roles"),
    [
        (0, ()),
        (-5, ()),
        (1, (Role.VOICE,)),
        (49, (Role.VOICE,)),
        (50, (Role.OP,)),
        (99, (Role.OP,)),
        (100, (Role.ADMIN,)),
    ],
)
def test_power_levels_as_roles(level: int, roles: tuple[Role, ...]) -> None:
    assert roles_for_level(level) == roles


# ---------------------------------------------------------------------- state files


def test_session_and_sync_token_round_trip_with_private_files(tmp_path: Path) -> None:
    store = MatrixState(tmp_path / "state", homeserver=HS, user="@rosey:example.org")
    assert store.load_session() is None and store.load_sync_token() is None
    session = Session(user_id="@rosey:example.org", device_id="DEV", access_token="syt_secret")
    store.save_session(session)
    store.save_sync_token("s42_1")
    assert store.load_session() == session and store.load_sync_token() == "s42_1"
    for name in ("session.json", "sync.json"):
        assert (tmp_path / "state" / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert "syt_secret" not in repr(session)

    store.forget_token(session)  # refused by the homeserver: the device stays
    assert store.load_session() is None and store.device_id() == "DEV"
    store.forget_sync_token()
    assert store.load_sync_token() is None


def test_state_of_another_account_or_homeserver_is_not_reused(tmp_path: Path) -> None:
    store = MatrixState(tmp_path, homeserver=HS, user="@rosey:example.org")
    store.save_session(Session(user_id="@rosey:example.org", device_id="DEV", access_token="t"))
    store.save_sync_token("s1")
    for other in (
        MatrixState(tmp_path, homeserver=HS, user="@other:example.org"),
        MatrixState(tmp_path, homeserver="https://other.example.org", user="@rosey:example.org"),
    ):
        assert other.load_session() is None and other.load_sync_token() is None and other.device_id() is None


def test_an_unreadable_state_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sync.json").write_text("{not json")
    (tmp_path / "session.json").write_text(json.dumps(["a", "list"]))
    store = MatrixState(tmp_path, homeserver=HS, user="@rosey:example.org")
    with caplog.at_level(logging.WARNING):
        assert store.load_sync_token() is None
        assert store.load_session() is None
    assert any("sync.json" in r.getMessage() for r in caplog.records)
    store.save_sync_token("s2")  # and it is replaced by the next write
    assert store.load_sync_token() == "s2"


# ---------------------------------------------------------------------- events and content


def _member(user: str, membership: str, before: str | None = None) -> dict[str, object]:
    event: dict[str, object] = {
        "type": "m.room.member",
        "state_key": user,
        "content": {"membership": membership},
    }
    if before is not None:
        event["unsigned"] = {"prev_content": {"membership": before}}
    return event


def test_history_ends_at_the_bots_own_join_not_at_a_profile_change() -> None:
    bot = "@rosey:example.org"
    old, new = {"type": "m.room.message", "n": 1}, {"type": "m.room.message", "n": 2}
    assert list(after_own_join([old, _member(bot, "join", "invite"), new], bot)) == [new]
    assert list(after_own_join([old, _member(bot, "join"), new], bot)) == [new]  # no prev_content
    assert list(after_own_join([old, _member(bot, "join", "join"), new], bot)) == [
        old,
        _member(bot, "join", "join"),
        new,
    ]
    someone = _member("@alice:example.org", "join", "invite")
    assert list(after_own_join([old, someone, new], bot)) == [old, someone, new]
    odd = {"type": "m.room.member", "state_key": bot, "content": "x", "unsigned": []}
    assert list(after_own_join([odd, new], bot)) == [odd, new]


def test_room_creators_and_their_privilege() -> None:
    create = {"sender": "@a:x", "content": {"additional_creators": ["@b:x", 3]}}
    assert creators_of(create) == {"@a:x", "@b:x"}
    assert creators_of({"sender": "@a:x", "content": None}) == {"@a:x"}
    assert [privileged_creators(v) for v in ("1", "10", "11", "12", "13", "org.matrix.hydra.11")] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]


def test_direct_map_and_timestamps_tolerate_junk() -> None:
    assert direct_map({"@a:x": ["!r", 5], "@b:x": "!s", 7: ["!t"]}) == {"@a:x": ["!r"], "7": ["!t"]}
    assert direct_map(["not", "a", "map"]) == {}
    assert timestamp({"origin_server_ts": 1234}) == 1234.0
    assert timestamp({"origin_server_ts": True}) > 1e12  # not a number: now


def test_reply_and_thread_content() -> None:
    assert message_content("hi") == {"msgtype": "m.notice", "body": "hi", "m.mentions": {}}
    reply = message_content("hi", reply_to="$q", mentioned="@a:x")
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    assert reply["m.mentions"] == {"user_ids": ["@a:x"]}
    answer = message_content("hi", thread_id="$root", reply_to="$q")
    assert answer["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$q"},
    }
    for latest, expected in ((None, "$root"), ("$last", "$last")):
        said = message_content("hi", thread_id="$root", thread_latest=latest)
        assert said["m.relates_to"]["is_falling_back"] is True
        assert said["m.relates_to"]["m.in_reply_to"] == {"event_id": expected}


def test_the_html_copy_is_left_out_when_it_would_not_fit_an_event() -> None:
    text = "**&** " + "&" * 15_000
    html = render_markdown(text)
    assert html is not None and len(html) > MAX_CONTENT_BYTES
    content = message_content(text, msgtype="m.text", html=html)
    assert content["body"] == text and "formatted_body" not in content and "format" not in content
    small = message_content("**b**", html=render_markdown("**b**"))
    assert (
        small["format"] == "org.matrix.custom.html" and small["formatted_body"] == "<p><strong>b</strong></p>"
    )
