"""A result over the NATS message limit reaches the user as a prompt, clear error (not a timeout),
and the limit is configurable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer, NatsServerConfig
from bot.rosey.testing import OutcomeKind, PluginHarness

BIG = Path(__file__).parent / "fixtures" / "big_result_plugin.py"

pytestmark = pytest.mark.timeout(60)


async def test_a_result_over_the_limit_is_an_error_naming_the_sizes(harness: PluginHarness) -> None:
    await harness.start_plugin("big", BIG)
    # The timeout is far away: an answer that came by timeout would say TIMEOUT, not ERROR.
    outcome = await harness.command("big", ["5"], timeout=30.0)
    assert outcome.kind is OutcomeKind.ERROR, outcome
    assert outcome.message == "⚠️ big: result too large: 5.00 MB > 1 MB", outcome.message
    # The plugin keeps serving what fits.
    assert (await harness.command("big", ["0.5"])).ok


@pytest.fixture
def roomy_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(NatsServerConfig(work_dir=tmp_path / "nats", max_payload=8 * 2**20))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_larger_configured_limit_lets_the_result_through(roomy_server: NatsServer) -> None:
    async with PluginHarness(roomy_server.url) as harness:
        await harness.start_plugin("big", BIG)
        outcome = await harness.command("big", ["5"], timeout=30.0)
        assert outcome.ok, outcome.message[:200]
        assert len(outcome.message) == 5 * 2**20
