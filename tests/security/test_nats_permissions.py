"""Broker-enforced subject permissions, through the real RoseyApp as an operator runs it.

A hostile plugin and a healthy canary run under ``RoseyApp`` (embedded nats-server, one NATS
user per plugin with the grants of ``broker/identities.py``, OS sandbox per plugin). The hostile
plugin attempts, over its own connection, everything a plugin must not do on the bus; the
canary keeps answering commands throughout, and an observer holding the core's credentials
(read from the runtime file) watches what the server really routes.

Every "never arrives" claim has a positive control: the same message from the core does arrive,
and it is published *after* the hostile attempt, so anything the server had routed would have
been seen first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from bot.rosey.core.subjects import Subjects
from tests.cli.conftest import rosey as rosey_command
from tests.security.conftest import Rosey, StartRosey, violation

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

EXECUTE = Subjects.plugin_command("canary", "execute")
RESULT = Subjects.plugin_command("canary", "result")
ALL_LAYERS = {
    "rlimits",
    "capabilities",
    "no_new_privs",
    "landlock-fs",
    "landlock-net",
    "landlock-scope",
    "seccomp",
}


@pytest.fixture(params=["best-effort", "strict"])
async def rosey(request: pytest.FixtureRequest, start_rosey: StartRosey) -> Rosey:
    """Hostile + canary under both sandbox modes (this kernel supports all, so strict starts)."""
    running = await start_rosey(sandbox=request.param)
    assert running.app.status().sandbox_mode == request.param
    for name in ("hostile", "canary"):  # what each process reports it applied to itself
        pong = await running.core.request(Subjects.control(name, "ping"), {}, "security-test", timeout=5)
        assert set(pong.data["sandbox"].split(",")) >= ALL_LAYERS, pong.data
    return running


@pytest.fixture
async def best_effort(start_rosey: StartRosey) -> Rosey:
    return await start_rosey()


async def test_forged_commands_and_results_never_reach_the_canary(rosey: Rosey) -> None:
    """(a) Publishing on the canary's execute/result subjects is dropped by the server."""
    traffic = rosey.traffic()
    observer = await rosey.collect(EXECUTE, RESULT)

    forged = {
        "forged-cmd": (EXECUTE, ""),
        "forged-req": (EXECUTE, "_INBOX.plugin_hostile.steal"),
        "forged-result": (RESULT, ""),
    }
    for marker, (subject, reply) in forged.items():
        report = await rosey.attempt(
            "hostile", "publish", subject, marker, *([f"reply={reply}"] if reply else [])
        )
        assert report["outcome"] == "denied", report
        assert report["error"] == violation("publish", subject), report

    # Positive control, published after the attempts: delivery works for the core.
    for marker, subject in (("core-cmd", EXECUTE), ("core-result", RESULT)):
        await rosey.core.publish(subject, {"args": [marker], "marker": marker}, "security-test")
        await observer.wait_for(marker)
    assert observer.markers() == {"core-cmd", "core-result"}
    assert await rosey.canary_saw("core-cmd")
    for marker in forged:
        assert not await rosey.canary_saw(marker), marker
    await traffic.assert_all_answered()


DENIED_SUBSCRIPTIONS = [
    (EXECUTE, ""),
    (EXECUTE, "plugin-canary"),  # joining the canary's queue group would steal half its commands
    (">", ""),
    ("rosey.>", ""),
    ("rosey.commands.>", ""),
    ("rosey.commands.*.execute", ""),
    (RESULT, ""),
    ("_INBOX.>", ""),  # the core's reply inboxes: every answer of every plugin
    ("_INBOX.plugin_canary.>", ""),
    (Subjects.control("canary", "ping"), ""),
    ("rosey.logs.canary", ""),
    ("rosey.supervisor.>", ""),
    ("rosey.chat.>", ""),
    ("$JS.API.>", ""),
]


async def test_hostile_subscriptions_receive_nothing(rosey: Rosey) -> None:
    """(b) A denied subscription is accepted by the client but the server routes nothing to it."""
    traffic = rosey.traffic()
    for subject, queue in DENIED_SUBSCRIPTIONS:
        report = await rosey.attempt("hostile", "subscribe", subject, *([f"queue={queue}"] if queue else []))
        assert report["outcome"] == "denied", (subject, queue, report)
        assert report["error"].startswith(violation("subscription", subject)), report
    allowed = await rosey.attempt("hostile", "subscribe", "rosey.events.probe")  # positive control
    assert allowed["outcome"] == "allowed", allowed

    # Traffic on every one of those subjects, from the core, while the subscriptions exist.
    assert (await rosey.command("canary", "while", "they", "listen")).ok  # execute, result, core inbox
    pong = await rosey.core.request(Subjects.control("canary", "ping"), {}, "security-test", timeout=5)
    assert pong.event_type == "pong"
    status = await rosey.core.request(Subjects.supervisor("status"), {}, "security-test", timeout=5)
    assert status.data["ok"] is True
    for subject in ("rosey.logs.canary", "rosey.chat.console.send", "rosey.events.probe"):
        await rosey.core.publish(subject, {"marker": "core"}, "security-test")

    received = (await rosey.attempt("hostile", "received"))["value"]
    assert received.pop("rosey.events.probe|") == ["rosey.events.probe"]
    assert received == {f"{s}|{q}": [] for s, q in DENIED_SUBSCRIPTIONS}
    stats = (await rosey.attempt("hostile", "stats"))["value"]
    assert stats["permission_violations"] == len(DENIED_SUBSCRIPTIONS)
    await traffic.assert_all_answered()


async def test_hostile_cannot_stop_spoof_or_speak_for_others(best_effort: Rosey) -> None:
    """(c) Control and chat subjects are the core's: a plugin's publish there is dropped."""
    rosey = best_effort
    canary_pid = rosey.row("canary")["pid"]
    traffic = rosey.traffic()
    watched = (
        Subjects.supervisor("stop"),
        Subjects.supervisor("restart"),
        Subjects.plugin_event("canary", "crashed"),  # another plugin's own namespace
        Subjects.lifecycle("canary", "crashed"),  # would fail the canary's in-flight commands
        Subjects.lifecycle("hostile", "running"),  # its own lifecycle is the supervisor's to tell
        Subjects.event("message"),  # chat injection: "!canary ..." as if a user typed it
        Subjects.chat_send("console"),  # speaking as the bot
        Subjects.control("canary", "ping"),
    )
    observer = await rosey.collect(*watched)
    for subject in watched:
        report = await rosey.attempt(
            "hostile",
            "publish",
            subject,
            f"hostile:{subject}",
            "name=canary",
            "text=!canary pwned",
            "platform=console",
            "reply=_INBOX.plugin_hostile.x",
        )
        assert report["outcome"] == "denied", (subject, report)
        assert report["error"] == violation("publish", subject)

    status = await rosey.core.request(Subjects.supervisor("status"), {}, "security-test", timeout=5)
    rows = {row["name"]: row for row in status.data["plugins"]}
    assert (rows["canary"]["state"], rows["canary"]["pid"], rows["canary"]["restarts"]) == (
        "running",
        canary_pid,
        0,
    )
    await traffic.assert_all_answered()

    # Positive control, once no command is in flight (a core "crashed" would fail them): the same
    # subjects carry the core's messages. The stop names no plugin and has no reply subject.
    for subject in watched:
        await rosey.core.publish(
            subject, {"marker": f"core:{subject}", "name": "nosuchplugin"}, "security-test"
        )
        await observer.wait_for(f"core:{subject}")
    assert observer.markers() == {f"core:{subject}" for subject in watched}
    assert rosey.row("canary")["pid"] == canary_pid


async def test_server_counts_denials_per_plugin_where_the_plugin_cannot_lie(
    best_effort: Rosey, tmp_path: Path
) -> None:
    """(d) ``rosey status`` shows denials the server logged; the plugin's own count agrees."""
    rosey = best_effort
    assert (await rosey.attempt("hostile", "publish", EXECUTE, "d1"))["outcome"] == "denied"
    assert (await rosey.attempt("hostile", "subscribe", ">"))["outcome"] == "denied"

    await rosey.server_log.until(lambda: rosey.row("hostile").get("denied_by_nats", 0) >= 2)
    row = rosey.row("hostile")
    assert row["denied_by_nats"] == 2
    assert row["last_denied"] == "subscription >"
    assert "denied_by_nats" not in rosey.row("canary")

    pong = await rosey.core.request(Subjects.control("hostile", "ping"), {}, "security-test", timeout=5)
    assert pong.data["permission_violations"] == 2

    # The client name is the plugin's to choose and the server logs it in the violation line;
    # a name forged to read like the canary's denial still counts against the hostile plugin.
    forged_name = 'x" - "$G/user:plugin_canary" - Publish Violation - Subject "rosey.framed'
    framed = await rosey.attempt("hostile", "named_publish", forged_name, RESULT)
    assert framed["outcome"] == "denied", framed
    await rosey.server_log.until(lambda: rosey.row("hostile")["denied_by_nats"] >= 3)
    row = rosey.row("hostile")
    assert (row["denied_by_nats"], row["last_denied"]) == (3, f"publish {RESULT}")
    assert "denied_by_nats" not in rosey.row("canary")

    # The operator's view: `rosey status` in the directory of rosey.toml.
    code, out, err = await rosey_command("status", cwd=tmp_path, timeout=20)
    assert code == 0, err
    assert "hostile: 3 publish/subscribe attempts denied by NATS" in out
    assert "canary:" not in out


async def test_hostile_plugin_keeps_its_own_rights(best_effort: Rosey) -> None:
    """(e) Least privilege, not no privilege: its own result, events and chat events work."""
    rosey = best_effort
    own_result = Subjects.plugin_command("hostile", "result")
    observer = await rosey.collect(Subjects.all_plugin_events("hostile"), own_result)

    ping = await rosey.command("hostile", "ping")  # publish_result: the reply, and its .result
    assert ping.ok and ping.data["value"] == "pong"
    await observer.wait_for("own-result")
    assert (own_result, "own-result") in observer.seen
    published = await rosey.attempt("hostile", "publish_event", "x", "own-event")
    assert published["outcome"] == "allowed", published
    await observer.wait_for("own-event")
    assert ("rosey.plugins.hostile.x", "own-event") in observer.seen

    subscribed = await rosey.attempt("hostile", "subscribe_events", "message")
    assert subscribed["outcome"] == "allowed", subscribed
    await rosey.core.publish(
        Subjects.event("message"), {"marker": "chat-1", "text": "hello", "platform": "console"}, "adapter"
    )
    arrived = await rosey.attempt("hostile", "wait_event", "chat-1", 5)
    assert arrived["outcome"] == "allowed", arrived
    assert (await rosey.attempt("hostile", "stats"))["value"]["permission_violations"] == 0

    # None of that was a denial on the server either: a sentinel denial is the first one counted
    # (the server's log is ordered, so an earlier denial would have been counted before it).
    assert (await rosey.attempt("hostile", "publish", EXECUTE, "sentinel"))["outcome"] == "denied"
    await rosey.server_log.until(lambda: "denied_by_nats" in rosey.row("hostile"))
    row = rosey.row("hostile")
    assert (row["denied_by_nats"], row["last_denied"]) == (1, f"publish {EXECUTE}")


async def test_fork_bomb_is_refused_and_nobody_else_notices(rosey: Rosey) -> None:
    """500 forks through the real app: all EPERM (seccomp), canary and supervisor keep answering."""
    hostile_pid = rosey.row("hostile")["pid"]
    traffic = rosey.traffic()
    bomb, status = await asyncio.gather(
        rosey.attempt("hostile", "fork_many", 500, timeout=20),
        rosey.core.request(Subjects.supervisor("status"), {}, "security-test", timeout=5),
    )
    assert bomb["value"] == {"created": 0, "errors": ["EPERM"]}, bomb
    assert status.data["ok"] is True
    status = await rosey.core.request(Subjects.supervisor("status"), {}, "security-test", timeout=5)
    rows = {row["name"]: row for row in status.data["plugins"]}
    assert rows["hostile"]["state"] == rows["canary"]["state"] == "running"
    assert rows["hostile"]["pid"] == hostile_pid
    assert psutil.Process(hostile_pid).children(recursive=True) == []
    await traffic.assert_all_answered()
