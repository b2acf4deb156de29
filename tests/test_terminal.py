"""Text shown to a person: control characters escaped and visible, nothing else changed."""

from __future__ import annotations

import logging

import pytest

from bot.rosey.cli.output import PrintableFormatter
from bot.rosey.terminal import printable, printable_lines

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(10)]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("ok\r[canary] forged", "ok\\r[canary] forged"),
        ("one\ntwo", "one\\ntwo"),
        ("nul\x00 bs\x08 vt\x0b ff\x0c del\x7f", "nul\\x00 bs\\x08 vt\\x0b ff\\x0c del\\x7f"),
        ("\x85 next line, \x9b31m csi", "\\x85 next line, \\x9b31m csi"),
        ("\u202eevil\u202c", "\\u202eevil\\u202c"),
        ("\u2066\u2067\u2068\u2069 \u202a\u202b\u202d", "\\u2066\\u2067\\u2068\\u2069 \\u202a\\u202b\\u202d"),
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
        ("\u2028\u2029", "\\u2028\\u2029"),
    ],
)
def test_control_characters_are_shown_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(shown) == shown  # applying it twice changes nothing


@pytest.mark.parametrize("text", ["plain", "tab\tkept", "héllo ✓ 🔊 日本", "C:\\temp\\x1b", "", "  spaced  "])
def test_everything_else_is_left_alone(text: str) -> None:
    assert printable(text) == text


def test_every_c0_and_c1_character_but_tab_becomes_printable() -> None:
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        shown = printable(chr(code))
        if code == 0x09:
            assert shown == "\t"
        else:
            assert shown.isprintable() and shown.startswith("\\"), (code, shown)


def test_printable_lines_keeps_line_breaks_and_indents_the_rest() -> None:
    assert printable_lines("first\r\nsecond\x1b[2J\n> third", "  ") == "first\n  second\\x1b[2J\n  > third"
    assert printable_lines("one line", "    ") == "one line"


def test_the_log_formatter_escapes_whatever_the_message_quotes() -> None:
    formatter = PrintableFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord(
        "rosey.router",
        logging.WARNING,
        __file__,
        1,
        "plugin answered: %s",
        ("bad\x1b[2J\n12:00 INFO x",),
        None,
    )
    assert formatter.format(record) == "WARNING rosey.router: plugin answered: bad\\x1b[2J\n    12:00 INFO x"
