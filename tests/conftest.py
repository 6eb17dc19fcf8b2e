from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.services import EtcdServer, RedisServer, etcd_server, redis_server

if TYPE_CHECKING:
    from tests.support import ServerThread

# The app is imported by the fixtures that serve it, not here: a unit test (a parser,
# a limiter, a policy) starts without loading the gateway.


@pytest.fixture(scope="session")
def default_gateway() -> Iterator[ServerThread]:
    """The embedded default config (two in-process mocks, no keys) on loopback."""
    from gateway.app import create_app
    from gateway.config import load_config
    from tests.support import ServerThread

    with ServerThread(create_app(load_config(None))) as server:
        yield server


@pytest.fixture
def mock_upstream() -> Iterator[ServerThread]:
    """`seawall mock-upstream`'s app on a real socket."""
    from routing.mock.server import MockUpstreamApp
    from tests.support import ServerThread

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
