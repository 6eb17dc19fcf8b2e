"""One endpoint, two ways through: by the API the requested group's upstreams speak.

`POST /v1/responses` is served by translation to Chat Completions for most model
groups, and passed through as sent to groups whose deployments speak the Responses
API (`api: responses`, docs/responses.md). Which way is the config's, per group, so
the choice is made once the model is known, and each way is an ordered list of
stages of its own (gateway/runtime.py composes both): no stage branches on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.exchange import Exchange
from gateway.pipeline import Stage
from routing.router import Router


class ByUpstreamApi:
    """Reads `exchange.body["model"]` (an unknown or missing model takes the `chat`
    way, whose stages answer it), then runs the stages of that group's `api`."""

    def __init__(self, router: Router, ways: Mapping[str, Sequence[Stage]]) -> None:
        self.router = router
        self.ways = {api: tuple(stages) for api, stages in ways.items()}

    async def __call__(self, exchange: Exchange) -> None:
        model = exchange.body.get("model")
        group = self.router.group(model) if isinstance(model, str) else None
        api = group.config.api if group is not None else "chat"
        for stage in self.ways[api]:
            await stage(exchange)
