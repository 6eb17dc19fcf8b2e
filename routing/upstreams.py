"""Builds the provider for each deployment and owns their connection pools.

Deployments that share an origin (scheme, host, port) share one pooled transport,
so ten deployments on one provider do not open ten connection pools. A
`TransportWrapper` may wrap each deployment's transport (the chaos layer, tracing):
routing itself never needs to know what is wrapped around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpx

from routing.config import DeploymentConfig
from routing.mock.transport import MockTransport
from routing.providers.base import Provider
from routing.providers.openai import OpenAICompatible
from routing.transport import AiohttpTransport

TransportWrapper = Callable[[httpx.AsyncBaseTransport, DeploymentConfig], httpx.AsyncBaseTransport]


class SharedTransport(httpx.AsyncBaseTransport):
    """A per-deployment handle on a shared pool; closing it leaves the pool open."""

    def __init__(self, pool: AiohttpTransport) -> None:
        self.pool = pool

    async def start(self) -> None:
        await self.pool.start()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class Upstreams:
    def __init__(
        self, deployments: Iterable[DeploymentConfig], wrap: TransportWrapper | None = None
    ) -> None:
        self._pools: dict[tuple[str, str, int | None], AiohttpTransport] = {}
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
            if origin not in self._pools:
                self._pools[origin] = AiohttpTransport()
            transport = SharedTransport(self._pools[origin])
        if wrap is not None:
            transport = wrap(transport, config)
        return OpenAICompatible(config, transport)

    async def start(self) -> None:
        for pool in self._pools.values():
            await pool.start()
        for provider in self.providers.values():
            await provider.start()

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        for pool in self._pools.values():
            await pool.aclose()
