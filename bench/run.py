"""Benchmark seawall against the bare upstream, a bare Python relay, Portkey and LiteLLM.

    .venv/bin/python bench/run.py            # 10 s per cell, about 5 minutes
    .venv/bin/python bench/run.py --quick    # 3 s per cell, a smoke run

The upstreams (nginx for plain completions, bench/upstream.py for streams) start
once; each gateway then starts fresh per phase, alone (the machine has 2 cores and
wrk needs one), and must answer one real request correctly before wrk measures it.
Results: a markdown table on stdout, and bench/results/<stamp>.{json,md} + latest.*.
Exit status: 1 if seawall failed (to start, a correctness check, or a measurement),
2 if the benchmark itself could not run, 130 on interruption.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from checks import (
    DEFAULT_PROMPT,
    Endpoint,
    StartError,
    check_completion,
    check_stream,
    prompt_of,
    wait_ready,
)
from loadgen import WrkError, run_wrk, write_script
from processes import (
    Spawned,
    busy_pct,
    free_port,
    machine_busy_s,
    spawn,
    tree_cpu_s,
    tree_rss_mb,
)
from report import (
    CONCURRENCIES,
    KINDS,
    NON_STREAM,
    NOT_RUN,
    OK,
    STREAM,
    Cell,
    Phase,
    Report,
    TargetResult,
    render_markdown,
    write_results,
)
from targets import (
    BENCH_DIR,
    LITELLM_MASTER_KEY,
    MODEL_GROUP,
    PORTKEY_STREAM_NOT_RUN,
    UPSTREAM_KEY,
    NotRun,
    ensure_floor,
    ensure_litellm,
    ensure_portkey,
    ensure_tool,
    floor_argv,
    litellm_argv,
    litellm_env,
    litellm_versions,
    nginx_argv,
    portkey_argv,
    portkey_env,
    portkey_headers,
    portkey_versions,
    seawall_argv,
    upstream_argv,
)
from upstream import MODEL

TARGETS = ("direct", "floor", "seawall", "portkey", "litellm")
RESULTS_DIR = BENCH_DIR / "results"
UPSTREAM_READY_TIMEOUT_S = 20.0
#: LiteLLM imports a great deal before it answers; give it time on a slow machine.
GATEWAY_READY_TIMEOUT_S = 180.0
#: Other work above this (in % of one core) makes the numbers hard to compare.
BUSY_WARNING_PCT = 20.0


def log(message: str) -> None:
    """Progress goes to stderr so stdout carries only the results table."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    duration_s: int
    warmup_s: int
    wrk: str
    workdir: Path
    logdir: Path
    prompt: str = DEFAULT_PROMPT
    max_prompt_tokens: int | None = None


@dataclass(frozen=True)
class Server:
    """A server that has answered a real chat completion, and how long that took."""

    spawned: Spawned
    endpoint: Endpoint
    ready_s: float


@dataclass(frozen=True)
class Upstream:
    """An upstream shared by every target; `label` names the program in the report."""

    label: str
    port: int
    server: Server


def chat_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/chat/completions"


@contextmanager
def start_server(
    name: str,
    argv: Sequence[str],
    endpoint: Endpoint,
    stream: bool,
    settings: Settings,
    timeout_s: float = GATEWAY_READY_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Spawn a server and wait until it answers; it is stopped when the block exits."""
    with spawn(name, argv, settings.workdir, settings.logdir, env) as spawned:
        ready_s = wait_ready(endpoint, stream, spawned, timeout_s)
        log(f"  {name}: ready in {ready_s:.2f} s (pid {spawned.pid})")
        yield Server(spawned, endpoint, ready_s)


def start_upstreams(stack: ExitStack, nginx: str | None, settings: Settings) -> dict[str, Upstream]:
    """The stream upstream, and nginx for plain completions (or the stream upstream again).

    Both live for the whole run: `direct` measures them, the gateways forward to them.
    """
    log("starting upstreams")
    port = free_port()
    endpoint = Endpoint(chat_url(port), UPSTREAM_KEY, MODEL, settings.prompt)
    argv = upstream_argv(port)
    server = stack.enter_context(
        start_server("upstream", argv, endpoint, True, settings, UPSTREAM_READY_TIMEOUT_S)
    )
    stream = Upstream("upstream.py", port, server)
    if nginx is None:
        log("  nginx unavailable: upstream.py serves plain completions too")
        return {STREAM: stream, NON_STREAM: stream}
    port = free_port()
    endpoint = Endpoint(chat_url(port), UPSTREAM_KEY, MODEL, settings.prompt)
    argv = nginx_argv(nginx, settings.workdir, port)
    server = stack.enter_context(
        start_server("nginx", argv, endpoint, False, settings, UPSTREAM_READY_TIMEOUT_S)
    )
    return {STREAM: stream, NON_STREAM: Upstream("nginx", port, server)}


Launcher = Callable[[str, Upstream, Settings], AbstractContextManager[Server]]


def launch_direct(
    kind: str, upstream: Upstream, settings: Settings
) -> AbstractContextManager[Server]:
    return nullcontext(upstream.server)


def launch_floor(
    kind: str, upstream: Upstream, settings: Settings
) -> AbstractContextManager[Server]:
    port = free_port()
    argv = floor_argv(port, upstream.port)
    endpoint = Endpoint(chat_url(port), UPSTREAM_KEY, MODEL, settings.prompt)
    return start_server(f"floor-{kind}", argv, endpoint, kind == STREAM, settings)


def launch_seawall(
    kind: str, upstream: Upstream, settings: Settings
) -> AbstractContextManager[Server]:
    port = free_port()
    argv = seawall_argv(settings.workdir, port, upstream.port, settings.max_prompt_tokens)
    endpoint = Endpoint(chat_url(port), UPSTREAM_KEY, MODEL_GROUP, settings.prompt)
    return start_server(f"seawall-{kind}", argv, endpoint, kind == STREAM, settings)


def launch_litellm(
    kind: str, upstream: Upstream, settings: Settings
) -> AbstractContextManager[Server]:
    port = free_port()
    argv = litellm_argv(settings.workdir, port, upstream.port)
    endpoint = Endpoint(chat_url(port), LITELLM_MASTER_KEY, MODEL_GROUP, settings.prompt)
    name, stream = f"litellm-{kind}", kind == STREAM
    return start_server(name, argv, endpoint, stream, settings, env=litellm_env())


def launch_portkey(
    kind: str, upstream: Upstream, settings: Settings
) -> AbstractContextManager[Server]:
    """Portkey forwards the caller's key to the host its headers name: no config file."""
    if kind == STREAM:
        raise NotRun(PORTKEY_STREAM_NOT_RUN)
    port = free_port()
    headers = portkey_headers(upstream.port)
    endpoint = Endpoint(chat_url(port), UPSTREAM_KEY, MODEL, settings.prompt, headers)
    argv, env = portkey_argv(port), portkey_env()
    return start_server(f"portkey-{kind}", argv, endpoint, False, settings, env=env)


LAUNCHERS: dict[str, Launcher] = {
    "direct": launch_direct,
    "floor": launch_floor,
    "seawall": launch_seawall,
    "portkey": launch_portkey,
    "litellm": launch_litellm,
}


def measure_cell(
    server: Server, upstream: Server, script: Path, concurrency: int, settings: Settings
) -> Cell:
    """One wrk run, with the CPU share of the target, its upstream, wrk, and everything else.

    wrk's share comes from RUSAGE_CHILDREN (it is the only child reaped meanwhile);
    "other" is the machine's busy time left over: processes that are not ours.
    """
    target_pid, upstream_pid = server.spawned.pid, upstream.spawned.pid
    cpu_before, upstream_before = tree_cpu_s(target_pid), tree_cpu_s(upstream_pid)
    wrk_before, machine_before = _children_cpu_s(), machine_busy_s()
    began = time.monotonic()
    result = run_wrk(settings.wrk, server.endpoint.url, script, concurrency, settings.duration_s)
    elapsed = time.monotonic() - began
    cpu = tree_cpu_s(target_pid) - cpu_before
    upstream_cpu = tree_cpu_s(upstream_pid) - upstream_before
    wrk_cpu = _children_cpu_s() - wrk_before
    ours = cpu + wrk_cpu + (0 if upstream_pid == target_pid else upstream_cpu)
    other = max(0.0, machine_busy_s() - machine_before - ours)
    shares = (100 * seconds / elapsed for seconds in (cpu, upstream_cpu, wrk_cpu, other))
    return Cell(result, *shares)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(phase: Phase, server: Server, upstream: Server, settings: Settings) -> None:
    """Correctness first; only a correct server is warmed up and measured."""
    endpoint, stream = server.endpoint, phase.kind == STREAM
    check = check_stream(endpoint) if stream else check_completion(endpoint)
    phase.correctness = check.detail
    log(f"  correctness: {'ok' if check.ok else 'FAILED'}: {check.detail}")
    if not check.ok:
        phase.fail(f"correctness: {check.detail}")
        return
    script = settings.workdir / f"{server.spawned.name}.lua"
    write_script(script, endpoint.encoded_body(stream), endpoint.headers)
    run_wrk(settings.wrk, endpoint.url, script, max(CONCURRENCIES), settings.warmup_s)
    for concurrency in CONCURRENCIES:
        cell = measure_cell(server, upstream, script, concurrency, settings)
        phase.cells[concurrency] = cell
        result = cell.wrk
        log(
            f"  c={concurrency}: {result.rps:,.0f} RPS, p50 {_ms(result.p50_ms)},"
            f" p99 {_ms(result.p99_ms)}, errors {result.errors}, CPU {cell.cpu_pct:.0f} %"
            f" (upstream {cell.upstream_cpu_pct:.0f} %, wrk {cell.wrk_cpu_pct:.0f} %,"
            f" other {cell.other_cpu_pct:.0f} %)"
        )
    phase.rss_mb = tree_rss_mb(server.spawned.pid)


def _ms(value: float | None) -> str:
    """A latency for the progress log; None when no request completed in the cell."""
    return "— (no request completed)" if value is None else f"{value:.3g} ms"


def bench_phase(target: str, kind: str, upstream: Upstream, settings: Settings) -> Phase:
    """A launcher raises NotRun for a scenario its target is known not to handle."""
    log(f"[{target}] {kind} (upstream: {upstream.label})")
    phase = Phase(kind=kind, upstream=upstream.label)
    try:
        with LAUNCHERS[target](kind, upstream, settings) as server:
            phase.ready_s = server.ready_s
            measure(phase, server, upstream.server, settings)
    except NotRun as exc:
        log(f"  not run: {exc}")
        phase.status, phase.reason = NOT_RUN, str(exc)
    except (StartError, WrkError, OSError) as exc:
        log(f"  FAILED: {exc}")
        phase.fail(str(exc))
    return phase


def bench_target(
    target: str, upstreams: dict[str, Upstream], settings: Settings, not_run: str | None
) -> TargetResult:
    if not_run is not None:
        log(f"[{target}] not run: {not_run}")
        phases = [Phase(kind, upstreams[kind].label, NOT_RUN, not_run) for kind in KINDS]
        return TargetResult(target, phases)
    return TargetResult(
        target, [bench_phase(target, kind, upstreams[kind], settings) for kind in KINDS]
    )


def _installed(ensure: Callable[[Path], None], log_name: str) -> str | None:
    """Runs an installer; the reason its target cannot run, or None when it can."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    install_log = RESULTS_DIR / log_name
    try:
        ensure(install_log)
    except NotRun as exc:
        return f"{exc} (see {install_log})" if install_log.exists() else str(exc)
    return None


def prepare_litellm() -> str | None:
    """Install LiteLLM if needed; the reason it cannot run, or None when it can."""
    return _installed(ensure_litellm, "litellm-install.log")


def prepare_floor() -> str | None:
    """The reason the floor cannot run (aiohttp missing), or None when it can."""
    try:
        ensure_floor()
    except NotRun as exc:
        return str(exc)
    return None


def prepare_portkey() -> str | None:
    """Install Portkey's gateway if needed; the reason it cannot run, or None when it can."""
    return _installed(ensure_portkey, "portkey-install.log")


def _command_output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return f"unavailable ({exc})"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def machine_facts(busy_before_run: float) -> dict[str, object]:
    """Facts that explain the numbers; `busy_before_run` is sampled before any server starts."""
    return {
        "busy_pct_before_run": busy_before_run,
        "loadavg_1m": os.getloadavg()[0],
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(wrk: str, nginx: str | None, ready: Mapping[str, str | None]) -> dict[str, object]:
    """Versions of what ran; `ready` is the not-run reason per target (None: it ran)."""
    found: dict[str, object] = {
        name: _package_version(name)
        for name in ("seawall", "uvicorn", "starlette", "httpx", "aiohttp", "uvloop")
    }
    found["wrk"] = _command_output([wrk, "-v"])
    found["nginx"] = _command_output([nginx, "-v"]) if nginx else None
    if "litellm" in ready and ready["litellm"] is None:
        found["litellm"] = litellm_versions()
    if "portkey" in ready and ready["portkey"] is None:
        found["portkey"] = portkey_versions()
    return found


def _package_version(name: str) -> str | None:
    """None for a package that is not installed (aiohttp is a bench-only requirement)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per cell (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="warm-up seconds per phase (default 2)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s cells, 1 s warm-up")
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=0,
        help="user message of about N tokens (default: a greeting)",
    )
    parser.add_argument(
        "--max-prompt-tokens", type=int, help="seawall's prompt limit (default: the model's window)"
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)} (default: all)",
    )
    args = parser.parse_args(argv)
    args.targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"unknown targets: {', '.join(sorted(unknown)) or '(none given)'}")
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.duration < 1 or args.warmup < 1:
        parser.error("--duration and --warmup must be at least 1 second")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops its process group."""
    raise KeyboardInterrupt


def bench_all(
    settings: Settings, nginx: str | None, targets: Sequence[str], not_run: dict[str, str | None]
) -> list[TargetResult]:
    """Start the upstreams, then measure each target in turn; everything stops on exit."""
    with ExitStack() as upstream_stack:
        upstreams = start_upstreams(upstream_stack, nginx, settings)
        return [bench_target(t, upstreams, settings, not_run[t]) for t in targets]


def run(args: argparse.Namespace) -> int:
    began, now = time.monotonic(), time.gmtime()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", now)
    wrk = ensure_tool("wrk", "wrk")
    if wrk is None:
        log("wrk is missing and `apt-get install -y wrk` failed: nothing can be measured")
        return 2
    nginx = ensure_tool("nginx", "nginx-light")
    not_run: dict[str, str | None] = dict.fromkeys(args.targets)
    if "litellm" in args.targets:
        not_run["litellm"] = prepare_litellm()
    if "floor" in args.targets:
        not_run["floor"] = prepare_floor()
    if "portkey" in args.targets:
        not_run["portkey"] = prepare_portkey()
    logdir = RESULTS_DIR / "logs" / stamp
    logdir.mkdir(parents=True)
    busy = busy_pct()
    if busy > BUSY_WARNING_PCT:
        log(f"warning: other work keeps the machine busy ({busy:.0f} % of a core)")
    with tempfile.TemporaryDirectory(prefix="seawall-bench-") as tmp:
        settings = Settings(
            args.duration,
            args.warmup,
            wrk,
            Path(tmp),
            logdir,
            prompt_of(args.prompt_tokens),
            args.max_prompt_tokens,
        )
        try:
            results = bench_all(settings, nginx, args.targets, not_run)
        except StartError as exc:
            log(f"an upstream did not start: {exc}")
            return 2
    report = Report(
        stamp=stamp,
        started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
        wall_s=time.monotonic() - began,
        settings={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "targets": args.targets,
            "prompt_tokens": args.prompt_tokens,
            "max_prompt_tokens": args.max_prompt_tokens,
        },
        machine=machine_facts(busy),
        versions=versions(wrk, nginx, not_run),
        targets=results,
    )
    json_path, md_path = write_results(report, RESULTS_DIR)
    print(render_markdown(report))
    log(f"results: {json_path} and {md_path} (also latest.*); server logs: {logdir}")
    seawall = next((t for t in results if t.name == "seawall"), None)
    return 1 if seawall and any(p.status != OK for p in seawall.phases) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except KeyboardInterrupt:
        log("interrupted: every started process was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
