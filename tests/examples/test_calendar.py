"""The calendar example: valid ICS (RFC 5545) files, events kept in storage, clear errors."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.rosey.plugins.examples.calendar_plugin import filename, fold, ics, parse_event
from bot.rosey.testing import OutcomeKind, PluginHarness
from tests.examples.conftest import EXAMPLES

CALENDAR = EXAMPLES / "calendar_plugin.py"
NOW = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)


def unfold(data: bytes) -> list[str]:
    """The content lines of an ICS file (RFC 5545 3.1: CRLF, folded lines joined again)."""
    text = data.decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return text.replace("\r\n ", "").split("\r\n")[:-1]


def test_a_timed_event() -> None:
    event = parse_event(["2026-12-24", "18:00", "Christmas", "dinner;", "family,", "friends"])
    lines = unfold(ics([{**event, "uid": "1-abc"}], now=NOW))
    assert lines[:5] == [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Rosey//calendar example plugin//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ]
    assert lines[5:] == [
        "BEGIN:VEVENT",
        "UID:1-abc@rosey",
        "DTSTAMP:20261202T110000Z",
        "DTSTART:20261224T180000",
        "DTEND:20261224T190000",  # an hour by default
        "SUMMARY:Christmas dinner\\; family\\, friends",
        "END:VEVENT",
        "END:VCALENDAR",
    ]


def test_all_day_end_times_and_overnight() -> None:
    all_day = unfold(ics([parse_event(["2026-12-31", "New", "Year's", "Eve"])], now=NOW))
    assert "DTSTART;VALUE=DATE:20261231" in all_day and "DTEND;VALUE=DATE:20270101" in all_day
    party = unfold(ics([parse_event(["2026-12-31", "22:00-01:30", "Party"])], now=NOW))
    assert "DTSTART:20261231T220000" in party and "DTEND:20270101T013000" in party


def test_long_lines_are_folded_without_splitting_characters() -> None:
    title = "Fête " * 40
    data = ics([parse_event(["2027-01-01", *title.split()])], now=NOW)
    physical = data.decode().split("\r\n")
    assert all(len(line.encode()) <= 75 for line in physical)
    assert f"SUMMARY:{title.strip()}" in unfold(data)
    assert fold("x" * 75) == "x" * 75 and fold("x" * 76) == "x" * 75 + "\r\n x"


def test_bad_input_is_explained() -> None:
    from bot.rosey.plugins.examples.calendar_plugin import UserError

    cases = {
        ("2026-12-24",): "give a date and a title",
        ("24/12/2026", "x"): "'24/12/2026' is not a date like 2026-12-24",
        ("2026-02-30", "x"): "'2026-02-30' is not a date",
        ("2026-12-24", "25:00", "x"): "'25:00' is not a time like 18:00 or 18:00-22:30",
        ("2026-12-24", "18:00"): "the event needs a title",
        ("2026-12-24", "x" * 201): "that title is 201 characters; at most 200",
    }
    for args, expected in cases.items():
        with pytest.raises(UserError, match="^" + expected.replace("(", r"\(")):
            parse_event(list(args))
    assert filename("Christmas dinner!") == "christmas-dinner.ics" and filename("!!!") == "event.ics"


async def test_kept_events(harness: PluginHarness) -> None:
    await harness.start_plugin("calendar", CALENDAR)
    kept = await harness.command("calendar", ["add", "2099-01-15", "09:30", "Team", "meeting"])
    assert (
        kept.message == "📅 Kept #1: Team meeting, 2099-01-15 09:30-10:30 (!calendar export sends them all)"
    )
    await harness.command("calendar", ["add", "2098-05-01", "May", "Day"])
    await harness.command("calendar", ["add", "2001-01-01", "Long", "ago"])
    listed = await harness.command("calendar", ["list"])
    assert listed.message.splitlines() == [
        "#2 2098-05-01 (all day): May Day",
        "#1 2099-01-15 09:30-10:30: Team meeting",
    ]
    assert (await harness.command("calendar", ["delete", "2"])).message == "🗑 Deleted event #2"
    missing = await harness.command("calendar", ["delete", "2"])
    assert missing.kind is OutcomeKind.ERROR and missing.message == "⚠️ calendar: there is no kept event #2"
    bad = await harness.command("calendar", ["add", "tomorrow", "x"])
    assert bad.message.startswith("⚠️ calendar: 'tomorrow' is not a date like 2026-12-24; usage: ")
    assert (await harness.command("calendar")).message.startswith("usage: !calendar <YYYY-MM-DD>")


async def test_an_event_as_an_ics_file(harness: PluginHarness) -> None:
    await harness.start_plugin("calendar", CALENDAR)
    reply = await harness.command("calendar", ["2026-12-24", "18:00", "Christmas", "dinner"])
    assert reply.ok, reply.message
    assert reply.message == "📅 Christmas dinner, 2026-12-24 18:00-19:00"
    file = reply.data["file"]
    assert file["name"] == "christmas-dinner.ics" and file["mime"] == "text/calendar"
    # What the host stored (and an adapter would upload) is the calendar, byte for byte but the UID.
    stored = (harness.state_dir / "files" / file["id"] / file["name"]).read_bytes()
    assert file["size"] == len(stored)
    lines = unfold(stored)
    expected = unfold(ics([parse_event(["2026-12-24", "18:00", "Christmas", "dinner"])], now=NOW))
    assert len(lines) == len(expected)
    for got, want in zip(lines, expected, strict=True):
        if not got.startswith(("UID:", "DTSTAMP:")):
            assert got == want


async def test_export_sends_every_kept_event(harness: PluginHarness) -> None:
    await harness.start_plugin("calendar", CALENDAR)
    empty = await harness.command("calendar", ["export"])
    assert empty.kind is OutcomeKind.ERROR and "no kept events to export" in empty.message
    await harness.command("calendar", ["add", "2099-01-15", "09:30", "Team", "meeting"])
    await harness.command("calendar", ["add", "2098-05-01", "May", "Day"])
    reply = await harness.command("calendar", ["export"])
    assert reply.message == "📅 2 event(s)" and reply.data["file"]["name"] == "rosey-calendar.ics"
    stored = (harness.state_dir / "files" / reply.data["file"]["id"] / "rosey-calendar.ics").read_bytes()
    summaries = [line for line in unfold(stored) if line.startswith("SUMMARY:")]
    assert summaries == ["SUMMARY:May Day", "SUMMARY:Team meeting"]
