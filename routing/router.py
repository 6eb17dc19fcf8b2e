"""Picks a deployment of a model group and sends the attempt."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from routing.call import Reply, UpstreamRequest
from routing.config import DeploymentConfig, ModelGroupConfig
from routing.outcomes import UpstreamError
from routing.providers.base import Provider


@dataclass(frozen=True)
class Deployment:
    config: DeploymentConfig
    provider: Provider

    @property
    def id(self) -> str:
        return self.config.id


class ModelGroup:
    """Deployments that serve one client-facing model name."""

    def __init__(self, config: ModelGroupConfig, deployments: Iterable[Deployment]) -> None:
        self.config = config
        self.name = config.name
        self.deployments = tuple(deployments)
        self._cumulative = list(itertools.accumulate(d.config.weight for d in self.deployments))

    def pick(self, rng: random.Random) -> Deployment:
        """Weighted random choice: O(log n), no shared state to lock."""
        point = rng.random() * self._cumulative[-1]
        return self.deployments[bisect.bisect_right(self._cumulative, point)]


@dataclass
class Routed:
    reply: Reply
    route: list[str] = field(default_factory=list)


class RoutingError(Exception):
    """No deployment could serve the request; `error` is the last attempt's failure."""

    def __init__(self, error: UpstreamError, route: list[str]) -> None:
        super().__init__(error.message)
        self.error = error
        self.route = route


class Router:
    def __init__(self, groups: Iterable[ModelGroup], rng: random.Random | None = None) -> None:
        self.groups: Mapping[str, ModelGroup] = {g.name: g for g in groups}
        self._rng = rng or random.Random()

    def group(self, name: str) -> ModelGroup | None:
        return self.groups.get(name)

    async def send(self, group: ModelGroup, request: UpstreamRequest) -> Routed:
        deployment = group.pick(self._rng)
        hop = f"{group.name}/{deployment.id}"
        try:
            reply = await deployment.provider.send(request)
        except UpstreamError as exc:
            raise RoutingError(exc, [f"{hop}!{exc.status or exc.failure.label}"]) from exc
        return Routed(reply, [hop])


def build_router(groups: Iterable[ModelGroupConfig], providers: Mapping[str, Provider]) -> Router:
    return Router(
        ModelGroup(g, [Deployment(d, providers[d.id]) for d in g.deployments]) for g in groups
    )
