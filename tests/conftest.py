from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.app import create_app
from gateway.config import load_config
from routing.mock.server import MockUpstreamApp
from tests.services import EtcdServer, RedisServer, etcd_server, redis_server
from tests.support import ServerThread


@pytest.fixture(scope="session")
def default_gateway() -> Iterator[ServerThread]:
    """The embedded default config (two in-process mocks, no keys) on loopback."""
    with ServerThread(create_app(load_config(None))) as server:
        yield server


@pytest.fixture
def mock_upstream() -> Iterator[ServerThread]:
    """`seawall mock-upstream`'s app on a real socket."""
    with ServerThread(MockUpstreamApp()) as server:
        yield server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A real `redis-server` on a free loopback port (tests/services.py)."""
    with redis_server() as server:
        yield server


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    """A real single-member `etcd` on free loopback ports (tests/services.py)."""
    with etcd_server() as server:
        yield server
