"""The IRC rules that need no server: line budgets, SASL PLAIN payloads, redaction, formatting."""

from __future__ import annotations

import base64

import pytest

from bot.rosey.adapters.irc_protocol import (
    LINE_BYTES,
    fallback_nicks,
    redact,
    sasl_plain_chunks,
    strip_formatting,
    text_budget,
    valid_target,
)

pytestmark = pytest.mark.no_nats


def test_the_budget_counts_the_prefix_the_server_adds() -> None:
    budget = text_budget(nick="rosey", user="~rosey", host="example.org", command="PRIVMSG", target="#c")
    line = f":rosey!~rosey@example.org PRIVMSG #c :{'x' * budget}\r\n"
    assert len(line.encode()) == LINE_BYTES
    unknown = text_budget(nick="rosey", user=None, host=None, command="PRIVMSG", target="#c")
    assert unknown < budget  # an unknown mask counts as the longest a server may use
    assert text_budget(nick="rosey", user="u", host="h", command="PRIVMSG", target="a-much-longer-nick") < (
        text_budget(nick="rosey", user="u", host="h", command="PRIVMSG", target="#a")
    )


@pytest.mark.parametrize("password", ["pw", "p" * 290, "p" * 400])
def test_sasl_plain_payload(password: str) -> None:
    chunks = sasl_plain_chunks("rosey", password)
    assert all(len(chunk) <= 400 for chunk in chunks)
    payload = "".join(c for c in chunks if c != "+")
    assert base64.b64decode(payload) == f"rosey\0rosey\0{password}".encode()
    # A payload that fills its last 400-byte line exactly is closed by "+" (IRCv3 sasl-3.1).
    assert (chunks[-1] == "+") == (len(payload) % 400 == 0)


def test_secrets_are_redacted_in_logged_lines() -> None:
    assert redact("PASS hunter2") == "PASS <redacted>"
    assert redact("AUTHENTICATE cm9zZXkAcm9zZXkAaHVudGVyMg==") == "AUTHENTICATE <redacted>"
    assert redact("AUTHENTICATE PLAIN") == "AUTHENTICATE PLAIN"
    assert redact("PRIVMSG NickServ :IDENTIFY rosey hunter2") == "PRIVMSG NickServ :<redacted>"
    assert redact("PRIVMSG #c :hello") == "PRIVMSG #c :hello"


def test_formatting_codes_are_stripped() -> None:
    assert (
        strip_formatting("\x0304,12red\x03 \x02bold\x0f \x1ditalic\x1d \x1funder\x1f")
        == "red bold italic under"
    )
    assert strip_formatting("\x04ff0000hex\x04 \x11mono\x16rev\x1estrike") == "hex monorevstrike"
    assert strip_formatting("\x0399 not a colour pair? \x03,5") == " not a colour pair? ,5"


def test_targets_and_fallback_nicks() -> None:
    assert valid_target("#chan") and valid_target("alice")
    for bad in ("", "a b", "#a,#b", ":x", "a\r\nQUIT", "a\x00"):
        assert not valid_target(bad)
    assert fallback_nicks("rosey", 3) == ["rosey_", "rosey__", "rosey___"]
