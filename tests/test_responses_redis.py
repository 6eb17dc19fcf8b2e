"""The Redis response store behind the gateway (`responses.store: redis://...`), on a real
`redis-server`: a conversation continues on any gateway sharing the Redis, and an
outage answers at once, in OpenAI's envelope, without ever failing a new response.

The store's own semantics (the same quotas as the memory store, TTLs on every key)
are tests/test_responses_quotas.py's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.isolation import call, two_tenants
from tests.services import RedisServer
from tests.support import running_gateway

BLUE = "blue-user"


def create(url: str, input: str, **body: Any) -> Any:
    return call(
        url, BLUE, "POST", "/v1/responses", json={"model": "blue-chat", "input": input, **body}
    )


def test_a_conversation_continues_on_another_gateway(redis: RedisServer) -> None:
    config = two_tenants(responses={"store": redis.url})
    with running_gateway(config) as one, running_gateway(config) as two:
        first = create(one.url, "My name is Ada.").json()["id"]
        second = create(two.url, "What is my name?", previous_response_id=first)
        assert second.status_code == 200, second.text
        third = create(one.url, "And again?", previous_response_id=second.json()["id"])
        assert third.status_code == 200, third.text
        items = call(two.url, BLUE, "GET", f"/v1/responses/{first}/input_items").json()
        assert items["data"][0]["content"][0]["text"] == "My name is Ada."
        # Another tenant's key sees nothing on either gateway.
        assert call(two.url, "red-all", "GET", f"/v1/responses/{first}").status_code == 404
        assert call(two.url, BLUE, "DELETE", f"/v1/responses/{first}").status_code == 200
        assert call(one.url, BLUE, "GET", f"/v1/responses/{first}").status_code == 404
        # The conversation lost a link: continuing it says which.
        broken = create(one.url, "Still?", previous_response_id=third.json()["id"])
        assert broken.status_code == 400 and first in broken.json()["error"]["message"]


def test_an_outage_answers_503_at_once_and_new_responses_are_still_served(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = two_tenants(responses={"store": redis.url, "store_timeout_ms": 300})
    with running_gateway(config) as gateway:
        url = gateway.url
        stored = create(url, "remember this").json()["id"]
        redis.kill()
        with caplog.at_level(logging.INFO):
            for reply in (
                call(url, BLUE, "GET", f"/v1/responses/{stored}"),
                call(url, BLUE, "GET", f"/v1/responses/{stored}/input_items"),
                call(url, BLUE, "DELETE", f"/v1/responses/{stored}"),
                create(url, "and?", previous_response_id=stored),
            ):
                assert reply.status_code == 503
                assert reply.json()["error"] == {
                    "message": "The response store is unavailable; retry the request.",
                    "type": "server_error",
                    "param": None,
                    "code": "response_store_unavailable",
                }
            started = time.monotonic()
            served = create(url, "a new question")
            assert served.status_code == 200  # served, not stored
            assert time.monotonic() - started < 5
            outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(outage) == 1  # once per outage, not once per request
            redis.start()
            assert create(url, "back").status_code == 200
            assert any("answers again" in r.getMessage() for r in caplog.records)
        metrics = call(url, "root-admin", "GET", "/metrics").text
        assert 'seawall_response_store_puts_total{result="failed"} 1.0' in metrics
        assert "seawall_response_store_errors_total 5.0" in metrics
