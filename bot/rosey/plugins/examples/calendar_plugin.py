"""Calendar: answers with an ICS file your calendar app can import.

Usage::

    !calendar 2026-12-24 18:00 Christmas dinner     one event as an .ics file (1 hour)
    !calendar 2026-12-24 18:00-22:30 Party          with an end time
    !calendar 2026-12-31 New Year's Eve             an all-day event
    !calendar add 2027-01-15 09:30 Team meeting     keep it in the bot's calendar
    !calendar list                                  the kept events still to come
    !calendar delete 2                              remove kept event #2
    !calendar export                                every kept event in one .ics file

Times have no time zone ("floating" in iCalendar terms): 18:00 is 18:00 wherever the person
importing the file is.

What it shows plugin authors:

* ``await self.send_file(filename, data, mime_type=..., correlation_id=..., caption=...)``:
  answer a command with a file. Only bytes travel: the plugin never names a path of the host.
  Rosey uploads it where the platform takes files (Matrix, Discord, Slack; the console saves
  it and prints where), and says so where it cannot. It answers the command: no
  ``publish_result`` after it. A file over the operator's ``[plugins.calendar.files]
  max_bytes`` raises ``FileTooLarge`` before anything is sent;
* generating a standard format by hand, carefully (RFC 5545: CRLF line ends, escaped text,
  long lines folded at 75 bytes);
* ``self.storage`` again, for the kept events.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from bot.rosey.core.events import Event
from bot.rosey.errors import FileTooLarge, ServiceError, StorageQuotaExceeded
from bot.rosey.plugins.permissions import Files, Requests, Storage
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin

MAX_TITLE_CHARS = 200
MAX_EXPORT = 500  # kept events in one export
PRODID = "-//Rosey//calendar example plugin//EN"
MIME = "text/calendar"

USAGE = (
    "usage: !calendar <YYYY-MM-DD> [HH:MM[-HH:MM]] <title> | !calendar add <YYYY-MM-DD> [HH:MM[-HH:MM]] "
    "<title> | !calendar list | !calendar delete <number> | !calendar export"
)

_TIME = re.compile(r"(\d{1,2}):(\d{2})(?:-(\d{1,2}):(\d{2}))?")


def parse_event(args: list[str]) -> dict[str, Any]:
    """``["2026-12-24", "18:00", "Christmas", "dinner"]`` -> an event dict (JSON, for storage)."""
    if len(args) < 2:
        raise UserError(f"give a date and a title; {USAGE}")
    try:
        day = dt.date.fromisoformat(args[0])
    except ValueError:
        raise UserError(f"'{args[0]}' is not a date like 2026-12-24; {USAGE}") from None
    rest = args[1:]
    event: dict[str, Any] = {"date": day.isoformat()}
    match = _TIME.fullmatch(rest[0])
    if match:
        rest = rest[1:]
        try:
            start = dt.time(int(match[1]), int(match[2]))
            end = dt.time(int(match[3]), int(match[4])) if match[3] else None
        except ValueError:
            raise UserError(f"'{match[0]}' is not a time like 18:00 or 18:00-22:30") from None
        begins = dt.datetime.combine(day, start)
        ends = dt.datetime.combine(day, end) if end else begins + dt.timedelta(hours=1)
        if ends <= begins:
            ends += dt.timedelta(days=1)  # 22:00-01:00 ends the next day
        event["start"], event["end"] = begins.isoformat(), ends.isoformat()
    title = " ".join(rest).strip()
    if not title:
        raise UserError(f"the event needs a title; {USAGE}")
    if len(title) > MAX_TITLE_CHARS:
        raise UserError(f"that title is {len(title)} characters; at most {MAX_TITLE_CHARS}")
    event["title"] = title
    return event


def escape(text: str) -> str:
    """iCalendar TEXT: backslash, semicolon, comma and newline escaped (RFC 5545 3.3.11)."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """Lines longer than 75 bytes continue on the next line after a CRLF and a space (3.1),
    never splitting a UTF-8 character."""
    out: list[str] = []
    current = ""
    for char in line:
        limit = 75 if not out else 74  # continuation lines start with the space
        if len((current + char).encode()) > limit:
            out.append(current)
            current = char
        else:
            current += char
    out.append(current)
    return "\r\n ".join(out)


def ics(events: list[dict[str, Any]], *, now: dt.datetime | None = None) -> bytes:
    """A VCALENDAR holding ``events`` (as :func:`parse_event` makes them), as bytes."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    for event in events:
        lines += ["BEGIN:VEVENT", f"UID:{event.get('uid') or uuid.uuid4()}@rosey", f"DTSTAMP:{stamp}"]
        if "start" in event:
            start = dt.datetime.fromisoformat(event["start"]).strftime("%Y%m%dT%H%M%S")
            end = dt.datetime.fromisoformat(event["end"]).strftime("%Y%m%dT%H%M%S")
            lines += [f"DTSTART:{start}", f"DTEND:{end}"]
        else:  # all day: DTEND is the next day, exclusive
            day = dt.date.fromisoformat(event["date"])
            lines += [
                f"DTSTART;VALUE=DATE:{day:%Y%m%d}",
                f"DTEND;VALUE=DATE:{day + dt.timedelta(days=1):%Y%m%d}",
            ]
        lines += [f"SUMMARY:{escape(event['title'])}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode()


def when(event: dict[str, Any]) -> str:
    if "start" in event:
        return f"{event['start'].replace('T', ' ')[:16]}-{event['end'][11:16]}"
    return f"{event['date']} (all day)"


def filename(title: str) -> str:
    """A plain file name from a title ("Christmas dinner!" -> "christmas-dinner.ics")."""
    stem = re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")[:40]
    return f"{stem or 'event'}.ics"


class CalendarPlugin(PluginInterface):
    """``!calendar``: events as .ics files."""

    plugin_name = "calendar"
    commands = (
        Command(
            "calendar",
            usage="<YYYY-MM-DD> <title...>",
            help="One event as an .ics file: !calendar 2026-12-24 18:00 Dinner",
        ),
        Command("add", usage="<YYYY-MM-DD> <title...>", help="Keep an event (times as for !calendar)"),
        Command("list", help="The kept events to come"),
        Command("delete", usage="<number>", help="Delete a kept event (see !calendar list)"),
        Command("export", help="Every kept event as one .ics file"),
    )
    # Events in storage; an export of at most 500 events is well under 1 MB (`rosey plugins review calendar`).
    requests = Requests(storage=Storage(max_bytes=2_000_000), files=Files(max_bytes=1_000_000))

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        sub = args[0].lower() if args else "help"
        try:
            if sub in ("help", "-h", "--help"):
                await self.publish_result({"message": USAGE}, event.correlation_id)
            elif sub == "add":
                await self.add(event, args[1:])
            elif sub == "list":
                await self.publish_result({"message": await self.upcoming()}, event.correlation_id)
            elif sub == "delete":
                await self.delete(event, args[1:])
            elif sub == "export":
                await self.export(event)
            else:
                one = parse_event(args)
                await self.send_ics(event, filename(one["title"]), [one], f"📅 {one['title']}, {when(one)}")
        except UserError as exc:
            await self.publish_error(str(exc), event.correlation_id)
        except StorageQuotaExceeded:
            await self.publish_error("the calendar is full; delete some events first", event.correlation_id)

    async def send_ics(self, event: Event, name: str, events: list[dict[str, Any]], caption: str) -> None:
        data = ics(events)
        try:
            # Answers the command with the file (and the caption as its text).
            await self.send_file(
                name, data, mime_type=MIME, correlation_id=event.correlation_id, caption=caption
            )
        except FileTooLarge as exc:
            raise UserError(
                f"the calendar file is {exc.details.get('size')} bytes, "
                f"over this bot's limit of {exc.details.get('limit')}"
            ) from None
        except ServiceError as exc:
            raise UserError(f"the file could not be sent ({exc})") from None

    async def add(self, event: Event, args: list[str]) -> None:
        new = parse_event(args)
        number = await self.storage.update("next_id", lambda n: (n or 0) + 1)
        new["uid"] = f"{number}-{uuid.uuid4().hex[:8]}"
        await self.storage.put(f"event.{number}", new)
        await self.publish_result(
            {"message": f"📅 Kept #{number}: {new['title']}, {when(new)} (!calendar export sends them all)"},
            event.correlation_id,
        )

    async def kept(self) -> list[tuple[int, dict[str, Any]]]:
        found = []
        for key in await self.storage.keys("event."):
            value = await self.storage.get(key)
            if value:
                found.append((int(key.removeprefix("event.")), value))
        return sorted(found, key=lambda item: (item[1].get("start") or item[1]["date"], item[0]))

    async def upcoming(self) -> str:
        today = dt.date.today().isoformat()
        events = [(n, e) for n, e in await self.kept() if e["date"] >= today]
        if not events:
            return "📅 Nothing coming up. Add an event with !calendar add <YYYY-MM-DD> [HH:MM] <title>"
        return "\n".join(f"#{n} {when(e)}: {e['title']}" for n, e in events[:20])

    async def delete(self, event: Event, args: list[str]) -> None:
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            raise UserError("usage: !calendar delete <number> (see !calendar list)")
        number = args[0].lstrip("#")
        if not await self.storage.delete(f"event.{number}"):
            raise UserError(f"there is no kept event #{number}")
        await self.publish_result({"message": f"🗑 Deleted event #{number}"}, event.correlation_id)

    async def export(self, event: Event) -> None:
        events = [e for _, e in await self.kept()][:MAX_EXPORT]
        if not events:
            raise UserError(
                "no kept events to export; add one with !calendar add <YYYY-MM-DD> [HH:MM] <title>"
            )
        await self.send_ics(event, "rosey-calendar.ics", events, f"📅 {len(events)} event(s)")


class UserError(Exception):
    """Something the user can fix; the text is the answer in chat."""


if __name__ == "__main__":
    run_plugin(CalendarPlugin)
