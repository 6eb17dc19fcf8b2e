"""`GET /v1/responses/{id}/input_items`: a page of a response's input items.

The API's cursor pagination: `limit` (1 to 100, default 20), `order` (`desc`, the
default, newest item first; or `asc`) and `after` (an item id: the page starts
with the item after it in that order). The list object says where the page begins
and ends (`first_id`, `last_id`) and whether more follow (`has_more`).

The items listed are the ones the request that made the response sent as `input`,
in canonical form; the history it continued from belongs to earlier responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responses.errors import InvalidRequest, invalid_value

Json = dict[str, Any]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
ORDERS = ("asc", "desc")


def input_items_page(
    items: list[Json], *, limit: int = DEFAULT_LIMIT, order: str = "desc", after: str | None = None
) -> Json:
    """A list object with one page of `items` (a stored response's input items,
    oldest first)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise invalid_value("limit", f"expected an integer from 1 to {MAX_LIMIT}.")
    if order not in ORDERS:
        raise invalid_value("order", f"'{order}' is not one of {list(ORDERS)}.")
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        positions = [k for k, item in enumerate(ordered) if item.get("id") == after]
        if not positions:
            raise InvalidRequest(
                f"No input item with id '{after}' in this response.",
                param="after",
                code="invalid_value",
            )
        start = positions[0] + 1
    page = ordered[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(ordered),
    }


def parse_page_query(query: Mapping[str, str]) -> dict[str, Any]:
    """`limit`, `order` and `after` from a query string's values, checked; the
    keyword arguments of `input_items_page`. `include` is accepted and has no
    effect (translation stores nothing it could add)."""
    arguments: dict[str, Any] = {}
    raw_limit = query.get("limit")
    if raw_limit is not None:
        try:
            arguments["limit"] = int(raw_limit)
        except ValueError:
            raise invalid_value("limit", f"expected an integer from 1 to {MAX_LIMIT}.") from None
    if "order" in query:
        arguments["order"] = query["order"]
    if "after" in query:
        arguments["after"] = query["after"]
    return arguments
