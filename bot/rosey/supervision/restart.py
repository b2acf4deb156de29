"""The restart decision: what to do after one run of a plugin ended, as a pure function.

:func:`decide` takes the policy, how the run ended, the streak so far (crashes and backoff waits
since the last stable run) and how long the run lasted, and returns :class:`Restart`,
:class:`Stop` or :class:`Fail`. It touches no process, clock or state, so every combination is
tested without starting anything; the supervisor's loop only carries the decision out.

The rules (Kubernetes-like, faster):

- A crash is an exit with a non-zero code or a signal, a kill by the watchdog, or a failed
  start. A clean exit (code 0) is not a crash; a stop on request ends the lifecycle.
- ``on-failure`` restarts after a crash and stops after a clean exit; ``always`` restarts after
  both; ``never`` stops after a clean exit and fails after a crash.
- The first crash after a stable run restarts at once; each further restart in a row waits
  ``backoff_initial``, doubling up to ``backoff_max`` (a clean exit under ``always`` waits too).
- A run of at least ``stable_after`` seconds resets the crash count and the backoff.
- ``crash_limit`` crashes in a row end in ``failed``.
- A plugin that has never been ready (since ``rosey run`` or ``rosey start``) and fails to start
  with an exception (an import error, an exception in ``on_start``) ends in ``failed`` at once:
  that will not go away by itself, and retrying it only repeats the same traceback. So does a
  start that fails the same way as the start just before it, the plugin not ready in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.rosey.plugins.process.child_exit import describe_exit
from bot.rosey.supervision.spec import RestartPolicy

__all__ = [
    "Decision",
    "Exited",
    "Fail",
    "Killed",
    "Restart",
    "RunEnd",
    "StartFailed",
    "Stop",
    "StoppedOnRequest",
    "SupervisorConfig",
    "backoff_delay",
    "decide",
]


@dataclass(frozen=True, kw_only=True)
class SupervisorConfig:
    """Restart and crash-loop policy, shared by all plugins (Kubernetes-like defaults, faster)."""

    backoff_initial: float = 0.5  # wait before the 2nd restart in a row (the 1st is immediate)
    backoff_max: float = 30.0
    stable_after: float = 10.0  # a run this long resets backoff and the crash count
    crash_limit: int = 5  # this many crashes without a stable run in between -> failed
    stop_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if self.crash_limit < 1 or self.stable_after <= 0 or self.stop_timeout <= 0:
            raise ValueError("crash_limit must be >= 1; stable_after and stop_timeout positive")


# ---------------------------------------------------------------------- how a run ended


@dataclass(frozen=True, kw_only=True)
class Exited:
    """The plugin got ready, then its process exited on its own."""

    returncode: int

    @property
    def crashed(self) -> bool:
        return self.returncode != 0

    @property
    def description(self) -> str:
        return describe_exit(self.returncode)


@dataclass(frozen=True, kw_only=True)
class Killed:
    """The plugin got ready, then the watchdog killed it (a limit, or missed liveness pings)."""

    reason: str
    returncode: int | None = None

    @property
    def crashed(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return self.reason


@dataclass(frozen=True, kw_only=True)
class StartFailed:
    """The process died, or did not report ready in time, before it was ready.

    ``raised``: the plugin's code raised an exception (its traceback is the reason), as opposed
    to a timeout or a signal, which may not happen again.
    """

    reason: str = "failed to start"
    raised: bool = False

    @property
    def crashed(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return self.reason


@dataclass(frozen=True, kw_only=True)
class StoppedOnRequest:
    """``stop()`` was called: whatever the process did then is not a crash."""

    returncode: int | None = None

    @property
    def crashed(self) -> bool:
        return False

    @property
    def description(self) -> str:
        return "stopped" if self.returncode is None else describe_exit(self.returncode)


RunEnd = Exited | Killed | StartFailed | StoppedOnRequest


# ---------------------------------------------------------------------- what to do next


@dataclass(frozen=True, kw_only=True)
class Restart:
    """Start the plugin again after ``delay`` seconds (0: at once), with the streak updated.

    ``start_failure`` is this run's failed-start reason (None if it got ready), for the next
    decision to compare with.
    """

    delay: float
    crashes_in_a_row: int
    waits_in_a_row: int
    start_failure: str | None = None


@dataclass(frozen=True, kw_only=True)
class Stop:
    """Leave the plugin stopped; nothing went wrong."""


@dataclass(frozen=True, kw_only=True)
class Fail:
    """Give up: the plugin is ``failed`` for ``reason`` until someone starts it again."""

    reason: str


Decision = Restart | Stop | Fail


def backoff_delay(waits_in_a_row: int, config: SupervisorConfig) -> float:
    """The wait before a restart that follows ``waits_in_a_row`` earlier waits: 0.5, 1, 2 ... 30 s."""
    exponent = min(max(waits_in_a_row, 0), 64)  # 2**64 * backoff_initial is past any backoff_max
    return min(config.backoff_initial * 2.0**exponent, config.backoff_max)


def decide(
    policy: RestartPolicy,
    end: RunEnd,
    *,
    crashes_in_a_row: int,
    waits_in_a_row: int,
    ran_for: float,
    config: SupervisorConfig,
    previous_start_failure: str | None = None,
    ever_ready: bool = True,
) -> Decision:
    """What to do after a run that ended as ``end`` and lasted ``ran_for`` seconds.

    ``crashes_in_a_row`` and ``waits_in_a_row`` are the streak before this run (both 0 after
    ``start()``); ``previous_start_failure`` is the reason the run before this one failed to
    start, if it did; ``ever_ready`` whether the plugin has been ready since it was last started
    on request. A :class:`Restart` carries what to remember for the next decision.
    """
    if isinstance(end, StoppedOnRequest):
        return Stop()
    if isinstance(end, StartFailed) and end.raised and not ever_ready:
        return Fail(reason=f"failed to start: {end.reason}")
    if isinstance(end, StartFailed) and end.reason == previous_start_failure:
        return Fail(reason=f"failed to start, twice the same way: {end.reason}")
    decision = _decide_streak(policy, end, crashes_in_a_row, waits_in_a_row, ran_for, config)
    if isinstance(decision, Restart) and isinstance(end, StartFailed):
        return Restart(
            delay=decision.delay,
            crashes_in_a_row=decision.crashes_in_a_row,
            waits_in_a_row=decision.waits_in_a_row,
            start_failure=end.reason,
        )
    return decision


def _decide_streak(
    policy: RestartPolicy,
    end: Exited | Killed | StartFailed,
    crashes_in_a_row: int,
    waits_in_a_row: int,
    ran_for: float,
    config: SupervisorConfig,
) -> Decision:
    # Only a run that got ready can have been stable; a failed start never resets the streak.
    if not isinstance(end, StartFailed) and ran_for >= config.stable_after:
        crashes_in_a_row = waits_in_a_row = 0
    crashed = end.crashed
    if policy is RestartPolicy.NEVER or (policy is RestartPolicy.ON_FAILURE and not crashed):
        if crashed:
            return Fail(reason=f"exited ({end.description}) and restart = never")
        return Stop()
    if crashed:
        crashes_in_a_row += 1
        if crashes_in_a_row >= config.crash_limit:
            return Fail(reason=f"crashed {crashes_in_a_row} times in a row; last: {end.description}")
        if crashes_in_a_row == 1:  # the first crash after a stable run: at once, no wait counted
            return Restart(delay=0.0, crashes_in_a_row=1, waits_in_a_row=waits_in_a_row)
    return Restart(
        delay=backoff_delay(waits_in_a_row, config),
        crashes_in_a_row=crashes_in_a_row,
        waits_in_a_row=waits_in_a_row + 1,
    )
