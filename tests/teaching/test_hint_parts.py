"""The parts of the errors that teach, without processes: which modules plugin code may import, how
a hint is read back for a failed start's reason, and when the loop watch stands aside."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from bot.rosey.errors import HostModuleRefused
from bot.rosey.plugins.hints import HINT_PREFIX, Hint, HintKind, hint_of, shown
from bot.rosey.plugins.host_guard import HostModuleGuard, refusal
from bot.rosey.plugins.loop_watch import LoopWatch, blocked_loop_hint
from bot.rosey.plugins.plugin_side import HOST_ONLY, PLUGIN_PROCESS_SIDE, runs_in_plugin_process
from bot.rosey.plugins.process.failure import summarize_failure
from bot.rosey.plugins.process.hint_log import HintLog
from bot.rosey.plugins.process.output import OutputLine

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

PACKAGE = Path(__file__).resolve().parents[2] / "bot" / "rosey"


@pytest.mark.parametrize(
    "module",
    [
        "bot",
        "bot.rosey",
        "bot.rosey.plugins",  # packages on the way to the SDK
        "bot.rosey.adapters",
        "bot.rosey.plugins.plugin_interface",
        "bot.rosey.plugins.storage_client",
        "bot.rosey.core.events",
        "bot.rosey.errors",
        "bot.rosey.plugins.contract",
        "bot.rosey.plugins.examples.echo_plugin",
        "bot.rosey.adapters.chat_adapter",
        "json",
        "nats",
        "botany",
    ],
)
def test_the_sdk_the_wire_and_the_rest_of_the_world_may_be_imported(module: str) -> None:
    assert runs_in_plugin_process(module)


@pytest.mark.parametrize(
    "module",
    [
        "bot.rosey.app",
        "bot.rosey.services",
        "bot.rosey.services.router",
        "bot.rosey.supervision.supervisor",
        "bot.rosey.broker.nats_server",
        "bot.rosey.cli.main",
        "bot.rosey.config",
        "bot.rosey.plugins.plugin_runner",
        "bot.rosey.plugins.process.zygote",
        "bot.rosey.adapters.console",
        "bot.rosey.chat_config",  # not listed on either side: refused (an allow-list)
        "bot.rosey.web.dashboard",
        "bot.rosey.__main__",
        "bot.rosey.plugins.plugin_interfacex",
    ],
)
def test_host_code_may_not(module: str) -> None:
    assert not runs_in_plugin_process(module)


def test_the_guard_is_at_least_as_strict_as_the_house_rules() -> None:
    for host in HOST_ONLY:
        assert not runs_in_plugin_process(f"bot.rosey.{host}"), host


def test_every_plugin_side_entry_names_a_module_that_exists() -> None:
    # A rename must not leave the guard allowing a module that no longer exists (and refusing the new one).
    for side in PLUGIN_PROCESS_SIDE:
        path = PACKAGE.joinpath(*side.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), side


def test_the_guard_refuses_with_a_hint_and_an_import_error(capsys: pytest.CaptureFixture[str]) -> None:
    guard = HostModuleGuard()
    assert guard.find_spec("json") is None
    assert guard.find_spec("bot.rosey.core.events") is None
    refusals = []
    for _ in range(2):  # the same place twice: refused twice, told once
        with pytest.raises(ImportError) as refused:  # called from this file: plugin code, as far as it knows
            guard.find_spec("bot.rosey.services")
        refusals.append(refused.value)
    first = refusals[0]
    assert isinstance(first, HostModuleRefused) and isinstance(refusals[1], HostModuleRefused)
    assert first.module == first.name == "bot.rosey.services"
    assert str(first).startswith(f"{__file__}:")
    told = capsys.readouterr().err.splitlines()
    assert told == [HINT_PREFIX + str(first)]


@pytest.mark.parametrize(
    ("module", "fix"),
    [
        ("bot.rosey.services.router", "talk to the bot over NATS through the SDK instead"),
        ("bot.rosey.services.storage", "keep data with self.storage (see docs/plugins/storage.md)"),
        ("bot.rosey.storage_config", "keep data with self.storage"),
        ("bot.rosey.services.gateway", "make HTTP requests with self.http"),
        ("bot.rosey.services.files", "send files with self.send_file(...)"),
        ("bot.rosey.testing", "import it in test files only"),
        ("bot.rosey.config", "a plugin does not read rosey.toml"),
        ("bot.rosey.configuration_of_sorts", "talk to the bot over NATS"),  # a prefix is a module, not text
    ],
)
def test_each_refusal_says_what_to_use_instead(module: str, fix: str) -> None:
    text = refusal("/p/plugins/x.py", 3, module)
    assert text.startswith(f"/p/plugins/x.py:3 imports {module}, which is Rosey's host code"), text
    assert fix in text, text


def test_the_blocked_loop_fix_follows_the_line() -> None:
    assert "use `await asyncio.sleep(...)` instead" in blocked_loop_hint("/f.py", 1, "h", "time.sleep(5)")
    assert "self.http" in blocked_loop_hint("/f.py", 1, "h", "requests.get(url)")
    generic = blocked_loop_hint("/f.py", 9, "handle_command", "crunch(numbers)")
    assert generic.startswith(
        "/f.py:9 (in handle_command) blocked the event loop for over 1 s: `crunch(numbers)`"
    )
    assert "asyncio.to_thread" in generic and "run_in_executor" in generic


def test_a_hint_is_read_back_from_a_plain_or_a_logged_line(tmp_path: Path) -> None:
    assert hint_of("rosey hint: /a.py:1 imports x") == "/a.py:1 imports x"
    assert (
        hint_of("2026-12-02 10:00:00,000 - Slow - WARNING - rosey hint: /a.py:2 blocked") == "/a.py:2 blocked"
    )
    assert hint_of("an ordinary line") is None
    assert shown(f"{tmp_path}/plugins/a.py:3 imports x", tmp_path) == "plugins/a.py:3 imports x"
    assert shown("/elsewhere/a.py:3 imports x", tmp_path) == "/elsewhere/a.py:3 imports x"
    with pytest.raises(ValueError, match="one line"):
        Hint(kind=HintKind.BLOCKED_LOOP, file="/a.py", line=1, message="two\nlines")


def test_a_failed_start_with_a_hint_is_summarized_as_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    hint = "/srv/plugins/x.py:3 imports bot.rosey.app, which is Rosey's host code and does not run"
    assert (
        summarize_failure([HINT_PREFIX + hint])
        == "srv/plugins/x.py:3 imports bot.rosey.app, " + hint.split("bot.rosey.app, ")[1]
    )
    # Raised from on_start through the SDK: the traceback's exception carries the hint's text.
    raised = [
        "2026-12-02 - X - ERROR - Plugin 'x' fatal error:",
        "Traceback (most recent call last):",
        '  File "/srv/plugins/x.py", line 12, in on_start',
        "    import bot.rosey.app",
        f"bot.rosey.errors.HostModuleRefused: {hint}",
    ]
    assert summarize_failure([HINT_PREFIX + hint, *raised]) == shown(hint)
    # A hint the plugin caught, then another failure: the failure is the reason.
    other = [
        "Traceback (most recent call last):",
        '  File "/srv/plugins/x.py", line 20, in <module>',
        "ValueError: no API key",
    ]
    assert summarize_failure([HINT_PREFIX + hint, *other]) == "ValueError: no API key (srv/plugins/x.py:20)"
    long_hint = "/x.py:1 " + "word " * 100
    assert summarize_failure([HINT_PREFIX + long_hint]) == shown(long_hint).strip()  # a hint is shown whole


def test_the_hint_log_keeps_each_stderr_hint_once(tmp_path: Path) -> None:
    log = HintLog(base=tmp_path)
    for stream, text in [
        ("stdout", "rosey hint: /x.py:1 printed by the plugin, not a hint"),
        ("stderr", f"rosey hint: {tmp_path}/p.py:4 blocked"),
        ("stderr", f"... - WARNING - rosey hint: {tmp_path}/p.py:4 blocked"),
        ("stderr", "ordinary"),
    ]:
        log(OutputLine(timestamp=0.0, stream=stream, text=text))
    assert log.take() == ["p.py:4 blocked"]
    assert log.take() == []


async def test_the_loop_watch_stands_aside_for_the_plugins_own_alarm() -> None:
    def own(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGALRM, own)
    try:
        watch = LoopWatch(None)
        assert not watch.start() and not watch.active
        watch.command_started()  # nothing armed, nothing raised
        watch.command_finished()
        assert signal.getsignal(signal.SIGALRM) is own
    finally:
        signal.signal(signal.SIGALRM, previous)


async def test_the_loop_watch_is_the_main_threads_only() -> None:
    watch = LoopWatch(None)
    assert await asyncio.to_thread(lambda: asyncio.run(_start(watch))) is False


async def _start(watch: LoopWatch) -> bool:
    return watch.start()
