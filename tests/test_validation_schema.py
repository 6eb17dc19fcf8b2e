"""What `/openapi.json` says a request body may be, and what the validation stages
accept, are the same set: bodies generated from the document (valid ones, and
schemathesis' deliberately invalid ones) are accepted by the stage exactly when
the document's JSON Schema accepts them."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from common.fields import FieldProblem
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.openapi import openapi_document
from gateway.stages.validate import ValidateChat, ValidateEmbeddings, check_invocation
from tests.examples import examples

DOCUMENT = openapi_document(load_config(None))
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


class Body:
    """The part of an `Exchange` the validation stages read and write."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.stream = False


def _chat(body: dict[str, Any]) -> None:
    asyncio.run(ValidateChat()(cast(Exchange, Body(body))))


def _embeddings(body: dict[str, Any]) -> None:
    asyncio.run(ValidateEmbeddings()(cast(Exchange, Body(body))))


def _invocation(body: dict[str, Any]) -> None:
    check_invocation(body)


EXAMPLES = settings(
    max_examples=examples(40), database=None, deadline=None, suppress_health_check=list(HealthCheck)
)

STAGES = {
    "/v1/chat/completions": _chat,
    "/v1/embeddings": _embeddings,
    "/v1/tools/{name}/invoke": _invocation,
}


def accepted(path: str, body: dict[str, Any]) -> bool:
    try:
        STAGES[path](body)
    except FieldProblem:
        return False  # the stage answers it with a 400
    except GatewayError as error:
        if error.status != 400:
            raise
        return False
    return True


@pytest.mark.parametrize("path", sorted(STAGES))
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])  # fmt: skip
def test_the_document_and_the_stage_accept_the_same_bodies(
    path: str, mode: schemathesis.GenerationMode
) -> None:
    content = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]
    validator = Draft202012Validator(content["application/json"]["schema"])
    strategy = SCHEMA[path]["POST"].as_strategy(generation_mode=mode)

    # Not an object: ParseJSON refuses it before validation runs.
    objects = strategy.map(lambda case: case.body).filter(lambda body: isinstance(body, dict))

    @EXAMPLES
    @given(objects)
    def agree(body: dict[str, Any]) -> None:
        documented = validator.is_valid(body)
        assert accepted(path, copy.deepcopy(body)) == documented, body

    agree()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip


def _containers(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `value` that holds a value: (path to the container, key)."""
    places: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        places.append((*where, key))
        if isinstance(inner, (dict, list)):
            places.extend(_containers(inner, (*where, key)))
    return places


@pytest.mark.parametrize("path", sorted(STAGES))
def test_they_agree_on_bodies_broken_anywhere_inside(path: str) -> None:
    """schemathesis' invalid bodies are mostly broken at the top; these are valid
    bodies with one value anywhere inside replaced by any JSON value."""
    content = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]
    validator = Draft202012Validator(content["application/json"]["schema"])
    valid = SCHEMA[path]["POST"].as_strategy().map(lambda case: case.body)

    @EXAMPLES
    @given(valid, st.data())
    def agree(body: dict[str, Any], data: st.DataObject) -> None:
        places = _containers(body)
        if places:
            *parents, key = data.draw(st.sampled_from(places))
            container = body
            for step in parents:
                container = container[step]
            container[key] = data.draw(JSON)
        documented = validator.is_valid(body)
        assert accepted(path, copy.deepcopy(body)) == documented, body

    agree()
