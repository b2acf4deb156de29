"""Errors that teach, as a plugin author meets them in the test harness (``bot.rosey.testing``).

A plugin that imports Rosey's host code fails to start with one line naming the file, the line and
the fix; a command that blocks the event loop for over a second is told once per place, with the
file, the line and the fix, as a :class:`PluginHintWarning` (and on the plugin's ``hint`` event);
a shorter block, an ``await asyncio.sleep`` and the SDK's own imports say nothing.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.core.events import Event
from bot.rosey.errors import PluginHintWarning, PluginStartError
from bot.rosey.plugins.plugin_runner import ProcessOptions
from bot.rosey.testing import PluginHarness

pytestmark = pytest.mark.timeout(90)

FIXTURES = Path(__file__).parent / "fixtures"
HOST_IMPORT = FIXTURES / "host_import_plugin.py"
SLOW = FIXTURES / "slow_plugin.py"
SDK_IMPORTS = FIXTURES / "sdk_imports_plugin.py"
LAUNCHERS = ["zygote", "spawn"]
DOCS = "docs/plugins/PLUGIN-DEVELOPMENT.md"


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def shown(path: Path) -> str:
    """The path as Rosey shows it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def hint_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PluginHintWarning)]


# ---------------------------------------------------------------------------- host imports


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_a_host_import_fails_the_start_with_the_file_the_line_and_the_fix(
    harness: PluginHarness, launcher: str
) -> None:
    with pytest.raises(PluginStartError) as failure:
        await harness.start_plugin("hostimport", HOST_IMPORT, options=ProcessOptions(launcher=launcher))
    headline, *stderr = str(failure.value).splitlines()
    where = f"{shown(HOST_IMPORT)}:{line_of(HOST_IMPORT, 'from bot.rosey.services.router')}"
    assert headline.startswith(
        f"Plugin 'hostimport' failed to start: {where} imports bot.rosey.services.router, which is "
        "Rosey's host code and does not run in a plugin process: talk to the bot over NATS through "
        "the SDK instead (self.publish_result, self.publish_event, self.subscribe_to_events; "
        f"see {DOCS}#publishing-responses)"
    ), headline
    # One message: the hint, and no traceback beside it.
    assert [line for line in stderr if "rosey hint: " in line] == [
        f"rosey hint: {HOST_IMPORT}:{line_of(HOST_IMPORT, 'from bot.rosey.services.router')} "
        + headline.split(f"{where} ", 1)[1].rsplit(" (it exited", 1)[0]
    ], stderr
    assert not any("Traceback" in line for line in stderr), stderr


GENERATED = """\
import importlib
{header}
from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface, run_plugin


class Generated(PluginInterface):
    @property
    def plugin_name(self) -> str:
        return "generated"

    async def on_start(self) -> None:
        {on_start}

    async def handle_command(self, event: Event) -> None:
        await self.publish_result({{"message": "ok"}}, event.correlation_id)


if __name__ == "__main__":
    run_plugin(Generated)
"""


def generated(tmp_path: Path, header: str = "", on_start: str = "pass") -> Path:
    path = tmp_path / "plugins" / "generated.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GENERATED.format(header=header, on_start=on_start), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("header", "on_start", "module", "fix"),
    [
        ("from bot.rosey import app  # HERE", "pass", "bot.rosey.app", "talk to the bot over NATS"),
        ("import bot.rosey.config  # HERE", "pass", "bot.rosey.config", "does not read rosey.toml"),
        (
            "from bot.rosey.services.storage import StorageService  # HERE",
            "pass",
            "bot.rosey.services.storage",
            "keep data with self.storage",
        ),
        ("from bot.rosey.testing import harness  # HERE", "pass", "bot.rosey.testing", "in test files only"),
        (
            "",
            "importlib.import_module('bot.rosey.supervision.supervisor')  # HERE",
            "bot.rosey.supervision.supervisor",
            "talk to the bot over NATS",
        ),
        ("", "import bot.rosey.plugins.plugin_runner  # HERE", "bot.rosey.plugins.plugin_runner", "NATS"),
    ],
    ids=["from-package", "import-config", "storage", "testing", "import_module-in-on_start", "runner"],
)
async def test_every_way_of_importing_host_code_names_the_plugins_line(
    harness: PluginHarness, tmp_path: Path, header: str, on_start: str, module: str, fix: str
) -> None:
    path = generated(tmp_path, header, on_start)
    with pytest.raises(PluginStartError) as failure:
        await harness.start_plugin("generated", path)
    headline = str(failure.value).splitlines()[0]
    where = f"{shown(path)}:{line_of(path, '# HERE')}"
    assert f"failed to start: {where} imports {module}, which is Rosey's host code" in headline, headline
    assert fix in headline, headline


async def test_a_host_import_the_plugin_catches_still_teaches(harness: PluginHarness, tmp_path: Path) -> None:
    path = generated(tmp_path, "try:\n    import bot.rosey.broker  # HERE\nexcept ImportError:\n    pass")
    with pytest.warns(PluginHintWarning) as record:
        await harness.start_plugin("generated", path)  # it starts: it did without the module
        assert (await harness.command("generated")).ok
        await harness.stop_plugin("generated")
    [message] = hint_warnings(record.list)
    assert message.startswith(
        f"plugin 'generated': {shown(path)}:{line_of(path, '# HERE')} imports bot.rosey.broker, which is "
        "Rosey's host code"
    ), message


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_the_sdk_and_the_wire_import_as_always(harness: PluginHarness, launcher: str) -> None:
    # Under -W error (this suite's setting) any hint would fail the test.
    await harness.start_plugin("sdkimports", SDK_IMPORTS, options=ProcessOptions(launcher=launcher))
    reply = await harness.command("sdkimports")
    assert reply.ok, reply
    lazy = ["bot.rosey.plugins.http_client", "bot.rosey.plugins.files_client", "json"]
    assert reply.data["names"][-3:] == lazy


# ---------------------------------------------------------------------------- a blocked event loop


async def hint_events(harness: PluginHarness, plugin: str) -> asyncio.Queue[dict[str, Any]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def handler(event: Event) -> None:
        await queue.put(dict(event.data))

    await harness.bus.subscribe(f"rosey.plugins.{plugin}.hint", handler)
    await harness.bus.flush()
    return queue


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_a_command_that_blocks_the_loop_over_a_second_is_told_once_with_the_line_and_the_fix(
    harness: PluginHarness, launcher: str
) -> None:
    runner = await harness.start_plugin("slow", SLOW, options=ProcessOptions(launcher=launcher))
    events = await hint_events(harness, "slow")
    line = line_of(SLOW, "the long block")
    with pytest.warns(PluginHintWarning) as record:
        for _ in range(2):  # the same place twice: told once
            assert (await harness.command("slow", ["long", "1.5"])).ok
        event = await asyncio.wait_for(events.get(), 10)
        await harness.stop_plugin("slow")  # its output is read to the end
    expected = (
        f"{shown(SLOW)}:{line} (in handle_command) blocked the event loop for over 1 s: "
        "`time.sleep(seconds)` stops every other command of this plugin, and its liveness pings "
        f"(~8 s of them and it is killed); use `await asyncio.sleep(...)` instead (see {DOCS}#concurrency)"
    )
    assert hint_warnings(record.list) == [f"plugin 'slow': {expected}"]
    hint_lines = [text for text in runner.output.tail("stderr", 1000) if "rosey hint: " in text]
    assert len(hint_lines) == 1 and hint_lines[0].endswith(f"rosey hint: {SLOW}:{expected.split(':', 1)[1]}")
    assert event["kind"] == "blocked_loop" and event["file"] == str(SLOW) and event["line"] == line
    assert event["message"] == f"{SLOW}:{expected.split(':', 1)[1]}"
    assert events.empty()


async def test_a_block_under_a_second_or_an_await_says_nothing(harness: PluginHarness) -> None:
    runner = await harness.start_plugin("slow", SLOW)
    with pytest.warns(PluginHintWarning) as record:
        assert (await harness.command("slow", ["short", "0.5"])).ok
        assert (await harness.command("slow", ["nap", "1.5"])).ok  # awaits: the loop turns
        # Then a long block, so that the test waits on a hint rather than on nothing: stderr is read
        # in order, so a hint about the short block would come before this one.
        assert (await harness.command("slow", ["long", "1.2"])).ok
        await harness.stop_plugin("slow")
    told = hint_warnings(record.list)
    assert len(told) == 1 and f"slow_plugin.py:{line_of(SLOW, 'the long block')} " in told[0], told
    assert not [t for t in runner.output.tail("stderr", 1000) if "rosey hint: " in t and "short" in t]


async def test_a_blocked_loop_is_told_under_the_sandbox_too(harness: PluginHarness) -> None:
    await harness.start_plugin("slow", SLOW, sandbox=True)
    with pytest.warns(PluginHintWarning, match=r"slow_plugin\.py:\d+ \(in handle_command\) blocked"):
        assert (await harness.command("slow", ["long", "1.5"])).ok
        await harness.stop_plugin("slow")


async def test_a_host_import_is_refused_under_the_sandbox_too(harness: PluginHarness) -> None:
    with pytest.raises(PluginStartError, match=r"imports bot\.rosey\.services\.router, which is Rosey"):
        await harness.start_plugin("hostimport", HOST_IMPORT, sandbox=True)


LIBRARY_CALLER = """\
import sys

sys.path.insert(0, {lib!r})

import slowlib

from bot.rosey.core.events import Event
from bot.rosey.plugins.plugin_interface import PluginInterface


class LibraryCaller(PluginInterface):  # no main block: the launcher runs the one plugin class
    @property
    def plugin_name(self) -> str:
        return "caller"

    async def handle_command(self, event: Event) -> None:
        slowlib.crunch(1.5)  # HERE
        await self.publish_result({{"message": "done"}}, event.correlation_id)
"""


async def test_a_block_inside_a_library_is_told_at_the_plugins_own_line(
    harness: PluginHarness, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "slowlib.py").write_text("import time\n\n\ndef crunch(seconds):\n    time.sleep(seconds)\n")
    path = tmp_path / "plugins" / "caller.py"
    path.parent.mkdir()
    path.write_text(LIBRARY_CALLER.format(lib=str(lib)), encoding="utf-8")
    await harness.start_plugin("caller", path)
    with pytest.warns(PluginHintWarning) as record:
        assert (await harness.command("caller")).ok
        await harness.stop_plugin("caller")
    [message] = hint_warnings(record.list)
    assert message.startswith(
        f"plugin 'caller': {shown(path)}:{line_of(path, '# HERE')} (in handle_command) blocked the event "
        "loop for over 1 s: `slowlib.crunch(1.5)` stops every other command"
    ), message
    assert "`await asyncio.to_thread(fn, ...)`" in message, message
