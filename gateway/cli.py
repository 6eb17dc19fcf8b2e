"""The `seawall` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources

from common.config import env_secrets_optional
from gateway.config import DEFAULT_CONFIG_RESOURCE, ConfigError, GatewayConfig
from gateway.reload import validate
from gateway.sources import Documents, SourceError
from gateway.sources.spec import read_now

EXIT_CONFIG = 2


def load_served(
    spec: str | None, host: str | None = None, skip_env: bool = False
) -> tuple[GatewayConfig, Mapping[str, str], str]:
    """The config (`spec`: a file, a directory or etcd://...; None: the embedded
    default), the documents it was read from and their origin; or exit 2 with every
    problem listed in one pass: those of the documents, and those serving them (on
    `host`, default `server.host`) would hit. `skip_env`: `env:` secrets need not be
    set (checking only, never serving)."""
    if spec is None:
        text = resources.files("gateway").joinpath(DEFAULT_CONFIG_RESOURCE).read_text()
        documents = Documents.of({DEFAULT_CONFIG_RESOURCE: text}, "<embedded default>")
    else:
        try:
            documents = read_now(spec)
        except SourceError as exc:
            print(f"seawall: cannot read the config: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
    try:
        with env_secrets_optional() if skip_env else contextlib.nullcontext():
            config = validate(
                documents.files, documents.origin, documents.problems, serve_on=host or ""
            )
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return config, documents.files, documents.origin


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
    """`--config` as every worker can resolve it: a path made absolute (etcd:// and
    explicit `file:` / `dir:` forms as given)."""
    if spec is None or "://" in spec or spec.startswith(("file:", "dir:")):
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
    from gateway.server.serve import INTERRUPT_GRACE_S, ServeOptions, bind, listening_on

    options = ServeOptions(
        host=host,
        port=port,
        workers=args.workers,
        access_log=args.access_log,
        log_level=args.log_level,
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
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"seawall: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    workers = f"{args.workers} workers" if args.workers > 1 else "1 worker"
    print(
        f"seawall listening on {listening_on(sock)} "
        f"({args.config or 'embedded default config'}, {workers}); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    if args.workers > 1:
        from gateway.server.workers import run_workers

        server = config.server
        stop = server.drain_s + server.shutdown_timeout_s + INTERRUPT_GRACE_S + 5
        return run_workers(options, sock, stop)
    from gateway.app import create_app
    from gateway.server.serve import serve_app

    app = create_app(config, documents=documents, origin=origin, source=spec)
    serve_app(app, config.server, options, sock)
    return 0


def check_config(args: argparse.Namespace) -> int:
    config, _, _ = load_served(config_spec(args.file), skip_env=args.skip_env)
    deployments = sum(len(g.deployments) for g in config.models)
    print(f"{args.file}: ok ({len(config.models)} model groups, {deployments} deployments)")
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


@contextmanager
def embedded_gateway() -> Iterator[str]:
    """The embedded default gateway on a free loopback port, served from a background
    thread while the context is open: what `seawall chaos run` uses without --url.
    The socket listens before the thread starts, so connections queue until the
    server accepts them; the runner then waits for /readyz."""
    import uvicorn

    from gateway.app import create_app

    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(*load_served(None)[:1]),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
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
    chaos = commands.add_parser("chaos", help="chaos experiments").add_subparsers(
        dest="chaos_command", required=True
    )
    p = chaos.add_parser("run", help="run an experiment (exit 0 held, 1 did not, 2 bad file)")
    p.add_argument("file", help="experiment YAML, or the name of a shipped one")
    p.add_argument("--url", help="gateway to test (default: start the embedded default)")
    p.add_argument("--report", help="JSON report path (default: ./<name>-<time>.json)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every duration")
    p.set_defaults(func=chaos_run)
    p = chaos.add_parser("list", help="list the shipped experiments")
    p.set_defaults(func=chaos_list)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seawall")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seawall", description=__doc__)
    parser.add_argument("--version", action="version", version=f"seawall {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the gateway")
    p.add_argument("--config", help="YAML config file (default: the embedded demo config)")
    p.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=port_number, help="port (default: server.port, 8080)")
    p.add_argument("--workers", type=worker_count, default=1, help="worker processes (default 1)")
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=serve)

    p = commands.add_parser(
        "check-config",
        help="validate a config file and exit (0 ok, 2 with every problem listed)",
        description="Report every problem of a config in one pass: fields, cross-references "
        "and what serving it would refuse.",
    )
    p.add_argument("file")
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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
