"""A worker imports what its config uses, not more (issue 19: idle memory).

Each case starts a gateway from a config in a fresh interpreter (its lifespan, as
`seawall serve` does) and reports which of the optional libraries got imported: the
CEL library and RE2 only for a config with policy rules (and never the library's
command-line front end), redis-py only for a config naming a Redis store, litellm
(and aiohttp, which only litellm's provider uses) only for a litellm-backed
deployment, tiktoken only for a config that counts tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

PROBE = r"""
import asyncio, json, sys
from gateway.app import create_app
from gateway.config import parse_config

async def main():
    app = create_app(parse_config(json.loads(sys.argv[1]), "<test>"))
    async with app.router.lifespan_context(app):
        pass

asyncio.run(main())
watched = ["cel", "cel.cli", "prompt_toolkit", "re2", "redis", "litellm", "tiktoken", "aiohttp"]
print(json.dumps({name: name in sys.modules for name in watched}))
"""

DEPLOYMENT = {
    "id": "local",
    "provider": "openai",
    "model": "my-local-model",
    "api_base": "http://127.0.0.1:9/v1",
    "api_key": "sk-x",
}
PLAIN: dict[str, Any] = {"models": [{"name": "local", "deployments": [DEPLOYMENT]}]}
RULES: dict[str, Any] = {
    **PLAIN,
    "policies": {
        "rules": [
            {
                "id": "big",
                "tenant": "root",
                "when": "prompt_tokens > 10",
                "effect": "deny",
                "message": "too big",
            },
            {
                "id": "re",
                "tenant": "root",
                "when": 'model.matches("^gpt")',
                "effect": "flag",
                "flag": "gpt",
            },
        ]
    },
}
#: A mock deployment counts its usage in tokens.
MOCK = {"id": "mock", "provider": "mock", "model": "mock-gpt"}
COUNTING: dict[str, Any] = {"models": [{"name": "local", "deployments": [MOCK]}]}
SHARED_LEDGER: dict[str, Any] = {**PLAIN, "mcp": {"ledger": {"store": "redis://127.0.0.1:9/0"}}}


def imported(config: dict[str, Any]) -> dict[str, bool]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            PLAIN,
            {
                "cel": False,
                "re2": False,
                "redis": False,
                "litellm": False,
                "tiktoken": False,
                "aiohttp": False,
            },
        ),
        (RULES, {"cel": True, "re2": True, "cel.cli": False, "prompt_toolkit": False}),
        (SHARED_LEDGER, {"redis": True, "cel": False}),
        (COUNTING, {"tiktoken": True, "cel": False}),
    ],
    ids=["no-rules-no-redis", "rules", "redis-ledger", "counting"],
)
def test_only_what_the_config_uses_is_imported(
    config: dict[str, Any], expected: dict[str, bool]
) -> None:
    found = imported(config)
    assert {name: found[name] for name in expected} == expected
