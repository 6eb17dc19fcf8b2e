"""seawall: an OpenAI-compatible gateway for LLM agents, with resilient routing, tool
verification, tenants, policies, limits and chaos mode."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from common.config import ENV_PREFIX
from common.secrets import mask_url
from gateway.audit_cli import add_audit_commands
from gateway.boot import EXIT_CONFIG, boot, load_served, serve_loaded
from gateway.config import GatewayConfig
from gateway.slo_cli import add_slo_commands


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def worker_count(text: str) -> int:
    workers = int(text)
    if not 1 <= workers <= 256:
        raise argparse.ArgumentTypeError(f"{workers} workers: give 1 to 256")
    return workers


def config_spec(spec: str | None) -> str | None:
    """`--config` as every worker can resolve it: a path made absolute (etcd://,
    `env:NAME` and explicit `file:` / `dir:` forms as given)."""
    if spec is None or "://" in spec or spec.startswith(("file:", "dir:", ENV_PREFIX)):
        return spec
    return os.path.abspath(spec)


def has_limits(config: GatewayConfig) -> bool:
    levels = [t.limits for t in config.tenants] + [k.limits for k in config.keys]
    return bool(config.limits.classes) or any(x is not None and not x.empty for x in levels)


def serve(args: argparse.Namespace) -> int:
    spec = config_spec(args.config)
    config, documents, origin = load_served(spec, args.host)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    from gateway.server.serve import (
        INTERRUPT_GRACE_S,
        ServeOptions,
        bind,
        configure_logging,
        listening_on,
    )

    options = ServeOptions(
        host=host,
        port=port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=args.log_level,
        log_format=args.log_format,
        config=spec,
    )
    if args.workers > 1 and has_limits(config) and not config.limits.shared:
        # A limit counted per worker admits up to N times its value: no limit at all.
        print(
            f"seawall: refusing --workers {args.workers}: limits are configured and "
            "limits.store is `memory`, so each worker would count separately and a limit "
            f"would admit up to {args.workers}x its value. Set limits.store to a "
            "redis:// URL, or run one worker.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.workers > 1 and not config.responses.shared:
        print(
            f"seawall: warning: responses.store is `memory`: with {args.workers} workers a "
            "stored response is readable, and its conversation continues, only on the "
            "worker that stored it. Set responses.store to a redis:// URL to share them.",
            file=sys.stderr,
        )
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"seawall: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    workers = f"{args.workers} workers" if args.workers > 1 else "1 worker"
    print(
        f"seawall listening on {listening_on(sock)} "
        f"({mask_url(args.config) if args.config else 'embedded default config'}, {workers}); "
        "Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    if args.workers > 1:
        from gateway.server.workers import run_workers

        server = config.server
        stop = server.drain_s + server.shutdown_timeout_s + INTERRUPT_GRACE_S + 5
        return run_workers(options, sock, stop, boot)
    configure_logging(options)  # before the app is made: its warnings are log lines too
    serve_loaded(config, documents, origin, options, sock)
    return 0


def check_config(args: argparse.Namespace) -> int:
    config, _, _ = load_served(config_spec(args.config), skip_env=args.skip_env)
    deployments = sum(len(g.deployments) for g in config.models)
    print(
        f"{mask_url(args.config)}: ok ({len(config.models)} model groups, "
        f"{deployments} deployments)"
    )
    return 0


def mock_upstream(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.server.serve import bind, listening_on
    from routing.config import MockSettings
    from routing.mock.server import MockUpstreamApp

    settings = MockSettings(
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        stream_chunks=args.stream_chunks,
        error_rate=args.error_rate,
        seed=args.seed,
    )
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"seawall: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"seawall mock-upstream listening on {listening_on(sock)}/v1 (model {args.model}); "
        "Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        MockUpstreamApp(args.model, settings),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=args.log_level,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def embedded_config(sections: Mapping[str, Any]) -> tuple[GatewayConfig, Mapping[str, str]]:
    """The embedded default plus `sections` (an experiment's `gateway:`), merged as
    two config documents: a section both set is a problem, never an override; and the
    documents (version #1's, so a rollback to it restores them, secrets and all).
    Exits 2 with every problem listed, as a bad config does."""
    if not sections:
        config, documents, _ = load_served(None)
        return config, documents
    from importlib import resources

    import yaml

    from gateway.config import DEFAULT_CONFIG_RESOURCE, ConfigError
    from gateway.reload import validate

    default = resources.files("gateway").joinpath(DEFAULT_CONFIG_RESOURCE).read_text()
    files = {
        DEFAULT_CONFIG_RESOURCE: default,
        "experiment-gateway.yaml": yaml.safe_dump(dict(sections)),
    }
    try:
        return validate(files, "<embedded default + experiment>", serve_on="127.0.0.1"), files
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


@contextmanager
def embedded_gateway(sections: Mapping[str, Any] | None = None) -> Iterator[str]:
    """The embedded default gateway (plus an experiment's `sections`) on a free
    loopback port, served from a background thread while the context is open: what
    `seawall chaos run` uses without --url. The socket listens before the thread
    starts, so connections queue until the server accepts them; the runner then
    waits for /readyz."""
    import uvicorn

    from gateway.app import create_app
    from gateway.server.serve import ServeOptions, uvicorn_config

    config, documents = embedded_config(sections or {})
    sock = socket.create_server(("127.0.0.1", 0))
    app = create_app(config, documents=documents, origin="<embedded default>")
    options = ServeOptions("127.0.0.1", sock.getsockname()[1], log_level="warning")
    # The front door `seawall serve` has: guarded protocol, forwarded headers untrusted.
    server = uvicorn.Server(uvicorn_config(app, app.state.gateway.config.server, options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def chaos_run(args: argparse.Namespace) -> int:
    from chaos.runner import command

    return command.run(
        args.file,
        url=args.url,
        report=args.report,
        dry_run=args.dry_run,
        scale=args.scale,
        start_gateway=embedded_gateway,
        out=sys.stdout,
        err=sys.stderr,
    )


def chaos_list(args: argparse.Namespace) -> int:
    from chaos.runner import command

    return command.list_experiments(sys.stdout)


def add_chaos_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = _command(
        commands,
        "chaos",
        "chaos experiments: run one, or list the shipped ones",
        "Prove an agent survives faults: run an experiment against a gateway.",
        "  seawall chaos list\n  seawall chaos run provider-outage\n"
        "  seawall chaos run my-experiment.yaml --url http://127.0.0.1:8080",
    ).add_subparsers(dest="chaos_command", required=True, metavar="COMMAND")
    p = _command(
        chaos,
        "run",
        "run an experiment (exit 0 held, 1 did not, 2 bad file)",
        "Run an experiment: steady state, faults, recovery, each phase checked; faults are "
        "always rolled back. Reports in JSON and markdown.",
        "  seawall chaos run provider-outage              # on an embedded gateway\n"
        "  seawall chaos run provider-outage --dry-run    # validate, print the plan\n"
        "  seawall chaos run my.yaml --url http://127.0.0.1:8080 --report out/run.json",
    )
    p.add_argument("file", help="experiment YAML, or the name of a shipped one")
    p.add_argument("--url", help="gateway to test (default: start the embedded default)")
    p.add_argument("--report", help="JSON report path (default: ./<name>-<time>.json)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every duration")
    p.set_defaults(func=chaos_run)
    p = _command(
        chaos,
        "list",
        "list the shipped experiments",
        "The experiments that ship with seawall, one a line: name and title.",
        "  seawall chaos list",
    )
    p.set_defaults(func=chaos_list)


def mcp_list(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from dataclasses import asdict

    from gateway.mcp.listing import listing, render

    config, _, _ = load_served(config_spec(args.config), skip_env=args.skip_env)
    servers, tenants = asyncio.run(listing(config))
    if args.json:
        views = {"servers": [asdict(s) for s in servers], "tenants": [asdict(t) for t in tenants]}
        print(json.dumps(views, indent=2))
    else:
        sys.stdout.write(render(servers, tenants))
    return 0


def add_mcp_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mcp = _command(
        commands,
        "mcp",
        "MCP servers behind /mcp: what each tenant sees",
        "Inspect the MCP servers a config puts behind /mcp.",
        "  seawall mcp list --config seawall.yaml",
    ).add_subparsers(dest="mcp_command", required=True, metavar="COMMAND")
    p = _command(
        mcp,
        "list",
        "start the config's MCP servers and print each tenant's tools",
        "Start the config's MCP servers as the gateway would, list their tools (namespaced "
        "<server>__<tool>) and print, for each tenant, the tools its keys would see in "
        "tools/list. A server that does not answer is reported, not fatal.",
        "  seawall mcp list --config seawall.yaml\n  seawall mcp list seawall.yaml --json",
    )
    add_config_arguments(p, None)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--skip-env",
        action="store_true",
        help="accept env: secrets whose variables are not set",
    )
    p.set_defaults(func=mcp_list)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seawall")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


#: What `CONFIG` may be, for every command that takes one.
CONFIG_FORMS = (
    "a YAML file, a directory of YAML files (a Kubernetes ConfigMap mount), or "
    "etcd://host:port/prefix/ (credentials as env: references); env:NAME reads the "
    "spec from a variable"
)


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    """CONFIG as an argument or as `--config CONFIG`, the same forms for every command
    (`resolve_config` joins them after parsing)."""
    what = f"{CONFIG_FORMS} (default: {default})" if default else CONFIG_FORMS
    parser.add_argument("config_argument", nargs="?", metavar="CONFIG", help=what)
    parser.add_argument("--config", metavar="CONFIG", help="the same, as an option")
    parser.set_defaults(config_required=default is None, config_parser=parser)


def resolve_config(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args.config_parser
    given = [c for c in (args.config_argument, args.config) if c is not None]
    if len(given) == 2 and given[0] != given[1]:
        parser.error("give the config once: as an argument or with --config")
    if not given and args.config_required:
        parser.error("a config is required: CONFIG or --config CONFIG")
    args.config = given[0] if given else None


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seawall",
        description=__doc__,
        epilog="Run `seawall COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"seawall {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(
        commands,
        "serve",
        "run the gateway",
        "Serve the gateway on a config, reloading it whenever its source changes.",
        "  seawall serve                              # the embedded demo config (mock LLMs)\n"
        "  seawall serve seawall.yaml --port 9000\n"
        "  seawall serve --config /etc/seawall/ --workers 4\n"
        "  seawall serve --config etcd://127.0.0.1:2379/seawall/",
    )
    add_config_arguments(p, "the embedded demo config")
    p.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=port_number, help="port (default: server.port, 8080)")
    p.add_argument("--workers", type=worker_count, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one INFO line per request: status, route, latency, tenant, key, config "
        "version, request id (default on; --no-access-log turns it off)",
    )
    p.add_argument("--log-level", default="info")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object per line, for log collectors",
    )
    p.set_defaults(func=serve)

    p = _command(
        commands,
        "check-config",
        "validate a config and exit (0 ok, 2 with every problem listed)",
        "Report every problem of a config in one pass: fields, cross-references and what "
        "serving it would refuse. Reads a file, a directory or etcd exactly as `serve` does.",
        "  seawall check-config seawall.yaml\n"
        "  seawall check-config --config /etc/seawall/ --skip-env\n"
        "  seawall check-config etcd://127.0.0.1:2379/seawall/",
    )
    add_config_arguments(p, None)
    p.add_argument(
        "--skip-env",
        action="store_true",
        help="accept env: secrets whose variables are not set (check a config without them)",
    )
    p.set_defaults(func=check_config)

    p = commands.add_parser(
        "mock-upstream",
        help="serve the mock LLM over HTTP",
        description="Serve seawall's deterministic mock LLM as a standalone OpenAI-compatible "
        "server (POST /v1/chat/completions, /v1/embeddings; GET /v1/models): no keys, no "
        "network. Point a gateway deployment's api_base (or any OpenAI client) at it.",
        epilog="examples:\n  seawall mock-upstream --port 9100\n"
        "  seawall mock-upstream --port 0 --latency-ms 50 --error-rate 0.1",
        formatter_class=_DefaultsAndExamples,
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address")
    p.add_argument("--port", type=port_number, default=9100, help="port (0: any free port)")
    p.add_argument("--model", default="mock-gpt", help="the model name it answers as")
    p.add_argument(
        "--latency-ms", type=float, default=0, help="delay before the first byte of each answer"
    )
    p.add_argument("--chunk-delay-ms", type=float, default=0, help="delay between streamed chunks")
    p.add_argument(
        "--stream-chunks", type=int, default=8, help="pieces a streamed answer is cut into"
    )
    p.add_argument(
        "--error-rate", type=float, default=0, help="share of requests answered with HTTP 503"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the deterministic answers")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    p.set_defaults(func=mock_upstream)
    add_chaos_commands(commands)
    add_mcp_commands(commands)
    add_audit_commands(commands, _command)
    add_slo_commands(commands, _command)
    return parser


class _DefaultsAndExamples(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """Option defaults in the help, and examples kept as written."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "config_parser"):
        resolve_config(args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
