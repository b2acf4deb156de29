"""Every test talks to a real nats-server (the ``nats_server`` fixture of ``bot.rosey.testing``).

``NATS_URL`` points at it for code that reads the environment, as the published integration tests do, and
runtime state goes to a temporary directory instead of the checkout's ``.rosey/``.
"""

from __future__ import annotations

import pytest

from bot.rosey.broker.nats_server import NatsServer


@pytest.fixture(autouse=True)
def _isolated_environment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("ROSEY_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("NATS_TOKEN", raising=False)
    if "no_nats" not in request.keywords:
        server: NatsServer = request.getfixturevalue("nats_server")
        monkeypatch.setenv("NATS_URL", server.url)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_nats: the test needs no nats-server")
