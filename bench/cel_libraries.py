"""Which CEL library seawall's policies use, by measurement, and what policies cost.

    .venv/bin/python bench/cel_libraries.py            # ~1-2 minutes
    .venv/bin/python bench/cel_libraries.py --quick    # fewer iterations
    .venv/bin/python bench/cel_libraries.py --json results.json

Needs `common-expression-language` (Rust bindings, import name `cel`) and
`cel-python` (pure Python, import name `celpy`): `.venv/bin/pip install
common-expression-language cel-python`.

Prints Markdown:

1. per library, over 20 realistic rules: compile time, and evaluation time
   (median and p99) with the attributes bound per call and with a binding reused;
   a plain Python lambda per rule as the floor. Each library runs in its own child
   process (cel-python's parser is shared per process, so its two runners cannot
   be measured in one);
2. what each library offers, found by trying it: syntax errors with positions,
   undeclared names, type errors, cost limits, static references;
3. seawall's policies on the chosen library: `compile_policies` for the 20 rules on
   a 3-level tenant chain; per-rule evaluation time (median/p99, from the policies'
   own statistics) and per-decision time, cold (cache off) and with the cache on
   agent-like traffic (prompt sizes that grow every turn);
4. the cost model: estimated steps beside measured time, attributes at their limits.

Times are wall-clock on whatever else the machine is doing; the load average is
printed so a noisy run can be recognised. p99s on a shared 2-core machine include
preemption (a 4 ms scheduler tick shows up as a ~4 ms p99 on work that normally
takes 60 µs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHAIN = ("root", "acme", "acme-search")
DEPLOYMENTS = ("eu-1", "eu-2", "us-1", "fast-1", "preview-1")
HEADERS = ("x-data-region", "x-project", "x-team")

_TEAM = re.compile(r"^[a-z]+-[0-9]+$")


def _rule(
    rule_id: str,
    tenant: str,
    effect: str,
    when: str,
    py: Callable[[dict[str, Any]], bool],
    **extra: Any,
) -> dict[str, Any]:
    return {"id": rule_id, "tenant": tenant, "effect": effect, "when": when, "py": py, **extra}


#: 20 rules a platform team might write, on a 3-level chain (7 at the root, 7 on the
#: org, 6 on the project). `py` is the same condition as a Python lambda (the floor).
RULES: list[dict[str, Any]] = [
    # root
    _rule("no-embedding-streams", "root", "deny", 'endpoint == "embeddings" && stream',
          lambda a: a["endpoint"] == "embeddings" and a["stream"]),
    _rule("huge-prompts", "root", "deny", "prompt_tokens > 200000",
          lambda a: a["prompt_tokens"] > 200000),
    _rule("tool-results", "root", "flag", "tool_results && size(tools) > 0",
          lambda a: a["tool_results"] and len(a["tools"]) > 0),
    _rule("internal-models", "root", "deny", 'model.startsWith("internal-") && !("admin" in roles)',
          lambda a: a["model"].startswith("internal-") and "admin" not in a["roles"]),
    _rule("night", "root", "limit_class", "hour >= 22 || hour < 6",
          lambda a: a["hour"] >= 22 or a["hour"] < 6),
    _rule("weekend", "root", "flag", "weekday >= 5", lambda a: a["weekday"] >= 5),
    _rule("local-key", "root", "flag", 'key == "local" && client_ip != "127.0.0.1"',
          lambda a: a["key"] == "local" and a["client_ip"] != "127.0.0.1"),
    # acme
    _rule("no-shell-tools", "acme", "deny",
          'tools.exists(t, t.startsWith("shell") || t.startsWith("exec"))',
          lambda a: any(t.startswith(("shell", "exec")) for t in a["tools"])),
    _rule("eu-data", "acme", "route", 'headers["x-data-region"] == "eu"',
          lambda a: a["headers"]["x-data-region"] == "eu", route={"pin": ["eu-1", "eu-2"]}),
    _rule("no-preview", "acme", "route", 'model.endsWith("-preview")',
          lambda a: a["model"].endswith("-preview"), route={"exclude": ["preview-1"]}),
    _rule("big-answers", "acme", "limit_class", "max_tokens > 8000",
          lambda a: a["max_tokens"] > 8000),
    _rule("office-network", "acme", "flag", 'client_ip.startsWith("10.")',
          lambda a: a["client_ip"].startswith("10.")),
    _rule("unlabelled", "acme", "flag", 'headers["x-project"] == "" && endpoint != "embeddings"',
          lambda a: a["headers"]["x-project"] == "" and a["endpoint"] != "embeddings"),
    _rule("long-streams", "acme", "flag", "stream && max_tokens > 4000",
          lambda a: a["stream"] and a["max_tokens"] > 4000),
    # acme-search
    _rule("interns-short-streams", "acme-search", "deny",
          'stream && max_tokens > 1000 && !("tools" in roles)',
          lambda a: a["stream"] and a["max_tokens"] > 1000 and "tools" not in a["roles"]),
    _rule("small-is-fast", "acme-search", "route", "prompt_tokens < 2000 && max_tokens <= 512",
          lambda a: a["prompt_tokens"] < 2000 and a["max_tokens"] <= 512,
          route={"pin": ["fast-1", "eu-1"]}),
    _rule("many-tools", "acme-search", "flag", "size(tools) > 20", lambda a: len(a["tools"]) > 20),
    _rule("model-list", "acme-search", "deny",
          '!(model in ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "mock-fast"])',
          lambda a: a["model"] not in ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "mock-fast")),
    _rule("batch-keys", "acme-search", "limit_class",
          'key.startsWith("batch-") && "acme" in tenants',
          lambda a: a["key"].startswith("batch-") and "acme" in a["tenants"]),
    _rule("team-label", "acme-search", "flag", 'headers["x-team"].matches("^[a-z]+-[0-9]+$")',
          lambda a: _TEAM.search(a["headers"]["x-team"]) is not None),
]  # fmt: skip

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "mock-fast", "gpt-5-preview")
TOOL_NAMES = ("search", "fetch", "calculator", "read_file", "write_file", "shell_run", "sql")


def attributes(rng: random.Random, prompt_tokens: int | None = None) -> dict[str, Any]:
    """One request's attributes, as plain Python values."""
    tools = tuple(rng.sample(TOOL_NAMES, rng.randint(0, 5)))
    return {
        "tenant": CHAIN[-1],
        "tenants": CHAIN,
        "key": rng.choice(("agent-1", "agent-2", "batch-7", "ci")),
        "roles": ("user", "tools") if rng.random() < 0.7 else ("user",),
        "model": rng.choice(MODELS),
        "endpoint": rng.choice(("chat", "chat", "responses", "embeddings")),
        "prompt_tokens": prompt_tokens if prompt_tokens is not None else rng.randint(50, 60000),
        "max_tokens": rng.choice((0, 256, 512, 1024, 4096, 16000)),
        "stream": rng.random() < 0.6,
        "tools": tools,
        "tool_results": bool(tools) and rng.random() < 0.5,
        "headers": {
            "x-data-region": rng.choice(("eu", "us", "")),
            "x-project": rng.choice(("search", "")),
            "x-team": rng.choice(("search-1", "ops", "")),
        },
        "hour": rng.randint(0, 23),
        "weekday": rng.randint(0, 6),
        "client_ip": rng.choice(("10.1.2.3", "192.0.2.7", "127.0.0.1")),
        "server": "",
        "tool": "",
        "argument_names": (),
        "annotations": (),
    }


def timed(call: Callable[[], object], iterations: int) -> list[int]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return samples


def summary(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": ordered[len(ordered) // 2] / 1000,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000,
    }


# -- 1 and 2: one library per child process ----------------------------------------


def measure_rust(iterations: int) -> dict[str, Any]:
    import cel

    rng = random.Random(1)
    inputs = [attributes(rng) for _ in range(64)]
    compile_samples: list[int] = []
    per_call: list[int] = []
    per_call_reads: list[int] = []
    reused: list[int] = []
    for rule in RULES:
        compile_samples += timed(lambda r=rule: cel.compile(r["when"]), 50)
        program = cel.compile(rule["when"])
        reads = [name for name in program.variables() if name in inputs[0]]
        cycle = iter(inputs * (iterations // len(inputs) + 1))
        per_call += timed(lambda p=program, c=cycle: p.execute(next(c)), iterations)
        cycle = iter(inputs * (iterations // len(inputs) + 1))
        per_call_reads += timed(
            lambda p=program, c=cycle, r=reads: _execute_reads(p, c, r), iterations
        )
        context = cel.Context(inputs[0])
        program.execute(context)
        reused += timed(lambda p=program, c=context: p.execute(c), iterations)
    return {
        "library": "common-expression-language (Rust)",
        "compile": summary(compile_samples),
        "eval_per_call_all_attributes": summary(per_call),
        "eval_per_call_read_attributes": summary(per_call_reads),
        "eval_reused_binding": summary(reused),
        "capabilities": rust_capabilities(),
    }


def _execute_reads(program: Any, inputs: Any, reads: list[str]) -> object:
    """Execute with only the attributes the rule reads bound (what seawall does)."""
    values = next(inputs)
    return program.execute({name: values[name] for name in reads})


def rust_capabilities() -> dict[str, str]:
    import cel

    def outcome(source: str, context: dict[str, Any]) -> str:
        try:
            program = cel.compile(source)
        except Exception as exc:
            return f"compile error: {' '.join(str(exc).split())[:110]}"
        try:
            return f"compiles; evaluates to {program.execute(context)!r}"
        except Exception as exc:
            return f"compiles; evaluation raises {type(exc).__name__}: {str(exc)[:70]}"

    attrs = {"stream": True, "max_tokens": 5}
    nesting = _deepest("(", ")", lambda s: cel.compile(s))
    return {
        "syntax error": outcome("stream &&", attrs),
        "undeclared name": outcome("strem && true", attrs),
        "type error": outcome("stream > 3", attrs),
        "non-bool result": outcome("max_tokens + 1", attrs),
        "cost limit": "none in the API ("
        + (", ".join(n for n in dir(cel) if "cost" in n.lower()) or "no cost setting")
        + f"); parser refuses nesting beyond {nesting} parentheses",
        "static references": "Program.variables(): "
        f"{cel.compile('tools.exists(t, t == model)').variables()} (macro variables included)",
        "reuse": "compile once, execute(dict or Context) per call; a Context converts its "
        "values once and is reused across programs",
    }


def measure_celpy(iterations: int, compiled: bool) -> dict[str, Any]:
    import logging

    import celpy

    logging.disable(logging.CRITICAL)
    runner = celpy.CompiledRunner if compiled else celpy.InterpretedRunner
    env = celpy.Environment(runner_class=runner)
    rng = random.Random(1)
    inputs = [attributes(rng) for _ in range(64)]
    converted = [celpy.json_to_cel(_jsonable(a)) for a in inputs]
    compile_samples: list[int] = []
    per_call: list[int] = []
    reused: list[int] = []
    for rule in RULES:
        compile_samples += timed(lambda r=rule: env.program(env.compile(r["when"])), 10)
        program = env.program(env.compile(rule["when"]))
        cycle = iter(inputs * (iterations // len(inputs) + 1))
        per_call += timed(
            lambda p=program, c=cycle: p.evaluate(celpy.json_to_cel(_jsonable(next(c)))),
            iterations,
        )
        reused += timed(lambda p=program, v=converted[0]: p.evaluate(v), iterations)
    name = "cel-python, CompiledRunner" if compiled else "cel-python, InterpretedRunner"
    return {
        "library": name,
        "compile": summary(compile_samples),
        "eval_per_call_all_attributes": summary(per_call),
        "eval_reused_binding": summary(reused),
        "capabilities": celpy_capabilities(env),
    }


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


def celpy_capabilities(env: Any) -> dict[str, str]:
    import celpy

    def outcome(source: str, context: dict[str, Any]) -> str:
        try:
            program = env.program(env.compile(source))
        except Exception as exc:
            where = f" at {getattr(exc, 'line', '?')}:{getattr(exc, 'column', '?')}"
            return f"compile error{where}: {type(exc).__name__}"
        try:
            return f"compiles; evaluates to {program.evaluate(celpy.json_to_cel(context))!r}"
        except Exception as exc:
            return f"compiles; evaluation raises {type(exc).__name__}: {str(exc)[:70]}"

    attrs = {"stream": True, "max_tokens": 5}
    nesting = _deepest("(", ")", lambda s: env.compile(s))
    return {
        "syntax error": outcome("stream &&", attrs),
        "undeclared name": outcome("strem && true", attrs),
        "type error": outcome("stream > 3", attrs),
        "non-bool result": outcome("max_tokens + 1", attrs),
        "cost limit": "none in the API ("
        + (", ".join(n for n in dir(celpy) if "cost" in n.lower()) or "no cost setting")
        + f"); parser accepts nesting up to {nesting} parentheses (tested up to 200)",
        "static references": "the lark parse tree (Environment.compile)",
        "reuse": "compile once, evaluate(activation) per call; values converted with "
        "json_to_cel per call",
    }


def _deepest(opening: str, closing: str, parse: Callable[[str], object]) -> int:
    """The deepest parenthesised `1` the parser accepts, up to 200."""
    deepest = 0
    for depth in (10, 25, 50, 75, 100, 150, 200):
        try:
            parse(opening * depth + "1" + closing * depth)
        except BaseException:  # the Rust core raises BaseException on panics
            break
        deepest = depth
    return deepest


def measure_lambda(iterations: int) -> dict[str, Any]:
    rng = random.Random(1)
    inputs = [attributes(rng) for _ in range(64)]
    samples: list[int] = []
    for rule in RULES:
        cycle = iter(inputs * (iterations // len(inputs) + 1))
        samples += timed(lambda f=rule["py"], c=cycle: f(next(c)), iterations)
    return {
        "library": "Python lambda (floor)",
        "eval_per_call_all_attributes": summary(samples),
        "eval_reused_binding": summary(samples),
    }


def child(kind: str, iterations: int) -> None:
    if kind == "rust":
        result = measure_rust(iterations)
    elif kind == "celpy-interpreted":
        result = measure_celpy(max(50, iterations // 20), compiled=False)
    elif kind == "celpy-compiled":
        result = measure_celpy(max(50, iterations // 20), compiled=True)
    else:
        result = measure_lambda(iterations)
    print(json.dumps(result))


def run_child(kind: str, iterations: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--iterations", str(iterations)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- 3 and 4: seawall's policies on the chosen library -------------------------------


def seawall_policies(iterations: int) -> dict[str, Any]:
    from policies import Attributes, KnownNames, compile_policies, parse_policies

    chains = {CHAIN[-1]: CHAIN, "acme": CHAIN[:2]}
    known = KnownNames.of(chains, DEPLOYMENTS, ("night", "tight", "batch"))
    limit_classes = {"night": "night", "big-answers": "tight", "batch-keys": "batch"}
    rules = []
    for rule in RULES:
        entry = {k: v for k, v in rule.items() if k != "py"}
        if rule["effect"] == "deny":
            entry["message"] = f"Refused by {rule['id']}."
        elif rule["effect"] == "flag":
            entry["flag"] = rule["id"]
        elif rule["effect"] == "limit_class":
            entry["limit_class"] = limit_classes[rule["id"]]
        rules.append(entry)

    def build(cache_entries: int) -> Any:
        config = parse_policies(
            {"rules": rules, "headers": list(HEADERS), "cache": {"max_entries": cache_entries}}
        )
        return compile_policies(config, known)

    compile_samples = timed(lambda: build(0), 5)
    rng = random.Random(2)

    def as_attributes(values: dict[str, Any]) -> Attributes:
        return Attributes(**values)

    # cold: every request different, cache off
    cold = build(0)
    pool = [as_attributes(attributes(rng)) for _ in range(512)]
    requests = [(pool[i % len(pool)], str(i)) for i in range(iterations)]
    cold_samples = [_timed_once(lambda a=a, k=k: cold.decide(a, k)) for a, k in requests]
    # cached: 40 agents, each a conversation whose prompt grows every turn
    warm = build(4096)
    agents = [attributes(rng) for _ in range(40)]
    warm_samples = []
    for turn in range(iterations // len(agents)):
        for agent in agents:
            values = dict(agent, prompt_tokens=500 + 700 * turn)
            request = as_attributes(values)
            warm_samples.append(_timed_once(lambda a=request, t=turn: warm.decide(a, str(t))))
    return {
        "compile_20_rules": summary(compile_samples),
        "cold": {"decision": summary(cold_samples), "stats": _rules_table(cold.stats().active)},
        "cached": {
            "decision": summary(warm_samples),
            "stats": _rules_table(warm.stats().active),
            "hits": warm.stats().active.cache_hits,
            "misses": warm.stats().active.cache_misses,
            "evaluations": warm.stats().active.evaluations,
            "decisions": warm.stats().active.decisions,
        },
    }


def _timed_once(call: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


def _rules_table(stats: Any) -> list[dict[str, Any]]:
    return [
        {
            "rule": rule.rule,
            "evaluations": rule.evaluations,
            "median_us": rule.median_us,
            "p99_us": rule.p99_us,
        }
        for rule in stats.rules
    ]


def cost_model() -> list[dict[str, Any]]:
    import cel

    from policies.attributes import MAX_CHAIN, MAX_HEADERS, MAX_ROLES, MAX_TOOLS
    from policies.cost import MAX_RULE_STEPS, estimate
    from policies.syntax import parse

    at_limits = {
        "tools": tuple(f"tool_{i:03d}" for i in range(MAX_TOOLS)),
        "roles": tuple(f"role{i}" for i in range(MAX_ROLES)),
        "tenants": tuple(f"t{i}" for i in range(MAX_CHAIN)),
        "headers": {f"h{i}": "v" * 64 for i in range(MAX_HEADERS)},
        "model": "m" * 1024,
        "max_tokens": 5,
    }
    literal = "[" + ",".join(str(i) for i in range(300)) + "]"
    sources = [
        "max_tokens > 1000",
        'model.startsWith("gpt")',
        'tools.exists(t, t.startsWith("shell"))',
        'tools.all(t, t != "x") && roles.all(r, r != "x")',
        'size(tools.filter(t, t.startsWith("shell"))) > 3',
        'tools.map(t, t + "x").size() > 0',
        'roles.filter(r, r.startsWith("a")).size() > 0',
        "tenants.exists(t, roles.exists(r, t == r))",
        'headers.exists(k, headers[k].contains("zz"))',
        'model.matches("^(a|b)*c$")',
        f"{literal}.exists(x, x < 0)",
        f"{literal}.map(x, x * 2).size() > 0",
        'tools.exists(a, tools.exists(b, a == b && a == "zz"))',
    ]
    rows = []
    context = cel.Context(at_limits)
    for source in sources:
        steps = estimate(parse(source)).steps
        program = cel.compile(source)
        program.execute(context)
        samples = timed(lambda p=program: p.execute(context), 20 if steps < 20000 else 3)
        rows.append(
            {
                "rule": source if len(source) < 70 else source[:30] + " ... " + source[-30:],
                "steps": steps,
                "accepted": steps <= MAX_RULE_STEPS,
                "median_us": summary(samples)["median_us"],
            }
        )
    return rows


# -- output ---------------------------------------------------------------------------


def markdown(
    libraries: list[dict[str, Any]], seawall: dict[str, Any], cost: list[dict[str, Any]]
) -> str:
    out = [f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)", ""]
    out.append("## CEL libraries: 20 realistic rules (times in µs, median / p99)\n")
    out.append(
        "| library | compile | eval, all 15 attributes bound per call | eval, only the read "
        "attributes bound per call | eval, binding reused |"
    )
    out.append("|---|---|---|---|---|")
    for lib in libraries:
        cells = [lib["library"]]
        for key in (
            "compile",
            "eval_per_call_all_attributes",
            "eval_per_call_read_attributes",
            "eval_reused_binding",
        ):
            value = lib.get(key)
            cells.append(f"{value['median_us']:.2f} / {value['p99_us']:.1f}" if value else "-")
        out.append("| " + " | ".join(cells) + " |")
    out.append("\n## What each library offers (tried, not read from docs)\n")
    with_caps = [lib for lib in libraries if "capabilities" in lib]
    out.append("| | " + " | ".join(lib["library"] for lib in with_caps) + " |")
    out.append("|---|" + "---|" * len(with_caps))
    for key in with_caps[0]["capabilities"]:
        row = [lib["capabilities"][key].replace("|", "\\|") for lib in with_caps]
        out.append(f"| {key} | " + " | ".join(row) + " |")
    compile_time = seawall["compile_20_rules"]
    out.append(
        f"\n## seawall policies (common-expression-language)\n\n`compile_policies`, 20 rules, "
        f"3-level chain: {compile_time['median_us'] / 1000:.1f} ms median "
        f"({compile_time['median_us'] / 20 / 1000:.2f} ms a rule; the trial evaluations "
        "and checks included)\n"
    )
    cold, cached = seawall["cold"], seawall["cached"]
    out.append(
        f"Per decision (all 20 rules apply): cold {cold['decision']['median_us']:.1f} / "
        f"{cold['decision']['p99_us']:.1f} µs; cached {cached['decision']['median_us']:.1f} / "
        f"{cached['decision']['p99_us']:.1f} µs (median / p99). Cache on agent-like traffic: "
        f"{cached['hits']} hits, {cached['misses']} misses, {cached['evaluations']} rule "
        f"evaluations for {cached['decisions']} decisions (rules reading `prompt_tokens` run "
        "every time).\n"
    )
    out.append(
        "| rule | cold: evaluations | median µs | p99 µs "
        "| cached: evaluations | median µs | p99 µs |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for a, b in zip(cold["stats"], cached["stats"], strict=True):
        out.append(
            f"| {a['rule']} | {a['evaluations']} | {_us(a['median_us'])} | {_us(a['p99_us'])} | "
            f"{b['evaluations']} | {_us(b['median_us'])} | {_us(b['p99_us'])} |"
        )
    out.append("\n## Cost model: estimated steps vs measured (attributes at their limits)\n")
    out.append("| rule | steps | accepted | median µs | µs per step |")
    out.append("|---|---|---|---|---|")
    for row in cost:
        per_step = row["median_us"] / row["steps"]
        rule = row["rule"].replace("|", "\\|")
        out.append(
            f"| `{rule}` | {row['steps']} | {'yes' if row['accepted'] else 'no'} | "
            f"{row['median_us']:.1f} | {per_step:.3f} |"
        )
    return "\n".join(out)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="evaluations per rule")
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    iterations = max(100, args.iterations // 10) if args.quick else args.iterations
    if args.child:
        child(args.child, iterations)
        return
    libraries = [
        run_child(kind, iterations)
        for kind in ("rust", "celpy-interpreted", "celpy-compiled", "lambda")
    ]
    seawall = seawall_policies(iterations)
    cost = cost_model()
    print(markdown(libraries, seawall, cost))
    if args.json:
        args.json.write_text(
            json.dumps({"libraries": libraries, "seawall": seawall, "cost": cost}, indent=2)
        )


if __name__ == "__main__":
    main()
