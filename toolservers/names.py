"""The namespacing scheme: `server__tool`.

Agents see one `/mcp` endpoint in front of many servers, so every tool and prompt
name is prefixed with its server's name and `SEPARATOR` (two underscores):
`github__create_issue`. The scheme has to survive three consumers:

- routing: the exposed name must split back into (server, upstream name) without
  guessing, so a server name never contains the separator nor ends with `_`
  (`a_` + `__` + `b` would read as `a` + `__` + `_b`); it is split at the first
  separator, and the upstream name may contain anything after it;
- models: agent frameworks turn MCP tools into function tools named exactly as
  listed, and OpenAI's function names allow only `[A-Za-z0-9_-]{1,64}`; a name
  that cannot be exposed that way (too long, or a character outside that set,
  such as the dots MCP allows) is not exposed at all, and the catalog logs it;
- people: `server__tool` reads as what it is.

Resources keep their URIs (a URI is an address, not a name a model calls); they
are routed by the URIs each server listed (catalog.py).
"""

from __future__ import annotations

import re

SEPARATOR = "__"
#: A server name: letters, digits, single `-` or `_` between them; no separator.
SERVER_NAME = re.compile(r"^[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$")
MAX_SERVER_NAME = 32
#: OpenAI's rule for function names, which exposed tool names must follow.
EXPOSED_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_server_name(name: str) -> str:
    """`name` if it can prefix tool names unambiguously; ValueError otherwise."""
    if len(name) > MAX_SERVER_NAME or not SERVER_NAME.fullmatch(name):
        raise ValueError(
            f"must be 1-{MAX_SERVER_NAME} letters or digits, with single '-' or '_' between "
            f"them (no '{SEPARATOR}': it separates the server from the tool in tool names)"
        )
    return name


def expose(server: str, name: str) -> str | None:
    """The name agents see for `name` of `server`, or None when it cannot be one
    (an OpenAI function name: 64 characters of `[A-Za-z0-9_-]`)."""
    exposed = f"{server}{SEPARATOR}{name}"
    return exposed if EXPOSED_NAME.fullmatch(exposed) else None


def split(exposed: str) -> tuple[str, str] | None:
    """(server, upstream name) of an exposed name; None when it has no separator."""
    server, sep, name = exposed.partition(SEPARATOR)
    if not sep or not server or not name:
        return None
    return server, name
