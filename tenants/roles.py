"""The closed set of roles a key can hold, and what each one grants.

A role is a grant, so a misspelt one must never quietly become something else:
`roles: [admn]` is a config error, not a key that can do inference. Roles are
independent: `admin` manages the gateway but does not imply `user` (inference),
so an operator's key cannot silently spend model budget, and an inference key
cannot read the audit log.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator

Role = Literal["user", "tools", "chaos", "metrics", "auditor", "admin"]

#: What each role allows; the docs' table is generated from the same words.
ROLE_GRANTS: dict[str, str] = {
    "user": "inference: /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models",
    "tools": "the tool invoke proxy: POST /v1/tools/{name}/invoke",
    "chaos": "the x-seawall-chaos and x-traffic-color request headers",
    "metrics": "GET /metrics",
    "auditor": "reading the audit log",
    "admin": "the admin API (/admin/...) within the key's tenant subtree, and /metrics",
}

ROLES: frozenset[str] = frozenset(get_args(Role))
assert frozenset(ROLE_GRANTS) == ROLES, "every role needs its grant described"


def _known_role(value: object) -> object:
    if isinstance(value, str) and value not in ROLES:
        known = ", ".join(sorted(ROLES))
        raise ValueError(f"unknown role {value!r} (roles are: {known})")
    return value


#: A role in config: an unknown name is reported with the list of known ones.
RoleName = Annotated[Role, BeforeValidator(_known_role)]
