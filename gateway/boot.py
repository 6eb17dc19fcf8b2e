"""Starting a gateway: load its config, create the app, serve it.

One sequence for every way seawall serves: the single process of `seawall serve`,
each of its `--workers` (which load the config themselves, spawned), and the
embedded gateway `seawall chaos run` starts. The server package (gateway/server/)
is handed `boot` and never imports what is above it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Mapping
from importlib import resources

from common.config import env_secrets_optional
from gateway.config import DEFAULT_CONFIG_RESOURCE, ConfigError, GatewayConfig
from gateway.reload import validate
from gateway.server.serve import ServeOptions, configure_logging, serve_app
from gateway.sources import Documents, SourceError
from gateway.sources.spec import read_now

#: The exit status of a config that cannot be served.
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


def serve_loaded(
    config: GatewayConfig,
    documents: Mapping[str, str],
    origin: str,
    options: ServeOptions,
    sock: socket.socket,
) -> None:
    """Create the app for a loaded config and serve it on `sock` until signalled."""
    from gateway.app import create_app

    app = create_app(
        config, documents=documents, origin=origin, source=options.config, worker=options.worker
    )
    serve_app(app, config.server, options, sock)


def boot(options: ServeOptions, sock: socket.socket) -> None:
    """The whole sequence, as a worker runs it: load `options.config`, serve it."""
    configure_logging(options)
    serve_loaded(*load_served(options.config, options.host), options, sock)
