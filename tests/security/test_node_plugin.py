"""A plugin in another language (Node.js) under the same supervisor, sandbox and NATS permissions.

The example ``bot/rosey/plugins/examples/node_echo`` and a hostile Node fixture run through the
real :class:`RoseyApp` with ``command = ["node"]`` (docs/plugins/PROTOCOL.md): the Python
launcher sandboxes itself, then execs node. Under both ``[rosey] launcher`` settings: the zygote
cannot host a foreign program, so such a plugin is always spawned, whichever is configured.

Every refusal is checked outside the plugin: the canary never receives the forged command and
NATS counts the denial; the file's content never comes back; the killed process is replaced.
Skipped, saying what is missing, where ``node`` (or the example's ``nats`` package, which the
fixture installs with ``npm ci`` from the committed lockfile) is not available.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from bot.rosey.core.events import Event
from bot.rosey.core.subjects import Subjects
from bot.rosey.services.router import OutcomeKind
from tests.cli.conftest import rosey as rosey_command
from tests.cli.conftest import start_run
from tests.security.conftest import FIXTURES, Rosey, StartRosey

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "bot" / "rosey" / "plugins" / "examples" / "node_echo"
HOSTILE = FIXTURES / "node_hostile" / "index.js"
PROTOCOL = REPO / "docs" / "plugins" / "PROTOCOL.md"


def _node_ready() -> str | None:
    """Why the Node tests cannot run here (None: they can); installs the example's one dependency."""
    if shutil.which("node") is None:
        return "node is not installed (the Node.js example plugin needs Node 18+ on PATH)"
    if (EXAMPLE / "node_modules" / "nats" / "package.json").is_file():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return f"npm is not installed, and the example's 'nats' package is missing: run `npm ci` in {EXAMPLE}"
    done = subprocess.run(
        [npm, "ci", "--omit=dev", "--no-audit", "--no-fund"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`npm ci` in {EXAMPLE} failed ({last}); the Node example's 'nats' package is missing"
    return None


@pytest.fixture(scope="session")
def node() -> None:
    reason = _node_ready()
    if reason is not None:
        pytest.skip(reason)


def program_of(pid: int | None) -> str:
    """The executable of process ``pid`` (None: the ``node`` on PATH), links resolved."""
    return os.path.realpath(f"/proc/{pid}/exe" if pid is not None else shutil.which("node") or "")


def environ_of(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


def node_echo() -> dict[str, str | list[str]]:
    return {"path": str(EXAMPLE / "index.js"), "command": ["node"]}


def node_hostile() -> dict[str, str | list[str]]:
    # The fixture uses the example's SDK and node_modules: that directory is granted read-only.
    return {"path": str(HOSTILE), "command": ["node"], "read_paths": [str(EXAMPLE)]}


async def wait_restarted(rosey: Rosey, name: str, old_pid: int, timeout: float = 20.0) -> int:
    """The new pid once the supervisor reports ``name`` running again in another process."""
    changed = asyncio.Event()

    async def on_lifecycle(event: Event) -> None:
        changed.set()

    sub = await rosey.core.subscribe(Subjects.lifecycle_events(plugin=name), on_lifecycle)
    try:

        async def wait() -> int:
            while True:
                row = rosey.row(name)
                if row["state"] == "running" and row["pid"] not in (None, old_pid):
                    return int(row["pid"])
                changed.clear()
                await changed.wait()

        return await asyncio.wait_for(wait(), timeout)
    finally:
        await sub.unsubscribe()


async def test_node_plugin_answers_a_command(node: None, start_rosey: StartRosey, launcher: str) -> None:
    """Under a strict sandbox: every layer was applied before node ran, or it would not start."""
    rosey = await start_rosey({"node_echo": node_echo()}, launcher=launcher, sandbox="strict")
    outcome = await rosey.command("node_echo", "hello", "from", "chat")
    assert outcome.kind is OutcomeKind.RESULT, outcome
    assert outcome.message == "hello from chat"
    assert str(outcome.data["runtime"]).startswith("node v")
    error = await rosey.command("node_echo")
    assert error.kind is OutcomeKind.ERROR and "usage: !node_echo TEXT" in error.message, error
    row = rosey.row("node_echo")
    assert row["launcher"] == "spawn"  # the zygote cannot become node, whatever is configured
    # What the launcher applied before it exec'd node, as it told the runner (not node's claim).
    assert row["sandbox_source"] == "launcher"
    layers = set(row["sandbox"].split(","))
    assert {"landlock-fs", "landlock-net", "seccomp", "rlimits", "no_new_privs", "capabilities"} <= layers
    assert program_of(row["pid"]) == program_of(None)  # the process is node itself, not a wrapper
    # The environment node started with (/proc/PID/environ: as execve gave it) is the documented one.
    names = {entry.split(b"=", 1)[0].decode() for entry in environ_of(row["pid"]) if entry}
    assert not names & {"ROSEY_SANDBOX", "ROSEY_PARENT_PID", "PYTHONPATH", "PYTHONUNBUFFERED"}, names
    assert {"ROSEY_PLUGIN_NAME", "NATS_URL", "NATS_USER", "NATS_PASSWORD", "ROSEY_READY_FD"} <= names
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", PROTOCOL.read_text(), flags=re.M))
    assert names <= documented, names - documented


async def test_node_plugin_is_refused_another_plugins_subjects(
    node: None, start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey({"node_hostile": node_hostile(), "canary": {}}, launcher=launcher)
    execute = Subjects.plugin_command("canary", "execute")
    observer = await rosey.collect(execute)

    # Publish a command in the canary's name, and listen on the canary's command subject.
    assert (await rosey.command("node_hostile", "publish", execute, "forged-by-node")).ok
    assert (await rosey.command("node_hostile", "subscribe", execute)).ok
    await rosey.server_log.until(lambda: rosey.row("node_hostile").get("denied_by_nats", 0) >= 2)

    # Positive control, after the attempts: the core's command on that subject is delivered.
    await rosey.core.publish(execute, {"args": ["core-cmd"], "marker": "core-cmd"}, "security-test")
    await observer.wait_for("core-cmd")
    assert await rosey.canary_saw("core-cmd")
    assert observer.markers() == {"core-cmd"}  # the server routed nothing from the Node plugin
    assert not await rosey.canary_saw("forged-by-node")
    received = (await rosey.command("node_hostile", "received")).data["value"]
    assert received == {execute: []}, received  # its subscription got none of the canary's commands
    pong = await rosey.core.request(Subjects.control("node_hostile", "ping"), {}, "security-test", timeout=5)
    assert pong.data["permission_violations"] >= 2, pong.data  # the SDK counted them (evidence only)


async def test_node_plugin_cannot_read_outside_its_grants(
    node: None, start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey({"node_hostile": node_hostile(), "canary": {}}, launcher=launcher)
    secret = rosey.state_dir / "data" / "canary" / "secret.txt"
    secret.write_text("canary-secret-4711")
    targets = {
        rosey.workdir / "rosey.toml": "[rosey]",  # the operator's configuration
        secret: "canary-secret-4711",  # another plugin's data
        rosey.state_dir / "nats" / "nats-server.conf": "password",  # every plugin's NATS password
    }
    for target, content in targets.items():
        assert content in target.read_text(), target  # each target exists and holds what it should
        answer = await rosey.command("node_hostile", "read", target)
        assert answer.ok, answer
        assert content not in str(answer.data), (target, answer.data)
        assert answer.data["outcome"] == "denied", (target, answer.data)
    # Positive control: its own file is readable, so "denied" above is the sandbox, not a bad path.
    own = await rosey.command("node_hostile", "read", HOSTILE)
    assert own.data["outcome"] == "read" and "hostile plugin in Node.js" in own.data["content"]
    spawned = await rosey.command("node_hostile", "spawn")  # no process creation: only the exec
    assert spawned.data["outcome"] == "denied", spawned.data
    assert rosey.row("node_hostile")["num_threads"] is not None


async def test_node_plugin_is_restarted_after_sigkill(
    node: None, start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey({"node_echo": node_echo()}, launcher=launcher)
    pid = rosey.row("node_echo")["pid"]
    os.kill(pid, signal.SIGKILL)
    new_pid = await wait_restarted(rosey, "node_echo", pid)
    assert new_pid != pid
    assert rosey.row("node_echo")["restarts"] == 1
    outcome = await rosey.command("node_echo", "back", "again")
    assert outcome.kind is OutcomeKind.RESULT and outcome.message == "back again", outcome


@pytest.mark.timeout(90)
async def test_node_plugin_answers_liveness_pings(node: None, start_rosey: StartRosey) -> None:
    """It stays up past more ping intervals than the watchdog's miss limit, answering each."""
    rosey = await start_rosey({"node_echo": node_echo()}, launcher="spawn")
    pid = rosey.row("node_echo")["pid"]
    assert (await rosey.command("node_echo", "one")).ok
    pings: list[Event] = []
    seen = asyncio.Event()

    async def on_ping(event: Event) -> None:
        pings.append(event)
        seen.set()

    # The watchdog's pings, as the server routes them (the core may subscribe to anything).
    sub = await rosey.core.subscribe(Subjects.control("node_echo", "ping"), on_ping)
    assert rosey.app.watchdog is not None
    limit = rosey.app.watchdog.config.missed_pings_limit
    try:

        async def enough() -> None:
            while len(pings) < 2 * limit:
                seen.clear()
                await seen.wait()

        await asyncio.wait_for(enough(), 60)
    finally:
        await sub.unsubscribe()
    row = rosey.row("node_echo")
    assert (row["pid"], row["restarts"], row["state"]) == (pid, 0, "running"), row
    assert row["commands"] == 1, row  # from its pong: the watchdog read the reply
    pong = await rosey.core.request(Subjects.control("node_echo", "ping"), {}, "security-test", timeout=5)
    assert pong.event_type == "pong" and pong.source == "plugin-node_echo"
    assert pong.data["commands"] == 1 and pong.data["in_flight"] == 0, pong.data


@pytest.mark.timeout(90)
async def test_rosey_send_reaches_the_node_plugin(node: None, tmp_path: Path) -> None:
    """As an operator does it: rosey.toml, `rosey run`, `rosey send node_echo ...`, `rosey status`."""
    (tmp_path / "rosey.toml").write_text(
        "[rosey]\nentry_points = false\nplugin_dirs = []\n[plugins.node_echo]\n"
        f'path = "{EXAMPLE / "index.js"}"\ncommand = ["node"]\n'
    )
    bot = await start_run(tmp_path)
    try:
        code, out, err = await rosey_command("send", "node_echo", "hi", "there", cwd=tmp_path)
        assert (code, out.strip()) == (0, "hi there"), err
        rows = {row["name"]: row for row in (await bot.status())["plugins"]}
        assert rows["node_echo"]["state"] == "running" and rows["node_echo"]["launcher"] == "spawn"
    finally:
        bot.proc.terminate()
        await asyncio.wait_for(bot.proc.wait(), 30)
