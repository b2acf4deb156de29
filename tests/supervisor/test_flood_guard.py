"""The flood verdict: rates the broker measured against a plugin's limits, carried out by the supervisor."""

from __future__ import annotations

import pytest

from bot.rosey.supervision.flood import FloodGuard, PluginTraffic, flood_violation
from bot.rosey.supervision.spec import Limits, PluginSpec
from bot.rosey.supervision.status import PluginState

from .conftest import ECHO, SWEEP_ONLY

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits(max_publish_rate=5_000, max_publish_bytes_rate=10_000_000, max_subscriptions=100)


def rate(msgs: float, size: float = 0.0, seconds: float = 2.0, subscriptions: int = 3) -> PluginTraffic:
    return PluginTraffic(
        msgs_per_second=msgs, bytes_per_second=size, seconds=seconds, subscriptions=subscriptions
    )


@pytest.mark.no_nats
def test_flood_violation_in_words() -> None:
    assert flood_violation(LIMITS, rate(5_000, 10_000_000)) is None  # at the limit is allowed
    assert flood_violation(LIMITS, rate(52_000.4)) == "flood: 52,000 msgs/s > limit 5,000 msgs/s over 2 s"
    assert flood_violation(LIMITS, rate(10, 450_300_000, 2.4)) == (
        "flood: 450.3 MB/s > limit 10.0 MB/s over 2 s"
    )
    assert (
        flood_violation(LIMITS, rate(10, subscriptions=10_002)) == "flood: 10,002 subscriptions > limit 100"
    )
    assert flood_violation(Limits(), rate(10**9, 10**12, subscriptions=10**6)) is None  # nothing enforced


@pytest.mark.no_nats
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_rate_is_a_finite_count(bad: float) -> None:
    with pytest.raises(ValueError, match="msgs_per_second"):
        rate(bad)


async def test_the_guard_kills_a_flooder_once_and_spares_the_others(stack_factory) -> None:
    flooder = PluginSpec(name="echo", path=ECHO, limits=LIMITS)
    stack = await stack_factory(flooder, watchdog=SWEEP_ONLY)
    guard = FloodGuard(stack.supervisor)

    assert guard.check({"echo": rate(4_000, 1_000_000, seconds=0.001)}) == []
    assert guard.check({"other": rate(10**9, seconds=0.001)}) == []  # not a plugin of this supervisor
    assert guard.check({"echo": rate(60_000, seconds=0.001)}) == ["echo"]
    plugin = await stack.back_up("echo")
    assert plugin.last_exit == "flood: 60,000 msgs/s > limit 5,000 msgs/s over 0 s"
    assert guard.rates == {"echo": rate(60_000, seconds=0.001)}

    # The restarted process is younger than the window: those messages were its predecessor's.
    assert guard.check({"echo": rate(60_000, seconds=60.0)}) == []
    assert plugin.state is PluginState.RUNNING and plugin.restarts == 1
    assert (await stack.command("echo", "still", "here")).ok
