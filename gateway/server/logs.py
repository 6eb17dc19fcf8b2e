"""The gateway's log lines: one format for its own records and uvicorn's (the
serving process configures logging: serve.py `log_config`).

Every line has an ISO-8601 UTC timestamp, the level, the logger, the request id
when the record has one, the message, and then the record's structured fields
(what a call site passed in `extra`), which the plain `%(message)s` formatters drop:

    2026-12-07T05:17:21.123Z INFO    seawall.access [3f9a1c0b2e-17] POST
    /v1/chat/completions 200 status=200 latency_ms=12.4 tenant=acme

`--log-format json` prints the same as one JSON object per line, for collectors:

    {"time":"2026-12-07T05:17:21.123Z","level":"INFO","logger":"seawall.access",
    "message":"POST /v1/chat/completions 200","request_id":"3f9a1c0b2e-17",
    "status":200,"latency_ms":12.4,"tenant":"acme"}

(each one line, wrapped here).

Secrets: the process's log record factory (common/redact.py, `LOG_REDACTION`)
scrubs every record's message, arguments and traceback when it is made; the
structured fields are set on the record after that, so these formatters scrub each
string field the same way before printing it.

The request id is the record's `request_id` field, or else the one of the request
being served when the record was made (`REQUEST_ID`, a context variable that a
request's task sets), so a line logged deep in a stage still names its request.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar
from typing import Any

import orjson

from common.redact import LOG_REDACTION

#: The formats `--log-format` accepts.
TEXT, JSON = "text", "json"
FORMATS = (TEXT, JSON)

#: The id of the request the current task is serving, for the lines it logs.
REQUEST_ID: ContextVar[str | None] = ContextVar("seawall_request_id", default=None)

#: Attributes every LogRecord has (and uvicorn's colour copy of its message): what is
#: not among them was passed in `extra` and is a structured field.
_STANDARD = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        "message",
        "asctime",
        "taskName",
        "color_message",
        "request_id",
    }
)


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def _timestamp(created: float) -> str:
    seconds = int(created)
    if seconds != _second[0]:
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}Z"


def _clean(value: Any) -> Any:
    """A field's value with the configured secrets removed; scalars as they are,
    anything else as its text."""
    kind = type(value)
    if kind is str:
        return LOG_REDACTION.text(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [LOG_REDACTION.text(v) for v in value]
    return LOG_REDACTION.text(str(value))


_SCALARS = frozenset({int, float, bool})


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields, scrubbed, in the order they were given; a
    field whose value is None or empty is left out."""
    found: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name in _STANDARD or name.startswith("_") or value is None or value == "":
            continue
        if isinstance(value, dict):  # a group of fields (`extra={"event": {...}}`)
            for key, item in value.items():
                if item is not None and item != "":
                    found[key] = _clean(item)
        else:
            found[name] = _clean(value)
    return found


def request_id(record: logging.LogRecord) -> str | None:
    rid = getattr(record, "request_id", None)
    return rid if rid else REQUEST_ID.get()


#: A text value is quoted (as a JSON string) when it holds any of these, or is empty.
_NEEDS_QUOTES = re.compile(r'[\s"=]|^$')


def _quoted(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return orjson.dumps(value).decode() if _NEEDS_QUOTES.search(value) else value
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return f"{value:g}"
    if kind is int:
        return str(value)
    return _quoted(str(value))


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback and stack as text (already scrubbed when the factory
    formatted them: it fills `exc_text`)."""
    text = record.exc_text
    if not text and record.exc_info:
        text = record.exc_text = LOG_REDACTION.text(formatter.formatException(record.exc_info))
    if record.stack_info:
        stack = LOG_REDACTION.text(record.stack_info)
        text = f"{text}\n{stack}" if text else stack
    return text or None


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> [<request id>] <message> key=value ...`, then any
    traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record.created), f"{record.levelname:<7}", record.name]
        rid = request_id(record)
        if rid:
            parts.append(f"[{rid}]")
        parts.append(LOG_REDACTION.text(record.getMessage()))
        for name, value in fields(record).items():
            parts.append(f"{name}={_quoted(value)}")
        line = " ".join(parts)
        trace = _trace(self, record)
        return f"{line}\n{trace}" if trace else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time`, `level`, `logger`, `message`, `request_id`
    (when there is one), the structured fields, and `exception` (a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": LOG_REDACTION.text(record.getMessage()),
        }
        rid = request_id(record)
        if rid:
            line["request_id"] = rid
        for name, value in fields(record).items():
            line.setdefault(name, value)
        trace = _trace(self, record)
        if trace:
            line["exception"] = trace
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    if log_format == JSON:
        return JsonFormatter()
    if log_format == TEXT:
        return TextFormatter()
    raise ValueError(f"log format {log_format!r}: give one of {', '.join(FORMATS)}")
