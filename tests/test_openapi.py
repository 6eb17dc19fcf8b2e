"""`GET /openapi.json` and the fuzz run against it.

The document is checked three ways: it is a valid OpenAPI 3.1 document
(openapi-spec-validator, and schemathesis loads it), it documents exactly the
routes the app serves, and the gateway serves what `openapi_document` builds.

Then schemathesis generates requests from it against real `seawall serve`
processes (the embedded default config, free loopback ports) and every answer is
checked: no 5xx the request did not ask for, every 4xx/5xx in OpenAI's envelope
with a JSON content type, every response as documented, no traceback in the
server log. The test suite runs the short form (the fuzzing phase, a few cases an
operation, a fixed seed); `make fuzz` runs the full form (every phase, >= 2,000
cases, a fresh seed) through the environment variables below.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from common.headers import CHAOS_HEADER, COLOR_HEADER, INJECTED_HEADER, TIMEOUT_HEADER
from gateway.app import create_app
from gateway.config import load_config, parse_config
from gateway.openapi import OPENAPI_PATH, OPERATIONS, openapi_document
from gateway.stages.validate import CHAT_FIELDS, EMBEDDING_FIELDS
from tests.support import SeawallProcess, running_gateway

DEFAULT = load_config(None)
MOCK_GROUP = {"name": "m", "deployments": [{"id": "d", "provider": "mock", "model": "x"}]}


# -- the document -------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document(DEFAULT)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    loaded = schemathesis.openapi.from_dict(document)
    labels = {op.ok().label for op in loaded.get_all_operations()}
    assert len(labels) == len(OPERATIONS)


def _served_routes() -> set[tuple[str, str]]:
    app = create_app(DEFAULT)
    served = set()
    for route in app.routes:
        assert isinstance(route, Route), f"not a plain route: {route!r}"
        # Starlette's `{model:path}` is OpenAPI's `{model}`.
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                served.add((method.lower(), path))
    return served


def test_every_route_is_documented_and_every_documented_path_is_routed() -> None:
    documented = {
        (method, path)
        for path, item in openapi_document(DEFAULT)["paths"].items()
        for method in item
    }
    served = _served_routes()
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_request_bodies_come_from_the_validation_tables() -> None:
    paths = openapi_document(DEFAULT)["paths"]

    def body(path: str) -> dict[str, Any]:
        content = paths[path]["post"]["requestBody"]["content"]
        schema: dict[str, Any] = content["application/json"]["schema"]
        return schema

    chat, embeddings = body("/v1/chat/completions"), body("/v1/embeddings")
    assert set(CHAT_FIELDS) <= set(chat["properties"])
    assert set(EMBEDDING_FIELDS) <= set(embeddings["properties"])
    assert chat["required"] == ["model", "messages"]
    integer = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    for name in ("n", "max_tokens", "seed", "top_logprobs"):
        assert chat["properties"][name] == {"anyOf": [integer, {"type": "null"}]}
    assert embeddings["properties"]["dimensions"]["anyOf"][0] == integer


def test_limits_and_security_follow_the_config() -> None:
    config = parse_config(
        {
            "server": {"max_request_bytes": 4096, "max_json_depth": 9},
            "models": [MOCK_GROUP],
            "keys": [{"id": "k", "key_sha256": "0" * 64, "roles": ["user"]}],
        },
        "<test>",
    )
    document = openapi_document(config)
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert "at most 4096 bytes" in chat["requestBody"]["description"]
    assert "at most 9 levels" in chat["requestBody"]["description"]
    assert chat["security"] == [{"bearer": []}]
    assert chat["x-seawall-role"] == "user"
    assert document["paths"]["/healthz"]["get"]["security"] == []
    # Without keys (loopback only) a bearer token is optional.
    default_chat = openapi_document(DEFAULT)["paths"]["/v1/chat/completions"]["post"]
    assert default_chat["security"] == [{}, {"bearer": []}]


def test_the_gateway_serves_the_document_without_a_key() -> None:
    config = {
        "models": [MOCK_GROUP],
        "keys": [{"id": "k", "key_sha256": "0" * 64, "roles": ["user"]}],
    }
    with running_gateway(config) as server:
        response = httpx.get(server.url + OPENAPI_PATH)
        refused = httpx.get(server.url + "/v1/models")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == orjson.loads(
        orjson.dumps(openapi_document(parse_config(config, "<test>")))
    )
    assert refused.status_code == 401  # the document is open; the API is not


# -- the fuzz run -----------------------------------------------------------------------------

#: The fuzzing phase's cases per operation (`make fuzz`: 150).
EXAMPLES = int(os.environ.get("SEAWALL_FUZZ_EXAMPLES", "12"))
#: schemathesis phases (`make fuzz`: examples,coverage,fuzzing).
PHASES = os.environ.get("SEAWALL_FUZZ_PHASES", "fuzzing").split(",")


#: A fixed seed keeps the suite's short form the same run every time; `make fuzz`
#: draws a fresh one (`random`) and prints it: set it to replay a run.
def _seed() -> int:
    text = os.environ.get("SEAWALL_FUZZ_SEED", "20261128")
    return random.randrange(2**32) if text == "random" else int(text)


SEED = _seed()
#: The run fails with fewer cases than this in total (`make fuzz`: 2000).
MIN_CASES = int(os.environ.get("SEAWALL_FUZZ_MIN_CASES", "140"))

#: What the default config serves: generated names are swapped for these in about
#: half the cases, or nearly every case would stop at a 404 and never reach routing,
#: the upstream call or the tool.
KNOWN_MODEL = "demo"
KNOWN_TOOL = "seawall_demo_weather"

#: Operations that change the gateway's state (scheduled faults, the config): they
#: run against a second gateway, so a fault they schedule or a config they apply
#: never turns the other operations' answers into expected failures.
MUTATING = frozenset(
    {
        "POST /admin/chaos",
        "DELETE /admin/chaos",
        "DELETE /admin/chaos/{fault_id}",
        "PUT /admin/config",
        "POST /admin/config/rollback",
    }
)


def _fuzz_schema() -> Any:
    config = schemathesis.Config()
    project = config.projects.default
    project.generation.update(max_examples=EXAMPLES)
    project.phases.update(phases=PHASES)
    project.seed = SEED
    return schemathesis.openapi.from_dict(openapi_document(DEFAULT), config=config)


schema = _fuzz_schema()


class FuzzGateway:
    """`seawall serve --port 0` on the embedded default config, its log kept."""

    def __init__(self) -> None:
        self.process = SeawallProcess(["serve", "--port", "0"]).start()
        line = next(line for line in self.process.output if "listening on" in line)
        match = re.search(r"http://[\d.]+:\d+", line)
        assert match is not None, line
        self.url = match.group(0)
        # The socket listens before the app has started: this waits for it.
        assert httpx.get(self.url + "/readyz", timeout=30).status_code == 200
        self._checked = 0

    def new_tracebacks(self) -> list[str]:
        """Log lines since the last call that start a traceback."""
        output = self.process.output
        end = len(output)
        found = [line for line in output[self._checked : end] if "Traceback" in line]
        self._checked = end
        return found

    def log(self) -> str:
        return "".join(self.process.output)


def stop_all(gateways: list[FuzzGateway]) -> None:
    """SIGTERM to each, its drain ended by a second one: the shutdown a served
    gateway goes through, without waiting out `server.drain_s`."""
    for gateway in gateways:
        gateway.process.stop(drain=False)


class Tally:
    """Cases run and statuses seen, per operation."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
        #: 5xx answers the request asked for (an injected fault, its own deadline).
        self.asked_5xx: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def record(self, label: str, status: int, asked: bool) -> None:
        with self.lock:
            self.cases[label] += 1
            self.statuses[label][status] += 1
            if asked:
                self.asked_5xx[label] += 1

    def table(self) -> str:
        rows = [
            "| operation | cases | 2xx | 4xx | 5xx asked for |",
            "|---|---|---|---|---|",
        ]
        for label in sorted(self.cases):
            seen = self.statuses[label]
            ok = sum(n for s, n in seen.items() if s < 400)
            client = sum(n for s, n in seen.items() if 400 <= s < 500)
            rows.append(
                f"| {label} | {self.cases[label]} | {ok} | {client} | {self.asked_5xx[label]} |"
            )
        total = sum(self.cases.values())
        elapsed = time.monotonic() - self.started
        rows.append(f"| total | {total} | | | {sum(self.asked_5xx.values())} |")
        return "\n".join(rows) + f"\n{total} cases in {elapsed:.1f} s, seed {SEED}"


#: One process must run every case of `test_fuzz` (its tally must see every operation
#: fuzzed), and schemathesis' items share one node id, which pytest-xdist cannot keep
#: together: `make test` runs this module in a second, serial pass.
pytestmark = pytest.mark.serial

TALLY = Tally()


@pytest.fixture(scope="module")
def fuzz_gateways() -> Iterator[dict[bool, FuzzGateway]]:
    """Two gateways: [False] for read and inference operations, [True] for the ones
    that change state. On teardown: no traceback in either log, and enough cases."""
    with ThreadPoolExecutor(2) as pool:  # each start takes seconds: side by side
        started = [pool.submit(FuzzGateway) for _ in range(2)]
        gateways = {
            mutating: future.result()
            for mutating, future in zip((False, True), started, strict=True)
        }
    TALLY.started = time.monotonic()
    try:
        yield gateways
    finally:
        stop_all(list(gateways.values()))
    print(f"\nfuzz run (phases {','.join(PHASES)}, {EXAMPLES} fuzzing examples an operation)")
    print(TALLY.table())
    for gateway in gateways.values():
        assert "Traceback" not in gateway.log(), gateway.log()[-5000:]
    documented = {f"{op.method.upper()} {op.path}" for op in OPERATIONS}
    assert set(TALLY.cases) == documented, "every operation was fuzzed"
    assert sum(TALLY.cases.values()) >= MIN_CASES


def _header(response: Any, name: str) -> str | None:
    values = response.headers.get(name)
    if values is None:
        return None
    return values[0] if isinstance(values, list) else str(values)


def aimed(case: Any) -> bool:
    """About half the cases, chosen by their content (so a case hypothesis replays
    while shrinking is aimed the same way; schemathesis' coverage and examples
    phases do not run with an extra `given` strategy)."""
    parts = (case.operation.label, case.path_parameters, case.headers, case.query, case.body)
    return zlib.crc32(repr(parts).encode()) % 2 == 0


def aim_at_configured(case: Any) -> None:
    """Swaps generated names for ones the default config serves, and drops the
    optional headers that would stop the request first (a chaos header that is not
    a fault list, a color that is not configured, a malformed timeout): the other
    cases fuzz those."""
    if isinstance(case.headers, dict):
        for name in list(case.headers):
            if name.lower() in (CHAOS_HEADER, COLOR_HEADER, TIMEOUT_HEADER):
                del case.headers[name]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = KNOWN_MODEL
    if isinstance(case.path_parameters, dict):
        if "name" in case.path_parameters:
            case.path_parameters["name"] = KNOWN_TOOL
        if "model" in case.path_parameters:
            case.path_parameters["model"] = KNOWN_MODEL


def asked_for_5xx(case: Any, response: Any) -> bool:
    """A 5xx the request itself asked for: a fault it injected (the gateway reports
    each one in `x-seawall-chaos-injected`), or its own deadline running out."""
    if response.status_code < 500:
        return False
    headers = {k.lower(): v for k, v in (case.headers or {}).items()}
    if _header(response, INJECTED_HEADER) and CHAOS_HEADER in headers:
        return True
    if TIMEOUT_HEADER in headers and response.status_code == 504:
        return orjson.loads(response.content)["error"]["code"] == "upstream_deadline"
    return False


def check_error_envelope(response: Any) -> None:
    """A 4xx/5xx is OpenAI's envelope with a JSON content type, so an SDK raises its
    typed error instead of failing to read the answer."""
    content_type = _header(response, "content-type") or ""
    assert content_type.split(";")[0] == "application/json", f"content-type {content_type!r}"
    body = orjson.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str), error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error


def check_jsonrpc_error(response: Any) -> None:
    """`/mcp` answers what MCP clients read once the gateway let the request in: a
    JSON-RPC error (the transport's refusals included), never a traceback; a refusal
    before it (no key, no role) is the envelope."""
    body = orjson.loads(response.content)
    if isinstance(body, dict) and "jsonrpc" not in body:
        check_error_envelope(response)
        return
    assert isinstance(body, dict) and body["jsonrpc"] == "2.0", body
    error = body["error"]
    assert isinstance(error["code"], int) and isinstance(error["message"], str), error


DOCUMENT_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
def test_fuzz(case: Any, fuzz_gateways: dict[bool, FuzzGateway]) -> None:
    gateway = fuzz_gateways[case.operation.label in MUTATING]
    if aimed(case):
        aim_at_configured(case)
    response = case.call(base_url=gateway.url, timeout=60)
    asked = asked_for_5xx(case, response)
    TALLY.record(case.operation.label, response.status_code, asked)
    detail = f"{case.operation.label} -> {response.status_code}: {response.content[:500]!r}"
    assert response.status_code < 500 or asked, detail
    if response.status_code >= 400:
        if case.operation.path == "/mcp":
            check_jsonrpc_error(response)
        else:
            check_error_envelope(response)
    if not asked:
        case.validate_response(response, checks=DOCUMENT_CHECKS)
    assert gateway.new_tracebacks() == [], gateway.log()[-5000:]
