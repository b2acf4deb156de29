"""Plugins on another host (issue 16): a hub (`rosey run`) and a host (`rosey host`), each with its
own nats-server on loopback, the host a leaf node of the hub under its leaf user's ceiling."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.broker.leaf import host_inbox_prefix
from bot.rosey.cli.client import ask, connect
from bot.rosey.core.event_bus import EventBus
from bot.rosey.core.events import Event
from bot.rosey.hosts.registry import host_state_subject
from tests.cli.conftest import ROSEY, rosey, user_env
from tests.hosts.conftest import DISABLED_IRC, Cluster, start_cluster, stop_cluster

pytestmark = pytest.mark.timeout(120)

UNREACHABLE = "plugin 'far_echo' is on host 'b', which is unreachable"


async def test_a_command_from_the_hub_is_answered_by_the_plugin_on_the_host(cluster: Cluster) -> None:
    hub_row = await cluster.wait_host_label("far_echo", "b")
    code, out, err = await rosey("send", "far_echo", "--json", "hello", "there", cwd=cluster.hub.workdir)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["message"] == "far: hello there"
    # The process that answered is the host's plugin, as the host itself reports it.
    bus = await connect(cluster.host.runtime())
    try:
        local = await ask(bus, cluster.host.runtime(), "status", {"history": False})
    finally:
        await bus.disconnect()
    host_pid = {row["name"]: row["pid"] for row in local["plugins"]}["far_echo"]
    assert answer["data"]["pid"] == host_pid == hub_row["pid"]
    # One view: the hub's own plugin beside it, HOST the hub's name.
    code, out, err = await rosey("status", cwd=cluster.hub.workdir)
    assert code == 0, err
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["NAME"][1] == "HOST"
    assert lines["far_echo"][1:3] == ["b", "plugin"]
    assert lines["echo"][1] == "hub"


async def test_restart_and_logs_of_a_remote_plugin_go_through_its_host(cluster: Cluster) -> None:
    before = await cluster.wait_host_label("far_echo", "b")
    code, out, err = await rosey("send", "far_echo", "marker-123", cwd=cluster.hub.workdir)
    assert code == 0, err
    code, out, err = await rosey("logs", "far_echo", "-n", "20", cwd=cluster.hub.workdir)
    assert code == 0, err
    assert "far_echo heard marker-123" in out
    code, out, err = await rosey("restart", "far_echo", cwd=cluster.hub.workdir)
    assert code == 0, err
    new_pid = int(out.split("pid ")[1].rstrip(")\n"))
    assert out.startswith("far_echo: running") and new_pid != before["pid"]
    bus = await connect(cluster.host.runtime())
    try:  # the host's own supervisor did it
        local = await ask(bus, cluster.host.runtime(), "status", {"history": False})
    finally:
        await bus.disconnect()
    row = {r["name"]: r for r in local["plugins"]}["far_echo"]
    assert (row["pid"] == new_pid and row["restarts"] == 0) or row["pid"] == new_pid


async def test_a_remote_plugin_crashing_mid_command_fails_it_at_once(cluster: Cluster) -> None:
    """Its host's supervisor publishes the crash, which crosses to the hub: the command ends with
    the crash reply, not at the 30 s command timeout (rosey() gives up after 15)."""
    before = await cluster.wait_host_label("far_echo", "b")
    code, out, err = await rosey("send", "far_echo", "crash", cwd=cluster.hub.workdir, timeout=15)
    assert code == 1, out + err
    assert "crash" in (out + err).lower()

    def restarted(status: dict[str, Any]) -> dict[str, Any] | None:  # on its host, seen from the hub
        row = next(r for r in status["plugins"] if r["name"] == "far_echo")
        return row if row["state"] == "running" and row["pid"] != before["pid"] else None

    row = await cluster.until_status(restarted, 20)
    assert row["restarts"] >= 1


async def test_logs_follow_of_a_remote_plugin_streams_from_its_host(cluster: Cluster) -> None:
    await cluster.wait_host_label("far_echo", "b")
    follow = await asyncio.create_subprocess_exec(
        *ROSEY,
        "logs",
        "far_echo",
        "-n",
        "1",
        "-f",
        cwd=cluster.hub.workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=user_env(),
    )
    assert follow.stdout is not None
    try:
        await asyncio.wait_for(follow.stdout.readline(), 15)  # the one recent line: following now
        seen = ""
        async with asyncio.timeout(20):
            attempt = 0
            while "far_echo heard live-" not in seen:
                # The live subject's interest crosses the leaf asynchronously: say it again until heard.
                attempt += 1
                code, _, err = await rosey("send", "far_echo", f"live-{attempt}", cwd=cluster.hub.workdir)
                assert code == 0, err
                with contextlib.suppress(TimeoutError):
                    seen += (await asyncio.wait_for(follow.stdout.readline(), 2)).decode()
    finally:
        follow.kill()
        await follow.wait()


async def test_a_lost_host_fails_fast_with_a_clear_reply_and_comes_back(cluster: Cluster) -> None:
    await cluster.wait_host_label("far_echo", "b")
    bus = await cluster.hub_bus()
    states: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_state(event: Event) -> None:
        states.put_nowait(event.data)

    watch = await bus.subscribe(host_state_subject("b"), on_state)
    await bus.flush()
    await cluster.host.kill()
    row = await cluster.wait_host_label("far_echo", "b (lost)")
    assert "silent" in (row["reason"] or "")
    # The hub said so itself (no heartbeat comes from a dead host to wake a watcher).
    said = await asyncio.wait_for(states.get(), 10)
    assert said == {"host": "b", "state": "lost", "previous": "connected"}, said
    # The command timeout is 30 s and rosey() gives up after 15: only a fail-fast reply passes.
    code, out, err = await rosey("send", "far_echo", "hi", cwd=cluster.hub.workdir, timeout=15)
    assert code != 0
    assert UNREACHABLE in out + err
    code, out, err = await rosey("restart", "far_echo", cwd=cluster.hub.workdir, timeout=15)
    assert code != 0 and UNREACHABLE in err
    # The hub's own plugins are untouched.
    code, out, err = await rosey("send", "echo", "still", "here", cwd=cluster.hub.workdir)
    assert code == 0 and "still here" in out, err
    # Back: start the same host again.
    await cluster.host.start()
    await cluster.wait_host_label("far_echo", "b")
    said = await asyncio.wait_for(states.get(), 10)
    assert said == {"host": "b", "state": "connected", "previous": "lost"}, said
    await watch.unsubscribe()
    code, out, err = await rosey("send", "far_echo", "again", cwd=cluster.hub.workdir)
    assert code == 0 and "far: again" in out, err


async def test_the_hubs_router_answers_chat_from_the_host_and_refuses_fast_when_it_is_lost(
    tmp_path: Path,
) -> None:
    """A chat line through the running hub's relay and router (not the CLI's router): answered by
    the plugin on the host; refused at once, in words, while the host is lost."""
    running = await start_cluster(tmp_path, hub_extra="\n" + DISABLED_IRC)
    try:
        await running.wait_host_label("far_echo", "b")
        bus = await running.hub_bus()
        replies: asyncio.Queue[str] = asyncio.Queue()

        async def on_reply(event: Event) -> None:
            await replies.put(str(event.data.get("text")))

        await bus.subscribe("rosey.chat.irc.send", on_reply)
        await bus.flush()

        async def say(text: str) -> str:
            line = {"channel": "#rosey", "user": {"id": "op", "name": "op"}, "text": text}
            await bus.publish("rosey.adapters.irc.events.message", line, "test")
            return await asyncio.wait_for(replies.get(), 15)  # < the 30 s command timeout

        assert "far: over chat" in await say("!far_echo over chat")
        await running.host.kill()
        await running.wait_host_label("far_echo", "b (lost)")
        assert UNREACHABLE in await say("!far_echo anyone")
    finally:
        await stop_cluster(running)


# ---------------------------------------------------------------------------- the ceiling

#: Hub subjects outside host b's ceiling, and one inside it (the marker) to know when to look.
HUB_FORBIDDEN_FOR_HOST = (
    "rosey.commands.echo.execute",
    "rosey.supervisor.status",
    "rosey.supervisor.shutdown",
    "rosey.hosts.c.heartbeat",
    "rosey.chat.console.send",
    "rosey.adapters.console.events.message",
    "rosey.services.storage.echo.get",
    "rosey.lifecycle.echo.running",
    "_INBOX.rosey_core.forged.1",
)


async def _collect(bus: EventBus, subjects: tuple[str, ...] | list[str], into: list[str]) -> None:
    async def record(event: Event) -> None:
        into.append(event.subject)

    for subject in subjects:
        await bus.subscribe(subject, record)
    await bus.flush()


async def _until(predicate: Any, resend: Any, timeout: float = 10.0) -> None:
    """Until ``predicate()``: ``resend()`` again on each turn (interest crosses the leaf
    connection asynchronously; the marker proves it has)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await resend()
            await asyncio.sleep(0.05)


async def test_the_ceiling_holds_for_the_host_process_itself(cluster: Cluster) -> None:
    """The host's core identity is unrestricted on the host's own server; on the hub it is held to
    the host's leaf user: nothing beyond its plugins' subjects crosses, either way."""
    await cluster.wait_host_label("far_echo", "b")
    hub = await cluster.hub_bus()
    host = await connect(cluster.host.runtime())  # the host's local core credentials
    try:
        # Host -> hub: the hub listens on forbidden subjects and on the marker.
        seen_on_hub: list[str] = []
        marker = "rosey.plugins.far_echo.marker"  # within the ceiling
        await _collect(hub, [*HUB_FORBIDDEN_FOR_HOST, marker], seen_on_hub)
        await _until(lambda: marker in seen_on_hub, lambda: host.publish(marker, {}, "test"))
        for subject in HUB_FORBIDDEN_FOR_HOST:
            await host.publish(subject, {"args": ["from-host"]}, "test")
        seen_on_hub.clear()
        await _until(lambda: marker in seen_on_hub, lambda: host.publish(marker, {}, "test"))
        assert [s for s in seen_on_hub if s != marker] == []
        # Hub -> host: the host listens on what it was not granted; the marker is its control subject.
        seen_on_host: list[str] = []
        back = "rosey.hosts.b.control.marker"
        readable = ["rosey.plugins.echo.>", "rosey.supervisor.>", "rosey.commands.echo.execute", "_INBOX.>"]
        await _collect(host, [*readable, back], seen_on_host)
        await _until(lambda: back in seen_on_host, lambda: hub.publish(back, {}, "test"))
        for subject in ("rosey.plugins.echo.started", "rosey.supervisor.status"):
            await hub.publish(subject, {}, "test")
        # A command of the hub's core to its own plugin (its #1), answered into a core inbox: the
        # host may read neither.
        data = {"args": ["y"], "user": "u", "channel": "c"}
        await hub.request("rosey.commands.echo.execute", data, "test", "cid-1", timeout=5)
        seen_on_host.clear()
        await _until(lambda: back in seen_on_host, lambda: hub.publish(back, {}, "test"))
        assert [s for s in seen_on_host if s != back] == []
    finally:
        await host.disconnect()
    # The hub's plugin never got the host's command: its first command here is its #2 (the hub's own
    # request above was #1), not #3.
    code, out, err = await rosey("send", "echo", "count", cwd=cluster.hub.workdir)
    assert code == 0 and "Echo #2" in out, out + err


@pytest.mark.parametrize("launcher", ["zygote", "spawn"])
async def test_the_ceiling_holds_for_a_hostile_plugin_on_the_host(tmp_path: Path, launcher: str) -> None:
    """The host's rosey.toml grants plugin ``evil`` hub subjects; the hub's ceiling does not."""
    running = await start_cluster(tmp_path, launcher)
    try:
        await running.wait_host_label("evil", "b")
        hub = await running.hub_bus()
        seen_on_hub: list[str] = []
        await _collect(hub, HUB_FORBIDDEN_FOR_HOST, seen_on_hub)
        # The hub asks evil to attack on its connection for host b; the answer comes after the attack's
        # publishes, on the same path: by then anything let through would have arrived.
        asker = EventBus(
            running.hub_runtime.nats_url,
            user=running.hub_runtime.user,
            password=running.hub_runtime.password,
            inbox_prefix=host_inbox_prefix("b"),
        )
        await asker.connect()
        try:
            await _collect(asker, HUB_FORBIDDEN_FOR_HOST, seen_on_hub)
            command = {"args": ["attack"], "user": "u", "channel": "c"}
            reply = await asker.request("rosey.commands.evil.execute", command, "test", "cid-1", timeout=10)
            assert reply.data.get("message") == "attacked", reply.data
            assert seen_on_hub == []
            # What it listens to on the hub never reaches it.
            for subject in ("rosey.plugins.echo.started", "rosey.supervisor.status"):
                await hub.publish(subject, {}, "test")
            command = {"args": ["report"], "user": "u", "channel": "c"}
            reply = await asker.request("rosey.commands.evil.execute", command, "test", "cid-2", timeout=10)
            heard = reply.data["message"].removeprefix("heard: ").split(",")
            # (its own publishes, delivered on its host's server by its local grants, are in there)
            assert "rosey.plugins.echo.started" not in heard and "rosey.supervisor.status" not in heard
        finally:
            await asker.disconnect()
        # The hub is alive (no shutdown got through) and its echo plugin never ran evil's command.
        code, out, err = await rosey("send", "echo", "count", cwd=running.hub.workdir)
        assert code == 0 and "Echo #1" in out, out + err
        assert running.hub.proc.returncode is None
    finally:
        await stop_cluster(running)


async def _as_raw_leaf(address: str, creds: dict[str, str], subject: str, payload: bytes) -> bytes:
    """Speak the leaf protocol with the host's credentials, send one message on ``subject``, and
    return what the hub answered up to its PONG (accepted) or its closing the link (refused)."""
    host, port = address.removeprefix("nats-leaf://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        hello = {"user": creds["user"], "pass": creds["password"], "name": "evil", "verbose": False}
        writer.write(b"CONNECT " + json.dumps(hello).encode() + b"\r\nPING\r\n")
        while not (await reader.readline()).startswith(b"PONG"):
            pass
        writer.write(b"LMSG %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(payload), payload))
        answer = b""
        while not answer.endswith(b"PONG\r\n"):
            line = await reader.readline()
            if not line:
                break  # the hub closed the link
            if not line.startswith(b"LS"):  # interest announcements
                answer += line
        return answer
    finally:
        writer.close()


async def test_the_hub_enforces_the_ceiling_on_a_host_that_runs_a_modified_server(cluster: Cluster) -> None:
    """A compromised host need not run an honest nats-server: the test speaks the leaf protocol
    itself with the host's credentials (sending needs no interest from the hub). The hub's server
    refuses each forbidden message, closes the link, and says so in the hub's log."""
    await cluster.wait_host_label("far_echo", "b")
    hub = await cluster.hub_bus()
    seen_on_hub: list[str] = []
    allowed = "rosey.plugins.far_echo.marker"
    await _collect(hub, [*HUB_FORBIDDEN_FOR_HOST, allowed], seen_on_hub)
    creds = json.loads((cluster.host.workdir / "b.credentials").read_text())
    leaf_url = (cluster.hub.workdir / ".rosey" / "hosts" / "leaf_url").read_text().strip()
    async with asyncio.timeout(30):
        for subject in (*HUB_FORBIDDEN_FOR_HOST, allowed):
            payload = Event(subject=subject, data={"args": ["from-evil-leaf"]}, source="evil").to_bytes()
            answer = await _as_raw_leaf(leaf_url, creds, subject, payload)
            # The hub had routed it (or not) before answering; what it routed to our core connection
            # arrives before the PONG of this flush.
            await hub.flush()
            if subject == allowed:
                assert answer == b"PONG\r\n" and seen_on_hub == [allowed]
            else:
                assert b"Permissions Violation" in answer, answer
                assert seen_on_hub == [], subject
    log = cluster.hub.workdir / "rosey-run.log"
    for _ in range(100):  # the server's word reaches the hub's log through its stderr: soon, not at once
        text = log.read_text()
        if "publish to 'rosey.commands.echo.execute'" in text:
            break
        await asyncio.sleep(0.1)
    assert "NATS denied a host (leaf connection" in text
    assert "publish to 'rosey.commands.echo.execute'" in text
    code, out, err = await rosey("send", "echo", "count", cwd=cluster.hub.workdir)
    assert code == 0 and "Echo #1" in out, out + err
