"""Token counting with tiktoken, offline.

tiktoken downloads its encodings on first use and this gateway must start with no
network. litellm ships the same encoding files under its package, so we point
tiktoken's cache there. `find_spec` locates litellm without importing it (importing
litellm costs seconds and ~150 MB).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import tiktoken

#: Per-message framing tokens in OpenAI's chat format (see OpenAI's cookbook recipe).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# Families that use o200k_base; everything else counts with cl100k_base, the closest
# public encoding for non-OpenAI models (an estimate, documented as such).
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def offline_encodings_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def configure_offline_encodings() -> None:
    folder = offline_encodings_dir()
    if folder is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(folder))


configure_offline_encodings()


@functools.lru_cache(maxsize=1024)
def encoding_name_for(model: str) -> str:
    """The encoding that counts `model`'s tokens (remembered: the stages that count
    ask once per request, with the few model names of the config)."""
    name = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if name.startswith(O200K_PREFIXES) else "cl100k_base"


def encoding_loaded(model: str) -> bool:
    """Is `model`'s encoding loaded (so counting with it never blocks)? A counting
    stage asks this before awaiting `load_encoding`, which it rarely needs."""
    return encoding_name_for(model) in _LOADED


async def load_encoding(model: str) -> None:
    """Loads `model`'s encoding in a worker thread, the first time only (0.3-1 s of
    CPU, ~50 MB); afterwards a dict lookup. Parsing the ranks holds the GIL for most
    of that, so a worker thread spares the loop little: a gateway's Runtime loads what
    it may count with before it serves (gateway/runtime.py, `counting_models`), and the
    counting stages await this only as a backstop."""
    name = encoding_name_for(model)
    if name not in _LOADED:
        await asyncio.to_thread(get_encoding, name)


#: The encodings loaded so far, by name.
_LOADED: dict[str, tiktoken.Encoding] = {}


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """The encoding `name`, loaded once per process. tiktoken keeps the Python dict of
    its merge ranks beside the Rust tables built from it, only to pickle the encoding,
    which the gateway never does: dropped, it frees ~26 MB per encoding per worker
    (docs/performance.md, "Start-up and idle memory"). tiktoken itself (~1.2 MB of
    native code) is imported with the first encoding: a worker that never counts
    tokens never loads it."""
    import tiktoken

    encoding = tiktoken.get_encoding(name)
    encoding._mergeable_ranks = {}
    _LOADED[name] = encoding
    return encoding


def encoding_for(model: str) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for(model))


def count_text(text: str, encoding: tiktoken.Encoding) -> int:
    """Special tokens in user text ("<|endoftext|>") count as plain text instead of
    raising: user input must never crash the counter. tiktoken's `encode_ordinary`
    is `encode(text, disallowed_special=())` without its special-token bookkeeping."""
    return len(encoding.encode_ordinary(text))


def content_text(content: Any) -> str:
    """The text of a message `content`: a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return orjson.dumps(content).decode()


#: Counts a text's tokens: `count_text`, or a remembering one (routing/turn_counts.py).
TextCounter = Callable[[str, "tiktoken.Encoding"], int]


def message_tokens(
    message: Mapping[str, Any], encoding: tiktoken.Encoding, count: TextCounter = count_text
) -> int:
    """One message's tokens in OpenAI's chat framing (images are not counted)."""
    total = TOKENS_PER_MESSAGE + count(content_text(message.get("content")), encoding)
    role = message.get("role")
    if isinstance(role, str):
        total += role_tokens(role, encoding)
    name = message.get("name")
    if isinstance(name, str):
        total += TOKENS_PER_NAME + count(name, encoding)
    tool_calls = message.get("tool_calls")
    if tool_calls:
        total += count(orjson.dumps(tool_calls).decode(), encoding)
    return total


#: Roles counted, by (encoding, role): a message's role is one of a handful.
_ROLE_TOKENS: dict[tuple[str, str], int] = {}
#: Roles remembered at most (a role outside OpenAI's few is counted each time).
_ROLES_KEPT = 64


def role_tokens(role: str, encoding: tiktoken.Encoding) -> int:
    """`count_text(role)`, remembered for the few roles there are."""
    key = (encoding.name, role)
    count = _ROLE_TOKENS.get(key)
    if count is None:
        count = count_text(role, encoding)
        if len(_ROLE_TOKENS) < _ROLES_KEPT:
            _ROLE_TOKENS[key] = count
    return count


def count_messages(messages: Iterable[Mapping[str, Any]], encoding: tiktoken.Encoding) -> int:
    return REPLY_PRIMING_TOKENS + sum(message_tokens(m, encoding) for m in messages)


def count_tools(
    tools: Iterable[Any] | None, encoding: tiktoken.Encoding, count: TextCounter = count_text
) -> int:
    """Tool definitions as the model sees them: an approximation by their JSON text,
    a function's schema or a custom tool's format (a grammar's definition) included."""
    if not tools:
        return 0
    return count(orjson.dumps(list(tools)).decode(), encoding)
