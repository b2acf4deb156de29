"""The restart decision, for every policy, way a run ends, streak and run length: no processes.

The expectations are written from the rules as users read them (docs/plugins/PLUGIN-DEVELOPMENT.md,
"Restart policy"), not from the implementation: first crash after a stable run at once, then
0.5 s doubling to 30 s, a stable run resets, ``crash_limit`` crashes in a row fail, a clean exit is
not a crash, ``never`` fails on a crash.
"""

from __future__ import annotations

import itertools

import pytest

from bot.rosey.supervision.restart import (
    Decision,
    Exited,
    Fail,
    Killed,
    Restart,
    RunEnd,
    StartFailed,
    Stop,
    StoppedOnRequest,
    SupervisorConfig,
    backoff_delay,
    decide,
)
from bot.rosey.supervision.spec import RestartPolicy

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(10)]

CONFIG = SupervisorConfig()  # 0.5 s doubling to 30 s, stable after 10 s, 5 crashes fail

# name -> (how the run ended, is it a crash, what last_exit says)
ENDS: dict[str, tuple[RunEnd, bool, str]] = {
    "clean exit": (Exited(returncode=0), False, "exited cleanly"),
    "exit code": (Exited(returncode=3), True, "exit code 3"),
    "signal": (Exited(returncode=-11), True, "killed by SIGSEGV"),
    "watchdog kill": (
        Killed(reason="memory 301 MB > limit 256 MB", returncode=-9),
        True,
        "memory 301 MB > limit 256 MB",
    ),
    "start failed": (StartFailed(reason="exit code 4"), True, "exit code 4"),
    "stopped": (StoppedOnRequest(returncode=-15), False, "killed by SIGTERM"),
}
# (crashes, waits) before the run: fresh, the usual crash streak (one wait fewer than crashes), long waits.
STREAKS = sorted({(c, w) for c in range(CONFIG.crash_limit) for w in (0, max(c - 1, 0), 7)})
RUNS = {"short run": 0.2, "stable run": CONFIG.stable_after, "long run": 3600.0}


def expected(policy: RestartPolicy, end_name: str, crashes: int, waits: int, ran_for: float) -> Decision:
    end, crashed, last_exit = ENDS[end_name]
    if isinstance(end, StoppedOnRequest):
        return Stop()
    if ran_for >= CONFIG.stable_after and not isinstance(end, StartFailed):
        crashes, waits = 0, 0
    if policy is RestartPolicy.NEVER:
        return Fail(reason=f"exited ({last_exit}) and restart = never") if crashed else Stop()
    if policy is RestartPolicy.ON_FAILURE and not crashed:
        return Stop()
    if crashed:
        crashes += 1
        if crashes >= CONFIG.crash_limit:
            return Fail(reason=f"crashed {crashes} times in a row; last: {last_exit}")
        if crashes == 1:
            return Restart(delay=0.0, crashes_in_a_row=1, waits_in_a_row=waits, start_failure=failure(end))
    delay = min(0.5 * 2**waits, 30.0)
    return Restart(
        delay=delay, crashes_in_a_row=crashes, waits_in_a_row=waits + 1, start_failure=failure(end)
    )


def failure(end: RunEnd) -> str | None:
    """What a restart remembers of a failed start, to recognise the same failure next time."""
    return end.reason if isinstance(end, StartFailed) else None


@pytest.mark.parametrize("policy", list(RestartPolicy))
@pytest.mark.parametrize("end_name", list(ENDS))
@pytest.mark.parametrize(("crashes", "waits"), STREAKS)
@pytest.mark.parametrize("run", list(RUNS))
def test_every_combination(policy: RestartPolicy, end_name: str, crashes: int, waits: int, run: str) -> None:
    end, crashed, last_exit = ENDS[end_name]
    assert end.crashed is crashed and end.description == last_exit
    decision = decide(
        policy, end, crashes_in_a_row=crashes, waits_in_a_row=waits, ran_for=RUNS[run], config=CONFIG
    )
    assert decision == expected(policy, end_name, crashes, waits, RUNS[run])


def run_streak(policy: RestartPolicy, ends: list[RunEnd], ran_for: float = 0.1) -> list[Decision]:
    """Feed each decision's streak into the next, as the supervisor's loop does."""
    crashes = waits = 0
    previous: str | None = None
    decisions: list[Decision] = []
    for end in ends:
        decision = decide(
            policy,
            end,
            crashes_in_a_row=crashes,
            waits_in_a_row=waits,
            ran_for=ran_for,
            config=CONFIG,
            previous_start_failure=previous,
        )
        decisions.append(decision)
        if not isinstance(decision, Restart):
            break
        crashes, waits, previous = decision.crashes_in_a_row, decision.waits_in_a_row, decision.start_failure
    return decisions


@pytest.mark.parametrize("policy", [RestartPolicy.ON_FAILURE, RestartPolicy.ALWAYS])
def test_the_same_start_failure_twice_fails_at_once(policy: RestartPolicy) -> None:
    reason = "ModuleNotFoundError: No module named 'requests' (plugins/weather.py:1)"
    decisions = run_streak(policy, [StartFailed(reason=reason)] * 5)
    assert decisions == [
        Restart(delay=0.0, crashes_in_a_row=1, waits_in_a_row=0, start_failure=reason),
        Fail(reason=f"failed to start, twice the same way: {reason}"),
    ]


def test_different_start_failures_keep_the_usual_backoff() -> None:
    ends: list[RunEnd] = [StartFailed(reason=f"did not report ready within 15 s (try {n})") for n in range(6)]
    decisions = run_streak(RestartPolicy.ON_FAILURE, ends)
    assert [type(d).__name__ for d in decisions] == ["Restart"] * 4 + ["Fail"]
    assert decisions[-1] == Fail(
        reason="crashed 5 times in a row; last: did not report ready within 15 s (try 4)"
    )


def test_a_run_that_got_ready_forgets_the_previous_start_failure() -> None:
    reason = "ValueError: no API key (plugins/boom.py:11)"
    decisions = run_streak(
        RestartPolicy.ON_FAILURE,
        [StartFailed(reason=reason), Exited(returncode=1), StartFailed(reason=reason)],
    )
    assert all(isinstance(d, Restart) for d in decisions), decisions


def test_crash_backoff_sequence_then_failed() -> None:
    decisions = run_streak(RestartPolicy.ON_FAILURE, [Exited(returncode=3)] * 10)
    assert [d.delay for d in decisions if isinstance(d, Restart)] == [0.0, 0.5, 1.0, 2.0]
    assert decisions[-1] == Fail(reason="crashed 5 times in a row; last: exit code 3")
    assert len(decisions) == 5


def test_backoff_doubles_up_to_the_cap() -> None:
    config = SupervisorConfig(crash_limit=100)
    assert [backoff_delay(n, config) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(10_000, config) == 30.0  # no overflow, however long the streak
    crashes = waits = 0
    delays = []
    for _ in range(12):
        decision = decide(
            RestartPolicy.ALWAYS,
            Exited(returncode=1),
            crashes_in_a_row=crashes,
            waits_in_a_row=waits,
            ran_for=0.1,
            config=config,
        )
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
        crashes, waits = decision.crashes_in_a_row, decision.waits_in_a_row
    assert delays == [0.0, 0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    assert crashes == 12


def test_a_stable_run_resets_the_count_and_the_backoff() -> None:
    decision = decide(
        RestartPolicy.ON_FAILURE,
        Exited(returncode=3),
        crashes_in_a_row=4,  # one more short crash would be the 5th
        waits_in_a_row=6,
        ran_for=CONFIG.stable_after,
        config=CONFIG,
    )
    assert decision == Restart(delay=0.0, crashes_in_a_row=1, waits_in_a_row=0)


def test_a_failed_start_is_never_a_stable_run() -> None:
    decision = decide(
        RestartPolicy.ON_FAILURE,
        StartFailed(reason="did not report ready within 30 s"),
        crashes_in_a_row=4,
        waits_in_a_row=3,
        ran_for=3600.0,
        config=CONFIG,
    )
    assert decision == Fail(reason="crashed 5 times in a row; last: did not report ready within 30 s")


def test_clean_exits_under_always_back_off_without_counting_crashes() -> None:
    decisions = run_streak(RestartPolicy.ALWAYS, [Exited(returncode=0)] * 8)
    assert all(isinstance(d, Restart) and d.crashes_in_a_row == 0 for d in decisions)
    assert [d.delay for d in decisions if isinstance(d, Restart)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_clean_exit_between_crashes_keeps_the_streak() -> None:
    ends: list[RunEnd] = [
        Exited(returncode=3),
        Exited(returncode=3),
        Exited(returncode=0),
        Exited(returncode=3),
    ]
    decisions = run_streak(RestartPolicy.ALWAYS, ends)
    assert decisions == [
        Restart(delay=0.0, crashes_in_a_row=1, waits_in_a_row=0),
        Restart(delay=0.5, crashes_in_a_row=2, waits_in_a_row=1),
        Restart(delay=1.0, crashes_in_a_row=2, waits_in_a_row=2),  # not a crash, still a wait
        Restart(delay=2.0, crashes_in_a_row=3, waits_in_a_row=3),
    ]


@pytest.mark.parametrize("policy", list(RestartPolicy))
def test_a_stop_on_request_always_stops(policy: RestartPolicy) -> None:
    for crashes, waits in itertools.product(range(6), range(3)):
        decision = decide(
            policy,
            StoppedOnRequest(returncode=-9),
            crashes_in_a_row=crashes,
            waits_in_a_row=waits,
            ran_for=0.0,
            config=CONFIG,
        )
        assert decision == Stop()


def test_crash_limit_of_one_fails_on_the_first_crash() -> None:
    config = SupervisorConfig(crash_limit=1)
    decision = decide(
        RestartPolicy.ALWAYS,
        Killed(reason="unresponsive"),
        crashes_in_a_row=0,
        waits_in_a_row=0,
        ran_for=0.0,
        config=config,
    )
    assert decision == Fail(reason="crashed 1 times in a row; last: unresponsive")


@pytest.mark.parametrize(
    "changes",
    [
        {"backoff_initial": 0},
        {"backoff_initial": 2.0, "backoff_max": 1.0},
        {"crash_limit": 0},
        {"stable_after": 0},
        {"stop_timeout": -1},
    ],
)
def test_supervisor_config_is_validated(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SupervisorConfig(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", list(RestartPolicy))
def test_an_exception_before_the_plugin_was_ever_ready_fails_at_once(policy: RestartPolicy) -> None:
    end = StartFailed(reason="ValueError: no API key (plugins/boom.py:11)", raised=True)
    decision = decide(
        policy, end, crashes_in_a_row=0, waits_in_a_row=0, ran_for=0.1, config=CONFIG, ever_ready=False
    )
    assert decision == Fail(reason="failed to start: ValueError: no API key (plugins/boom.py:11)")


def test_a_timeout_before_ready_or_an_exception_after_a_ready_run_is_retried() -> None:
    timeout = StartFailed(reason="did not report ready within 15 s", raised=False)
    raised = StartFailed(reason="ConnectionError: api down (plugins/weather.py:20)", raised=True)
    for end, ever_ready in ((timeout, False), (raised, True)):
        decision = decide(
            RestartPolicy.ON_FAILURE,
            end,
            crashes_in_a_row=0,
            waits_in_a_row=0,
            ran_for=0.1,
            config=CONFIG,
            ever_ready=ever_ready,
        )
        assert isinstance(decision, Restart), (end, decision)
