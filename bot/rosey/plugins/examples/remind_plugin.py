"""Remind: timers that survive a restart, because they live in plugin storage.

Usage::

    !remind 10m tea          in 10 minutes: "⏰ ann, reminder: tea" (also 90s, 1h30m, 2d, 1w)
    !remind list             your pending reminders, with the time left (a countdown)
    !remind cancel 3         cancel reminder #3
    !remind due              reminders that fired but could not be said in chat

How a reminder reaches the chat. A plugin answers commands; saying something *later*, on its
own, is a publish on the chat's send subject (``rosey.chat.<platform>.send``), which the
operator must grant::

    [plugins.remind]
    publish = ["rosey.chat.*.send"]

Without that grant the NATS server refuses the publish; the plugin notices (see
:meth:`RemindPlugin.say`) and keeps the reminder as *missed*: it is shown at the user's next
``!remind`` command (or with ``!remind due``), for a week. A command that did not come from a
chat (``rosey send``) has no chat to go back to, so its reminders are always kept that way.

What it shows plugin authors:

* state that outlives the process: each timer is a storage key (``timer.<n>``) holding its due
  time as a wall-clock timestamp; ``on_start`` reloads them and schedules what is pending, so a
  reminder set before a restart (or a crash) still fires, late if it fell due while the plugin
  was down;
* ``self.storage.update()`` as a claim: two instances of the plugin (an overlapping restart)
  never both fire the same timer;
* ``ttl=`` for data that should go away by itself (missed reminders expire after a week);
* ``publish_event`` (always allowed) so that others can watch what the plugin does:
  ``rosey.plugins.remind.fired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from typing import Any

from bot.rosey.core.chat import OutgoingMessage
from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import StorageError
from bot.rosey.plugins.permissions import Requests, Storage
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin

logger = logging.getLogger(__name__)

MIN_SECONDS = 1
MAX_SECONDS = 30 * 24 * 3600  # 30 days
MAX_TEXT_CHARS = 300
MAX_PENDING_PER_USER = 25
MISSED_TTL = 7 * 24 * 3600  # a missed reminder is kept a week

USAGE = (
    "usage: !remind <when> <text> (when: 90s, 10m, 1h30m, 2d, 1w) | !remind list | "
    "!remind cancel <number> | !remind due"
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str) -> int:
    """``"1h30m"`` -> 5400 seconds; :class:`UserError` for anything else or out of range."""
    text = text.lower()
    if not _DURATION.fullmatch(text):
        raise UserError(f"'{text}' is not a duration like 90s, 10m, 1h30m or 2d; {USAGE}")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)([smhdw])", text))
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise UserError(f"a reminder must be due in {MIN_SECONDS} s to 30 days, not {describe(seconds)}")
    return seconds


def describe(seconds: float) -> str:
    """5400 -> ``"1h 30m"``; 42 -> ``"42s"``."""
    seconds = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def sender(event: Event) -> dict[str, Any]:
    """Who asked and where, as stored with the timer (everything needed to answer later)."""
    user = event.data.get("user")
    if isinstance(user, dict):
        user_id = str(user.get("id") or user.get("username") or user.get("name") or "someone")
        name = str(user.get("name") or user.get("username") or user_id)
    else:
        user_id = name = str(user or "someone")
    platform = event.data.get("platform")  # only commands said in a chat carry it
    return {
        "owner": f"{platform}/{user_id}" if platform else user_id,
        "user_id": user_id,
        "name": name,
        "platform": platform,
        "channel": event.data.get("channel"),
        "private": bool(event.data.get("private")),
        "thread_id": event.data.get("thread_id"),
    }


class RemindPlugin(PluginInterface):
    """``!remind``: persistent reminders."""

    plugin_name = "remind"
    # "remind" is the main command (!remind 10m tea); the others are subcommands.
    commands = (
        Command("remind", usage="<when> <text...>", help="Remind you later; when: 90s, 10m, 1h30m, 2d, 1w"),
        Command("list", help="Your pending reminders"),
        Command("cancel", usage="<number>", help="Cancel one of your reminders (see !remind list)"),
        Command("due", help="Reminders you missed while away"),
    )
    # Timers live in storage; saying a due reminder unprompted is a publish on the chat's send
    # subject, which the operator grants or not (`rosey plugins review remind`). Without it, due
    # reminders are kept as "missed" and shown at the user's next command.
    requests = Requests(storage=Storage(max_bytes=2_000_000), publish=["rosey.chat.*.send"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance = uuid.uuid4().hex  # tells this process's claims from another's
        self.timers: dict[str, asyncio.Task[None]] = {}  # storage key -> its waiting task

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        """Reload every pending timer from storage (those that fell due meanwhile fire now)."""
        for key in await self.storage.keys("timer."):
            timer = await self.storage.get(key)
            if timer and timer.get("state") in ("pending", "firing"):
                self.schedule(key, timer)
        logger.info("remind: %d timer(s) pending", len(self.timers))

    async def on_stop(self) -> None:
        for task in self.timers.values():
            task.cancel()
        # Nothing is lost: a timer cancelled here is still in storage and fires after the restart.

    def schedule(self, key: str, timer: dict[str, Any]) -> None:
        if key not in self.timers:
            task = asyncio.create_task(self._fire_at(key, timer["due"]))
            self.timers[key] = task
            task.add_done_callback(lambda _: self.timers.pop(key, None))

    async def _fire_at(self, key: str, due: float) -> None:
        # Wall-clock time, not the loop's clock: the due time must mean the same after a restart.
        await asyncio.sleep(max(0.0, due - time.time()))
        try:
            await self.fire(key)
        except Exception:  # a storage hiccup must not kill the plugin; the timer stays stored
            logger.exception("remind: firing %s failed; it fires again at the next start", key)

    async def fire(self, key: str) -> None:
        def claim(timer: Any) -> Any:
            # Pure: update() may call it again. Only a pending (or interrupted) timer is claimed.
            if (
                timer
                and timer.get("state") in ("pending", "firing")
                and timer.get("claimed_by") != self.instance
            ):
                return {**timer, "state": "firing", "claimed_by": self.instance}
            return timer

        timer = await self.storage.update(key, claim)
        if not timer or timer.get("state") != "firing" or timer.get("claimed_by") != self.instance:
            return  # cancelled meanwhile, or another instance of the plugin fired it
        late = time.time() - timer["due"]
        note = f" (late by {describe(late)}: I was not running)" if late > 5 else ""
        delivered = await self.say(timer, f"⏰ {timer['name']}, reminder: {timer['text']}{note}")
        if delivered:
            await self.storage.delete(key)
        else:
            await self.storage.put(key, {**timer, "state": "missed"}, ttl=MISSED_TTL)
        await self.publish_event(
            "fired",
            {"id": timer["id"], "owner": timer["owner"], "text": timer["text"], "delivered": delivered},
        )

    async def say(self, timer: dict[str, Any], text: str) -> bool:
        """Say ``text`` where the timer was set; False if that is not possible.

        A publish the NATS server refuses raises nothing here (the server reports it afterwards),
        so: publish, then flush (a round trip: the server has processed the publish, and its
        refusal, if any, has arrived), then look at the connection's count of refusals.
        """
        if not timer.get("platform"):
            return False  # not said in a chat (rosey send): nowhere to say it
        if timer["private"]:
            message = OutgoingMessage(text=text, private_to=timer["user_id"])
        else:
            message = OutgoingMessage(text=text, channel=timer["channel"], thread_id=timer.get("thread_id"))
        bus = self.event_bus
        assert bus is not None
        refused_before = bus.stats.permission_violations
        try:
            await bus.publish(
                Subjects.chat_send(timer["platform"]), message.to_wire(), f"plugin-{self.plugin_name}"
            )
            await bus.flush()
        except Exception as exc:
            logger.warning("remind: could not say reminder %s: %s", timer["id"], exc)
            return False
        if bus.stats.permission_violations != refused_before:
            logger.warning(
                'remind: NATS refused rosey.chat.%s.send; grant it with publish = ["rosey.chat.*.send"] '
                "in [plugins.remind] (kept for !remind due)",
                timer["platform"],
            )
            return False
        return True

    # ------------------------------------------------------------------ commands

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        who = sender(event)
        try:
            missed = await self.take_missed(who["owner"])
            sub = args[0].lower() if args else "help"
            if sub in ("help", "-h", "--help"):
                text = USAGE
            elif sub == "list":
                text = await self.list_pending(who)
            elif sub == "cancel":
                text = await self.cancel(who, args[1:])
            elif sub == "due":
                text = "" if missed else "Nothing missed."
            else:
                text = await self.add(who, sub, " ".join(args[1:]))
        except UserError as exc:
            await self.publish_error(str(exc), event.correlation_id)
            return
        except StorageError as exc:
            await self.publish_error(f"reminders are unavailable right now ({exc})", event.correlation_id)
            return
        if missed:  # the reminders we could not say in chat come with the user's next command
            text = "\n".join(["📬 While you were away:", *missed, text]).strip()
        await self.publish_result({"message": text}, event.correlation_id)

    async def add(self, who: dict[str, Any], when: str, text: str) -> str:
        seconds = parse_duration(when)
        text = text.strip()
        if not text:
            raise UserError(f"remind you of what? e.g. !remind {when} tea")
        if len(text) > MAX_TEXT_CHARS:
            raise UserError(f"that reminder is {len(text)} characters; at most {MAX_TEXT_CHARS}")
        if len(await self.pending(who["owner"])) >= MAX_PENDING_PER_USER:
            raise UserError(f"you have {MAX_PENDING_PER_USER} reminders pending already; cancel one first")
        number = await self.storage.update("next_id", lambda n: (n or 0) + 1)
        key = f"timer.{number}"
        timer = {**who, "id": number, "text": text, "due": time.time() + seconds, "state": "pending"}
        await self.storage.put(key, timer)  # stored first: from here on a restart cannot lose it
        self.schedule(key, timer)
        return f"👍 Reminder #{number} in {describe(seconds)}: {text}"

    async def pending(self, owner: str) -> list[dict[str, Any]]:
        # One read per stored timer: fine for an example's hundreds. A busy bot would keep one
        # key per owner listing their timer numbers, updated with storage.update().
        found = []
        for key in await self.storage.keys("timer."):
            timer = await self.storage.get(key)
            if timer and timer["owner"] == owner and timer["state"] in ("pending", "firing"):
                found.append(timer)
        return sorted(found, key=lambda t: t["due"])

    async def list_pending(self, who: dict[str, Any]) -> str:
        timers = await self.pending(who["owner"])
        if not timers:
            return "No reminders pending."
        now = time.time()
        return "\n".join(f"#{t['id']} in {describe(t['due'] - now)}: {t['text']}" for t in timers)

    async def cancel(self, who: dict[str, Any], args: list[str]) -> str:
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            raise UserError("usage: !remind cancel <number> (see !remind list)")
        key = f"timer.{args[0].lstrip('#')}"
        timer = await self.storage.get(key)
        if not timer or timer["owner"] != who["owner"] or timer["state"] not in ("pending", "firing"):
            raise UserError(f"you have no pending reminder #{args[0].lstrip('#')} (see !remind list)")
        await self.storage.delete(key)
        task = self.timers.pop(key, None)
        if task is not None:
            task.cancel()
        return f"🗑 Cancelled reminder #{timer['id']}: {timer['text']}"

    async def take_missed(self, owner: str) -> list[str]:
        """The owner's reminders that fired but could not be said, removed from storage."""
        lines = []
        for key in await self.storage.keys("timer."):
            timer = await self.storage.get(key)
            if timer and timer["owner"] == owner and timer["state"] == "missed":
                with contextlib.suppress(StorageError):
                    if await self.storage.delete(key):  # only one command shows it
                        due = time.strftime("%H:%M UTC", time.gmtime(timer["due"]))
                        lines.append(f"⏰ #{timer['id']} (due {due}): {timer['text']}")
        return lines


class UserError(Exception):
    """Something the user can fix; the text is the answer in chat."""


if __name__ == "__main__":
    run_plugin(RemindPlugin)
