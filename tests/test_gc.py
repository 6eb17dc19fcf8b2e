"""A request leaves no cyclic garbage, so the gateway can collect rarely.

The server raises the cyclic collector's young-generation threshold from Python's
700 to `GC_YOUNG_THRESHOLD` (gateway/app.py): at 700, young collections rescanned the
objects of the requests in flight every ~30 requests at c=32, ~3% of the CPU
(docs/performance.md). That is sound only while requests free everything they make by
reference counting: garbage in cycles would wait for a collection, up to that many
objects. This test holds the premise: with the collector off, the server in this
process serves every kind of request (chat, streamed chat, tools, the Responses API
stored and not, streamed Responses, embeddings, a governed tenant with policies and
limits, refusals), then one collection finds (almost) nothing; a failed upstream call
leaves a cycle of bounded size (the connection that failed, and its parser).

The client runs in a child process, so the garbage counted is the server's.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from typing import Any

from gateway.app import GC_YOUNG_THRESHOLD
from tests.support import ServerThread, create_app, parse_config

KEY = "sk-gc-test-key"

CONFIG: dict[str, Any] = {
    "models": [
        {"name": "chat", "deployments": [{"id": "m1", "provider": "mock", "model": "mock-gpt"}]},
        {
            "name": "down",
            "deployments": [
                {
                    "id": "d1",
                    "provider": "openai",
                    "model": "m",
                    "api_key": "sk-x",
                    "api_base": "http://127.0.0.1:9/v1",
                    "retry": {"attempts": 1},
                }
            ],
        },
        {
            "name": "embed",
            "deployments": [{"id": "e1", "provider": "mock", "model": "mock-embed"}],
        },
    ],
    "tenants": [
        {"id": "org", "limits": {"requests_per_minute": 100_000, "max_concurrent": 100}},
        {"id": "team", "parent": "org", "limits": {"tokens_per_minute": 10_000_000}},
    ],
    "keys": [{"id": "agent", "key": KEY, "tenant": "team", "roles": ["user"]}],
    "policies": {
        "rules": [
            {
                "id": "big",
                "tenant": "org",
                "when": "prompt_tokens > 100000",
                "effect": "deny",
                "message": "too big",
            },
            {"id": "tag", "tenant": "team", "when": "stream", "effect": "flag", "flag": "s"},
        ]
    },
}

#: Every kind of request, each `ROUNDS` times, from a child process.
CLIENT = r"""
import sys, httpx
url, key, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
auth = {"authorization": "Bearer " + key}
tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
chat = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
    for _ in range(rounds):
        assert c.post("/v1/chat/completions", json=chat).status_code == 200
        assert c.post("/v1/chat/completions", json={**chat, "tools": [tool]}).status_code == 200
        with c.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as r:
            assert r.status_code == 200 and r.read().endswith(b"[DONE]\n\n")
        assert c.post("/v1/responses", json={"model": "chat", "input": "hi"}).status_code == 200
        body = {"model": "chat", "input": "hi", "store": False}
        assert c.post("/v1/responses", json=body).status_code == 200
        with c.stream("POST", "/v1/responses", json={**body, "stream": True}) as r:
            assert r.status_code == 200 and b"response.completed" in r.read()
        assert c.post("/v1/embeddings", json={"model": "embed", "input": "x"}).status_code == 200
        assert c.get("/v1/models").status_code == 200
        assert c.post("/v1/chat/completions", json={"model": "nope"}).status_code in (400, 404)
        assert c.post("/v1/chat/completions", content=b"{").status_code == 400
        no_key = {"authorization": "Bearer sk-wrong"}
        assert c.post("/v1/chat/completions", json=chat, headers=no_key).status_code == 401
"""

ROUNDS = 20

#: Chat requests to a group whose only upstream refuses connections.
FAILING = r"""
import sys, httpx
url, key, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
down = {"model": "down", "messages": [{"role": "user", "content": "hi"}]}
with httpx.Client(base_url=url, headers={"authorization": "Bearer " + key}, timeout=30) as c:
    for _ in range(rounds):
        assert c.post("/v1/chat/completions", json=down).status_code in (502, 503)
"""


def _cyclic_garbage(client: str, rounds: int) -> tuple[int, list[str]]:
    """Objects found only by a collection after `client` ran `rounds` rounds against
    a warm server in this process, and their kinds."""
    app = create_app(parse_config(CONFIG, "<test>"))
    with ServerThread(app) as server:
        run = [sys.executable, "-c", client, server.url, KEY]
        subprocess.run([*run, "2"], check=True, timeout=120)  # warm: imports, caches
        gc.collect()
        gc.disable()
        try:
            subprocess.run([*run, str(rounds)], check=True, timeout=120)
            gc.set_debug(gc.DEBUG_SAVEALL)
            found = gc.collect()
            kinds = sorted({type(o).__qualname__ for o in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    return found, kinds


def test_requests_leave_no_cyclic_garbage() -> None:
    found, kinds = _cyclic_garbage(CLIENT, ROUNDS)
    # Less than one object in a cycle per ten requests: a request that left a cycle
    # behind (a future and its callback, a frame and its exception) makes several.
    assert found < ROUNDS * 11 / 10, (found, kinds)


def test_a_failed_upstream_call_leaves_a_bounded_cycle() -> None:
    """A connection that could not connect is dropped with its response parser, which
    calls back into it: a cycle of 7 objects per failed call, freed by the next young
    collection. Nothing more: the router and the breaker let go of the exceptions
    they handled (a frame holding its own exception, whose traceback holds the frame,
    left ~70 objects per failed request before)."""
    found, kinds = _cyclic_garbage(FAILING, ROUNDS)
    assert found <= ROUNDS * 7, (found, kinds)


def test_the_server_collects_young_objects_rarely() -> None:
    app = create_app(parse_config(CONFIG, "<test>"))
    before = gc.get_threshold()
    try:
        with ServerThread(app):
            assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        gc.set_threshold(*before)
