"""Pytest fixtures for plugin authors (and for Rosey's own tests).

Installed as a pytest plugin (entry point ``pytest11``), so with Rosey installed these
fixtures are available in any test suite:

``nats_server``
    A private nats-server on a free 127.0.0.1 port, one per test module.
``nats_url``
    Its URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rosey.core.nats_server import NatsServer, NatsServerConfig

__all__ = ["nats_server", "nats_url"]


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server for this test module, bound to 127.0.0.1 on a port it chose."""
    work_dir: Path = tmp_path_factory.mktemp("nats")
    server = NatsServer(NatsServerConfig(work_dir=work_dir, jetstream=False))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """URL of the module's private nats-server."""
    return nats_server.url
