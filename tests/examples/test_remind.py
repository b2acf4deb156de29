"""The remind example: timers kept in storage fire after a restart, are said in chat where the
command came from, and are kept for the user's next command when they cannot be said."""

from __future__ import annotations

import re

from bot.rosey.testing import OutcomeKind, PluginHarness
from tests.examples.conftest import EXAMPLES, Inbox, user

REMIND = EXAMPLES / "remind_plugin.py"
CHAT = {"platform": "testchat", "private": False}


async def test_set_list_cancel(harness: PluginHarness) -> None:
    await harness.start_plugin("remind", REMIND)
    ann = user("ann")
    assert (await harness.command("remind", ["10m", "tea"], user=ann)).message == "👍 Reminder #1 in 10m: tea"
    assert (await harness.command("remind", ["1h30m", "call", "mum"], user=ann)).message.endswith(
        "in 1h 30m: call mum"
    )
    listed = (await harness.command("remind", ["list"], user=ann)).message.splitlines()
    assert re.fullmatch(r"#1 in (10m|9m 5\ds): tea", listed[0]) and re.fullmatch(
        r"#2 in 1h (30m|29m 5\ds): call mum", listed[1]
    ), listed
    # Another user sees none of them, and cannot cancel them.
    assert (await harness.command("remind", ["list"], user=user("bob"))).message == "No reminders pending."
    refused = await harness.command("remind", ["cancel", "1"], user=user("bob"))
    assert refused.message == "⚠️ remind: you have no pending reminder #1 (see !remind list)"
    assert (
        await harness.command("remind", ["cancel", "#1"], user=ann)
    ).message == "🗑 Cancelled reminder #1: tea"
    assert len((await harness.command("remind", ["list"], user=ann)).message.splitlines()) == 1


async def test_errors(harness: PluginHarness) -> None:
    await harness.start_plugin("remind", REMIND)
    cases = {
        ("soon", "tea"): "'soon' is not a duration like 90s, 10m, 1h30m or 2d; usage: !remind",
        ("0s", "tea"): "a reminder must be due in 1 s to 30 days, not 0s",
        ("31d", "tea"): "a reminder must be due in 1 s to 30 days, not 31d",
        ("10m", "x" * 301): "that reminder is 301 characters; at most 300",
        ("cancel", "x"): "usage: !remind cancel <number> (see !remind list)",
    }
    for args, expected in cases.items():
        reply = await harness.command("remind", list(args))
        assert reply.kind is OutcomeKind.ERROR, (args, reply)
        assert reply.message.startswith(f"⚠️ remind: {expected}"), (args, reply.message)
    # Arguments that do not fit the declared usage: the SDK answers with the usage line.
    usage = {
        ("10m",): "usage: !remind <when> <text...> (missing <text...>)",
        ("cancel",): "usage: !remind cancel <number> (missing <number>)",
        (): "usage: !remind <when> <text...> (missing <when>)",
    }
    for args, expected in usage.items():
        reply = await harness.command("remind", list(args))
        assert reply.kind is OutcomeKind.RESULT and reply.message == expected, (args, reply)


async def test_a_timer_set_before_a_restart_fires_after_it_in_the_chat(harness: PluginHarness) -> None:
    chat = await Inbox.open(harness.bus, "rosey.chat.testchat.send")
    fired = await Inbox.open(harness.bus, "rosey.plugins.remind.fired")
    await harness.start_plugin("remind", REMIND)
    set_ = await harness.command("remind", ["4s", "tea"], user=user("ann"), channel="#kitchen", context=CHAT)
    assert set_.message == "👍 Reminder #1 in 4s: tea"
    await harness.stop_plugin("remind")
    assert not chat.seen and not fired.seen, "fired before the restart: the test machine is too slow for 4 s"

    await harness.start_plugin("remind", REMIND)  # on_start reloads the timer from storage
    said = await chat.next()
    assert said.data["text"].startswith("⏰ ann, reminder: tea")
    assert said.data["channel"] == "#kitchen" and "private_to" not in said.data
    event = await fired.next()
    assert event.data["delivered"] is True and event.data["text"] == "tea"
    # Said once, and no longer pending.
    assert (await harness.command("remind", ["list"], user=user("ann"), context=CHAT)).message == (
        "No reminders pending."
    )
    assert len(chat.seen) == 1


async def test_a_private_reminder_is_said_privately(harness: PluginHarness) -> None:
    chat = await Inbox.open(harness.bus, "rosey.chat.testchat.send")
    await harness.start_plugin("remind", REMIND)
    context = {"platform": "testchat", "private": True}
    await harness.command("remind", ["1s", "secret", "tea"], user=user("ann"), channel="ann", context=context)
    said = await chat.next()
    assert said.data["private_to"] == "ann" and "channel" not in said.data
    assert said.data["text"].startswith("⏰ ann, reminder: secret tea")


async def test_without_a_chat_the_reminder_waits_for_the_next_command(harness: PluginHarness) -> None:
    # `rosey send` (no platform): nowhere to say it, so it is kept as missed.
    fired = await Inbox.open(harness.bus, "rosey.plugins.remind.fired")
    await harness.start_plugin("remind", REMIND)
    await harness.command("remind", ["1s", "tea"], user="cli")
    event = await fired.next()
    assert event.data["delivered"] is False
    # Missed reminders survive a restart too.
    await harness.stop_plugin("remind")
    await harness.start_plugin("remind", REMIND)
    shown = (await harness.command("remind", ["list"], user="cli")).message.splitlines()
    assert shown[0] == "📬 While you were away:"
    assert re.fullmatch(r"⏰ #1 \(due \d\d:\d\d UTC\): tea", shown[1]) and shown[2] == "No reminders pending."
    assert (await harness.command("remind", ["due"], user="cli")).message == "Nothing missed."
