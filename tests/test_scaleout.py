"""The scale-out proof: four `seawall serve` processes on the production config (the
Helm chart's production rendering, made local: tests/scaleout_support.py says which
fields change and why), sharing one real Redis (limits, stored responses) and one real
etcd (config), behind a round-robin TCP balancer (tests/balancer.py), like replicas
behind a Kubernetes Service.

What must hold across replicas:
- a requests-per-minute limit of N admits exactly N, whichever replica serves;
- a config change written to etcd is served by every replica within the documented
  bound (docs/reloading.md: `reload.resync_s` plus a read; the header
  `x-seawall-config-version` of each replica says what it serves);
- a Responses conversation started on one replica continues on another (the Redis
  response store), through the openai SDK;
- a replica SIGKILLed under load loses only the requests it had in flight, and the
  openai SDK's retries carry every call to success.

Short form here (~12 s); `make scaleout` runs the same proof longer and with more
load (SEAWALL_SCALEOUT_FULL=1), then bench/scaleout.py's throughput table.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import openai
import yaml

from gateway.versions import documents_id
from tests.scaleout_support import (
    DOCUMENT,
    LIMITED_RPM,
    LIMITED_TOKEN,
    Cluster,
    MockUpstream,
    chart_ready,
    cluster,
    put_documents,
)
from tests.services import etcd_server, redis_server

FULL = os.environ.get("SEAWALL_SCALEOUT_FULL") == "1"
REPLICAS = 4
#: The mock upstream holds each answer this long, so requests are in flight when a
#: replica is killed (and the kill has something to lose).
UPSTREAM_LATENCY_MS = 30
#: Requests sent with the limited key: twice its limit (five times in full), 16 at a time.
LIMIT_REQUESTS, LIMIT_CONCURRENCY = (5 if FULL else 2) * LIMITED_RPM, 16
#: The kill test: SDK clients calling in a loop, and how long before and after the kill.
KILL_CLIENTS = 16 if FULL else 8
BEFORE_KILL_S, AFTER_KILL_S = (5.0, 10.0) if FULL else (1.0, 2.0)
#: The SDK's retries (its default is 2): enough to outlast a backend marked down.
SDK_RETRIES = 4


def test_four_replicas_behave_as_one_gateway(tmp_path: Path) -> None:
    """One cluster, the four proofs in turn (one test, so a parallel run starts one
    cluster, not one per worker); the kill comes last."""
    upstream = MockUpstream(latency_ms=UPSTREAM_LATENCY_MS).start()
    try:
        with (
            redis_server() as redis,
            etcd_server() as etcd,
            cluster(etcd, redis.url, upstream.url, tmp_path, REPLICAS) as scaleout,
        ):
            # The config proven is the chart's production rendering once the chart is here.
            assert scaleout.source.origin.startswith("helm template") == chart_ready()
            limits_are_exact(scaleout)
            a_config_change_reaches_every_replica(scaleout)
            a_conversation_continues_elsewhere(scaleout)
            a_killed_replica_loses_only_its_in_flight(scaleout)
    finally:
        upstream.stop()


def one_shot(token: str) -> httpx.AsyncClient:
    """A client that opens a connection per request: the balancer turns each to the
    next replica (it balances connections, as a Kubernetes Service does)."""
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    headers = {"authorization": f"Bearer {token}"}
    return httpx.AsyncClient(transport=transport, headers=headers, timeout=30)


def chat_body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def first_group(scaleout: Cluster) -> str:
    return str(scaleout.local.config["models"][0]["name"])


def limits_are_exact(scaleout: Cluster) -> None:
    """2N requests (5N in full) with a key limited to N per minute, 16 at a time, spread over the 4
    replicas by the balancer: exactly N are answered 200 and N are refused with 429
    `rate_limit_exceeded`; every replica took its share of connections, and every
    replica's `/admin/limits` reads the same N used (one count, in Redis)."""
    model = first_group(scaleout)
    stats = scaleout.balancer.balancer.stats
    before = [s.connections for s in stats]

    async def run() -> list[httpx.Response]:
        gate = asyncio.Semaphore(LIMIT_CONCURRENCY)
        async with one_shot(LIMITED_TOKEN) as client:

            async def one() -> httpx.Response:
                async with gate:
                    return await client.post(
                        scaleout.url + "/v1/chat/completions", json=chat_body(model)
                    )

            return await asyncio.gather(*(one() for _ in range(LIMIT_REQUESTS)))

    replies = asyncio.run(run())
    statuses = [reply.status_code for reply in replies]
    assert statuses.count(200) == LIMITED_RPM, sorted(statuses)
    assert statuses.count(429) == LIMIT_REQUESTS - LIMITED_RPM, sorted(statuses)
    refused = next(reply for reply in replies if reply.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-seawall-limit"].startswith("requests_per_minute")
    share = [s.connections - b for s, b in zip(stats, before, strict=True)]
    assert sum(share) == LIMIT_REQUESTS and min(share) >= LIMIT_REQUESTS // REPLICAS - 1, share
    admin = {"authorization": f"Bearer {scaleout.local.token('admin')}"}
    for replica in scaleout.replicas:
        levels = httpx.get(replica.url + "/admin/limits", headers=admin, timeout=10).json()
        assert _used_rpm(levels) == LIMITED_RPM, (replica.url, levels)


def _used_rpm(report: dict[str, object]) -> int:
    """The limited key's `requests_per_minute` used, from `GET /admin/limits`."""
    for level in report["levels"]:  # type: ignore[attr-defined]
        if level["level"] == "key:scaleout-limited":
            for limit in level["limits"]:
                if limit["limit"] == "requests_per_minute":
                    return int(limit["used"])
    raise AssertionError(f"no requests_per_minute for the limited key in {report}")


def a_config_change_reaches_every_replica(scaleout: Cluster) -> None:
    """Every replica serves the etcd document's version; a new document (a model group
    added) written to etcd is served by each of the 4 within `resync_s` + 2 s
    (docs/reloading.md; with the watch working it takes milliseconds), as each
    replica's `x-seawall-config-version` header shows; then the new group answers
    through the balancer."""
    user = {"authorization": f"Bearer {scaleout.local.token('user')}"}
    current = documents_id({DOCUMENT: scaleout.local.document})
    served = {r.url: _version(r.url, user) for r in scaleout.replicas}
    assert set(served.values()) == {current}, served
    config = yaml.safe_load(scaleout.local.document)
    group = config["models"][0]
    deployments = [{**d, "id": d["id"] + "-canary"} for d in group["deployments"]]
    config["models"].append({**group, "name": "scaleout-canary", "deployments": deployments})
    text = yaml.safe_dump(config, sort_keys=False)
    newest = documents_id({DOCUMENT: text})
    bound_s = float(config.get("reload", {}).get("resync_s", 10)) + 2.0
    written = time.monotonic()
    put_documents(scaleout.etcd, {DOCUMENT: text})
    took: dict[str, float] = {}
    while len(took) < len(scaleout.replicas):
        for replica in scaleout.replicas:
            if replica.url not in took and _version(replica.url, user) == newest:
                took[replica.url] = time.monotonic() - written
        elapsed = time.monotonic() - written
        assert elapsed < bound_s, (elapsed, took, newest, _refused(scaleout))
        time.sleep(0.01)
    print(f"config version {newest} served by all {len(took)} replicas in", took)
    scaleout.local.config = config

    async def through_balancer() -> list[int]:
        async with one_shot(scaleout.local.token("user")) as client:
            replies = [
                await client.post(
                    scaleout.url + "/v1/chat/completions", json=chat_body("scaleout-canary")
                )
                for _ in range(REPLICAS)
            ]
        assert {r.headers["x-seawall-config-version"] for r in replies} == {newest}
        return [r.status_code for r in replies]

    assert asyncio.run(through_balancer()) == [200] * REPLICAS


def _refused(scaleout: Cluster) -> object:
    """What the first replica refused since its version, to say why it did not change."""
    admin = {"authorization": f"Bearer {scaleout.local.token('admin')}"}
    state = httpx.get(scaleout.replicas[0].url + "/admin/config", headers=admin, timeout=10)
    return state.json().get("refused")


def _version(url: str, headers: dict[str, str]) -> str:
    reply = httpx.get(url + "/v1/models", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.headers["x-seawall-config-version"]


def a_conversation_continues_elsewhere(scaleout: Cluster) -> None:
    """The official openai SDK through the balancer: a stored response made on one
    replica is continued (`previous_response_id`) on the next one, is readable from
    every replica, and the continuation's chain holds the first turn's input."""
    balancer = scaleout.balancer.balancer
    token = scaleout.local.token("user")
    client = openai.OpenAI(
        base_url=scaleout.url + "/v1",
        api_key=token,
        max_retries=0,  # a retry would land on yet another replica and hide nothing
        http_client=httpx.Client(
            transport=httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        ),
    )
    model = first_group(scaleout)
    with client:
        start = len(balancer.log)
        first = client.responses.create(model=model, input="My name is Ada.", store=True)
        middle = len(balancer.log)
        second = client.responses.create(
            model=model, input="What is my name?", previous_response_id=first.id, store=True
        )
        landed = balancer.log[start:]
    assert len(landed) == 2 and middle - start == 1, landed
    assert None not in landed and landed[0] != landed[1], landed
    assert second.previous_response_id == first.id
    assert second.output_text
    user = {"authorization": f"Bearer {token}"}
    for replica in scaleout.replicas:
        stored = httpx.get(f"{replica.url}/v1/responses/{first.id}", headers=user, timeout=10)
        assert stored.status_code == 200 and stored.json()["id"] == first.id, stored.text
    items = httpx.get(
        f"{scaleout.replicas[-1].url}/v1/responses/{second.id}/input_items", headers=user
    ).json()
    texts = [part["text"] for item in items["data"] for part in item.get("content", [])]
    assert "What is my name?" in texts, items


class CountingTransport(httpx.AsyncHTTPTransport):
    """Every attempt the SDK makes, and each one that failed at the HTTP level (a broken
    connection, or a 5xx), before the SDK's retries hide it."""

    def __init__(self) -> None:
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0))
        self.attempts = 0
        self.failures: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            self.failures.append(type(exc).__name__)
            raise
        if response.status_code >= 500:
            self.failures.append(str(response.status_code))
        return response


def a_killed_replica_loses_only_its_in_flight(scaleout: Cluster) -> None:
    """SDK clients call in a loop through the balancer; once the victim has requests in
    flight it is SIGKILLed. The raw failures (seen below the SDK) are no more than the
    connections the victim held when it died (those in flight, and any it accepted
    before the kernel closed its socket); every SDK call succeeds (its retries go to
    live replicas); then a replacement replica joins and serves."""
    balancer = scaleout.balancer.balancer
    victim_index = 1
    victim = scaleout.replicas[victim_index]
    transport = CountingTransport()
    client = openai.AsyncOpenAI(
        base_url=scaleout.url + "/v1",
        api_key=scaleout.local.token("user"),
        max_retries=SDK_RETRIES,
        http_client=httpx.AsyncClient(transport=transport, timeout=30),
    )
    model = first_group(scaleout)
    stats = balancer.stats[victim_index]
    lost_bound = 0
    calls: list[str] = []
    errors: list[BaseException] = []

    async def caller(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reply = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=16
                )
                calls.append(reply.id)
            except openai.OpenAIError as exc:
                errors.append(exc)

    async def run() -> None:
        nonlocal lost_bound
        stop = asyncio.Event()
        callers = [asyncio.create_task(caller(stop)) for _ in range(KILL_CLIENTS)]
        try:
            await asyncio.sleep(BEFORE_KILL_S)  # load running before the kill
            deadline = time.monotonic() + 10
            while stats.active == 0:  # the victim has something in flight
                assert time.monotonic() < deadline, "the victim never had a request"
                await asyncio.sleep(0.001)
            # Accepted first, then active: a connection made between the two reads
            # is counted twice (a looser bound), never missed.
            accepted = stats.connections
            active = stats.active
            await asyncio.to_thread(victim.kill)
            await asyncio.sleep(AFTER_KILL_S)
            # Every connection the victim accepted from the snapshot on, read once no
            # more can be (it is dead): those it took in the instant before dying too.
            lost_bound = active + stats.connections - accepted
        finally:
            stop.set()
            await asyncio.gather(*callers)
            await client.close()

    asyncio.run(run())
    print(
        f"{len(calls)} SDK calls, {transport.attempts} attempts, raw failures "
        f"{transport.failures}, lost bound {lost_bound}, victim refused {stats.refused}"
    )
    assert not errors, errors[:3]
    assert len(calls) >= 4 * KILL_CLIENTS
    assert len(transport.failures) <= lost_bound <= KILL_CLIENTS, (transport.failures, lost_bound)
    assert transport.attempts == len(calls) + len(transport.failures)
    assert all(not failure.isdigit() for failure in transport.failures), transport.failures
    # A new pod takes the dead one's place behind the Service, and serves.
    replacement = scaleout.replace(victim_index)
    user = {"authorization": f"Bearer {scaleout.local.token('user')}"}
    reply = httpx.post(
        replacement.url + "/v1/chat/completions", json=chat_body(model), headers=user, timeout=30
    )
    assert reply.status_code == 200, reply.text
