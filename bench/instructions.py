"""Instructions per request, counted by valgrind: a benchmark that noise cannot move.

wrk's requests per second on a shared 2-core VM vary by +-7% from run to run, which
hides a 5% regression. Valgrind's callgrind counts the instructions the gateway
process executes instead, and those repeat to within a fraction of a percent.

The gateway app runs in-process (its ASGI interface called directly: no uvicorn,
no client in the process) against `bench/upstream.py` in another process, so only
the gateway's own work is counted: parse, stages, routing, the upstream call, the
response. Two runs of different lengths are counted and subtracted, so start-up
and imports cancel out:

    instructions/request = (count(N2) - count(N1)) / (N2 - N1)

    .venv/bin/python bench/instructions.py              # this checkout
    .venv/bin/python bench/instructions.py --stream     # 200-event streams
    .venv/bin/python bench/instructions.py --prompt-tokens 1000 --max-prompt-tokens 1100
    .venv/bin/python bench/instructions.py --governed   # tenants, 20 rules, memory limits
    .venv/bin/python bench/instructions.py --policies-only   # tenants, 20 rules, no limits
    .venv/bin/python bench/instructions.py --governed --audit   # and the audit log on
    .venv/bin/python bench/instructions.py --canary     # governed, a config canary running
    .venv/bin/python bench/instructions.py --responses  # /v1/responses, `store: false`
    .venv/bin/python bench/instructions.py --governed --history 40   # an agent's 41st turn
    .venv/bin/python bench/instructions.py --governed --tools 20     # an agent's 20 tools

`--history N` puts N earlier messages (a conversation so far, ~100 tokens each,
user and assistant in turn) before the request's user message: an agent sends its
conversation again on every turn. Every request sends the same history, as the next
turn of one conversation would (a real turn also sends the two messages the turn
before it added, which it counts anew).

`--tools N` offers N function tools (~100 tokens each, each different) in every
request, the same ones each time, as an agent sends its tools on every turn.

`--governed` serves bench/policy_limits.py's config: a 3-level tenant tree with the key
on its leaf, the 20 rules of bench/cel_libraries.py across the chain (some reading
per-request attributes) and memory limits on every level, far above the load.

To compare two revisions, run it in a worktree of each (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import policy_limits
import yaml
from checks import Endpoint, prompt_of, wait_ready
from processes import free_port, spawn
from upstream import MODEL, STREAM_EVENTS

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHORT, LONG = 300, 1500
#: The admin key `--canary` adds, to start the rollout.
ADMIN_TOKEN = "sk-bench-admin"

#: What every driver shares: one request through the app's ASGI interface, answered
#: with its `http.response.start` message and (with `read`) its body.
ASGI_CALL = r"""
async def call(app, scope, body, read=False):
    delivered = False
    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
    start, chunks = {}, []
    async def send(message):
        if message["type"] == "http.response.start":
            start.update(message)
        elif read:
            chunks.append(message.get("body", b""))
    await app(dict(scope, state={}), receive, send)
    return start, b"".join(chunks)
"""

DRIVER = (
    r"""
import asyncio, os, sys
import uvloop
from gateway.app import create_app
from gateway.config import load_config

BODY = os.environ["BENCH_BODY"].encode()
PATH = os.environ.get("BENCH_PATH", "/v1/chat/completions")
SCOPE = {
    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
    "method": "POST", "scheme": "http", "path": PATH,
    "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
    "headers": [(b"host", b"gw"), (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode())]
               + ([(b"authorization", os.environ["BENCH_AUTH"].encode())]
                  if os.environ.get("BENCH_AUTH") else []),
    "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
}
"""
    + ASGI_CALL
    + r"""
async def one(app):
    start, _ = await call(app, SCOPE, BODY)
    assert start["status"] == 200, start

async def start_canary(app):
    # PUT /admin/config?rollout=canary: the candidate serves half the requests.
    body = open(os.environ["BENCH_CANARY"], "rb").read()
    scope = dict(SCOPE, method="PUT", path="/admin/config", raw_path=b"/admin/config",
                 query_string=b"rollout=canary&share=0.5",
                 headers=[(b"host", b"gw"), (b"content-length", str(len(body)).encode()),
                          (b"authorization", os.environ["BENCH_ADMIN"].encode())])
    start, answer = await call(app, scope, body, read=True)
    assert start["status"] == 200, answer

async def main(count):
    app = create_app(load_config(os.environ["BENCH_CONFIG"]))
    async with app.router.lifespan_context(app):
        if os.environ.get("BENCH_CANARY"):
            await start_canary(app)
        for _ in range(count):
            await one(app)

uvloop.run(main(int(sys.argv[1])))
"""
)


def count_instructions(requests: int, env: dict[str, str], driver: str = DRIVER) -> int:
    """Instructions valgrind counts for a whole driver run of `requests` requests."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", driver, str(requests)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"driver failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(match.group(1))


def write_config(
    folder: Path,
    upstream_port: int,
    max_prompt_tokens: int | None,
    governed: bool = False,
    limits: str | None = "memory",
    audit: bool = False,
    canary: bool = False,
) -> Path:
    config = folder / "seawall.yaml"
    if governed:
        document = policy_limits.config(upstream_port, policies=True, limits=limits)
        if audit:
            from audit.keys import generate_keypair

            generate_keypair(folder / "audit.key", folder / "audit.pub")
            # Content off, fsync per batch, as by default. The batch window and the
            # checkpoint interval are time: under valgrind a request takes ~50x as
            # long, so the defaults would make batches of a few records and a signed
            # checkpoint every few dozen requests. Stretched 50x, a batch holds what
            # it does at ~3,000 requests/s (~150) and a checkpoint covers thousands.
            document["audit"] = {
                "enabled": True,
                "directory": str(folder / "audit-log"),
                "signing_key_file": str(folder / "audit.key"),
                "batch_window_ms": 2_500,
                "checkpoint_interval_ms": 50_000,
            }
        # Under valgrind everything runs ~50x slower: the default 1 ms evaluation budget
        # would cut rules off (and deny). The budget is a wall-clock bound, not work.
        document["policies"]["evaluation_budget_ms"] = 100
        if canary:
            # A rollout that runs throughout: its judge is timed alone (its looks are
            # wall-clock, ~50x as many per request under valgrind), not counted here.
            document["keys"].append({"id": "admin", "key": ADMIN_TOKEN, "roles": ["admin"]})
            document["reload"] = {
                "rollout": {
                    "bake_s": 86_400,
                    "max_s": 86_400,
                    "min_samples": 1_000_000,
                    "check_interval_s": 60,
                }
            }
            candidate = yaml.safe_load(yaml.safe_dump(document))
            # A new version that changes no per-request work (the only deployment's
            # weight): what is counted is the rollout itself, not a bigger rule set.
            candidate["models"][0]["deployments"][0]["weight"] = 2
            (folder / "candidate.yaml").write_text(yaml.safe_dump(candidate))
        config.write_text(yaml.safe_dump(document))
        return config
    limit = "" if max_prompt_tokens is None else f"    max_prompt_tokens: {max_prompt_tokens}\n"
    config.write_text(
        "models:\n  - name: bench\n" + limit + "    deployments:\n"
        "      - {id: upstream, provider: openai, model: gpt-4o-mini, "
        f'api_base: "http://127.0.0.1:{upstream_port}/v1", api_key: sk-bench}}\n'
    )
    return config


def history(count: int) -> list[dict[str, str]]:
    """`count` earlier messages of a conversation, ~100 tokens each, each different."""
    words = "the agent called a tool read its result and wrote the next step of the plan"
    return [
        {
            "role": "assistant" if n % 2 else "user",
            "content": f"Turn {n}: " + " ".join([words] * 6),
        }
        for n in range(count)
    ]


def tools(count: int) -> list[dict[str, Any]]:
    """`count` function tools, ~100 tokens each, each different."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{n}",
                "description": f"Tool {n}: looks the record up, checks it against the policy "
                "and returns what it found, or an error naming the field that was wrong.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "What to look for"},
                        "limit": {"type": "integer", "description": "How many at most"},
                    },
                    "required": ["query"],
                },
            },
        }
        for n in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true", help="200-event streams")
    parser.add_argument("--prompt-tokens", type=int, default=0, help="user message of ~N tokens")
    parser.add_argument("--max-prompt-tokens", type=int, help="the group's prompt limit")
    parser.add_argument(
        "--governed", action="store_true", help="tenants, 20 rules and memory limits"
    )
    parser.add_argument(
        "--policies-only", action="store_true", help="--governed without the limits"
    )
    parser.add_argument("--audit", action="store_true", help="--governed with the audit log on")
    parser.add_argument(
        "--canary", action="store_true", help="--governed with a config canary running"
    )
    parser.add_argument(
        "--history", type=int, default=0, help="N earlier messages before the user's"
    )
    parser.add_argument("--tools", type=int, default=0, help="N function tools in every request")
    parser.add_argument(
        "--responses",
        action="store_true",
        help="POST /v1/responses (non-stream, store false), translated to chat",
    )
    args = parser.parse_args()
    if args.responses and args.stream:
        parser.error("--responses counts non-stream responses only")
    if args.responses and (args.history or args.tools):
        parser.error("--history and --tools are for chat completions")
    args.governed = args.governed or args.policies_only or args.audit or args.canary
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "valgrind"], check=True)
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port)]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with spawn("upstream", argv, folder, folder) as upstream:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            endpoint = Endpoint(url, "sk-bench", MODEL, prompt_of(args.prompt_tokens))
            wait_ready(endpoint, args.stream, upstream, timeout_s=30)
            group = MODEL if args.governed else "bench"
            body = Endpoint(url, "sk-bench", group, endpoint.prompt).encoded_body(args.stream)
            if args.responses:
                request = {"model": group, "input": endpoint.prompt, "store": False}
                body = json.dumps(request).encode()
            if args.history or args.tools:
                chat = json.loads(body)
                chat["messages"] = history(args.history) + chat["messages"]
                if args.tools:
                    chat["tools"] = tools(args.tools)
                body = json.dumps(chat).encode()
            limits = None if args.policies_only else "memory"
            config = write_config(
                folder, port, args.max_prompt_tokens, args.governed, limits, args.audit,
                args.canary,
            )  # fmt: skip
            env = {
                **os.environ,
                "BENCH_CONFIG": str(config),
                "BENCH_BODY": body.decode(),
                "BENCH_AUTH": f"Bearer {policy_limits.TOKEN}" if args.governed else "",
                "PYTHONPATH": str(REPO),
                "BENCH_PATH": "/v1/responses" if args.responses else "/v1/chat/completions",
            }
            if args.canary:
                env["BENCH_CANARY"] = str(folder / "candidate.yaml")
                env["BENCH_ADMIN"] = f"Bearer {ADMIN_TOKEN}"
            short = count_instructions(SHORT, env)
            long = count_instructions(LONG, env)
    per_request = (long - short) / (LONG - SHORT)
    unit = f"stream of {STREAM_EVENTS} events" if args.stream else "request"
    unit += " to /v1/responses (store false)" if args.responses else ""
    prompt = f"a ~{args.prompt_tokens}-token prompt" if args.prompt_tokens else "a short prompt"
    if args.history:
        prompt += f" after {args.history} earlier messages of ~100 tokens"
    if args.tools:
        prompt += f" with {args.tools} function tools"
    limit = f", max_prompt_tokens {args.max_prompt_tokens}" if args.max_prompt_tokens else ""
    if args.governed:
        limit += ", tenants and 20 rules" + ("" if args.policies_only else ", memory limits")
        limit += ", audit log on" if args.audit else ""
        limit += ", a config canary on half the requests" if args.canary else ""
    print(
        f"{per_request:,.0f} instructions per {unit}, {prompt}{limit} "
        f"(valgrind; {SHORT} vs {LONG} requests)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
