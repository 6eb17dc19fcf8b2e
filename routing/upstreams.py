"""Builds the provider for each deployment, on connection pools shared by origin.

Deployments that share an origin (scheme, host, port) share one pooled transport,
so ten deployments on one provider do not open ten connection pools. The pools
outlive any one config version (`Pools`, kept by the gateway's State): a reload
that keeps an origin keeps its warm keep-alive connections, and a pool closes only
when the last version using it is done. A `TransportWrapper` may wrap each
deployment's transport (the chaos layer, tracing): routing itself never needs to
know what is wrapped around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpx

from routing.config import DeploymentConfig
from routing.mock.transport import MockTransport
from routing.providers.base import Provider
from routing.providers.openai import OpenAICompatible
from routing.transport import PoolTransport, SharedTransport

__all__ = ["Pools", "SharedTransport", "TransportWrapper", "Upstreams"]

TransportWrapper = Callable[[httpx.AsyncBaseTransport, DeploymentConfig], httpx.AsyncBaseTransport]


Origin = tuple[str, str, int | None]


class Pools:
    """Connection pools by origin, counted by the config versions that use them."""

    def __init__(self) -> None:
        self._pools: dict[Origin, PoolTransport] = {}
        self._users: dict[Origin, int] = {}

    def acquire(self, origin: Origin) -> PoolTransport:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = PoolTransport()
        self._users[origin] = self._users.get(origin, 0) + 1
        return pool

    async def release(self, origin: Origin) -> None:
        """One user fewer; the pool closes when it was the last."""
        self._users[origin] -= 1
        if not self._users[origin]:
            del self._users[origin]
            await self._pools.pop(origin).aclose()

    def __len__(self) -> int:
        return len(self._pools)


class Upstreams:
    """One config version's providers, on pools from `pools` (its own when None)."""

    def __init__(
        self,
        deployments: Iterable[DeploymentConfig],
        wrap: TransportWrapper | None = None,
        pools: Pools | None = None,
    ) -> None:
        self._pools = pools if pools is not None else Pools()
        self._origins: list[Origin] = []
        self.providers: dict[str, Provider] = {}
        for config in deployments:
            self.providers[config.id] = self._build(config, wrap)

    def _build(self, config: DeploymentConfig, wrap: TransportWrapper | None) -> Provider:
        if config.uses_litellm:
            from routing.providers.litellm import LiteLLMProvider

            return LiteLLMProvider(config)
        transport: httpx.AsyncBaseTransport
        if config.provider == "mock":
            transport = MockTransport(config.model, config.mock)
            config = config.model_copy(update={"api_base": "http://mock.invalid/v1"})
        else:
            assert config.api_base is not None
            url = httpx.URL(config.api_base)
            origin = (url.scheme, url.host, url.port)
            self._origins.append(origin)
            transport = SharedTransport(self._pools.acquire(origin))
        if wrap is not None:
            transport = wrap(transport, config)
        return OpenAICompatible(config, transport)

    async def start(self) -> None:
        """Starts every provider, and with it its pool (pools already started by an
        earlier version are left as they are)."""
        for provider in self.providers.values():
            await provider.start()

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        origins, self._origins = self._origins, []
        for origin in origins:
            await self._pools.release(origin)
