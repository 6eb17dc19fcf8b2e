"""Removing secrets and internal addresses from text that leaves the gateway.

An upstream's error message is written for the gateway's operator, not for the
gateway's clients: OpenAI's own 401 quotes part of the key it refused
(`sk-upstr********XYZW`, the *gateway's* provider key), and a proxy in front of a
model server may name internal hosts and IPs. Where such text must reach a client
(a provider's 400 explaining what was wrong with the request), it goes through
`Redactor.client` first. The patterns are deliberately broad: a false positive costs a word
of an error message; a false negative leaks a credential.

The gateway's own secrets (every `Secret` and `SecretUrl` of the config,
common/secrets.py) are known exactly: each Runtime builds one `Redactor` from them,
used where text is relayed to a client (`client`) and, through `LOG_REDACTION`, on
every log record the process makes (`secrets`: the operator's log keeps hosts and
IPs, which it needs, and loses only the credentials).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"

_PATTERNS = re.compile(
    "|".join(
        [
            r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*]{6,}",  # OpenAI / Anthropic-style keys, masked too
            r"(?i:\bbearer)\s+[A-Za-z0-9._~+/\-]+=*",  # Authorization values
            r"\bAIza[0-9A-Za-z_\-]{20,}",  # Google API keys
            r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}",  # AWS access key ids
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",  # JWTs
            r"(?i:\b(?:api[_-]?key|token|secret|password))\s*[=:]\s*\S+",  # key=value
            r"[^\s*]{2,}\*{4,}[^\s*]{2,}",  # any masked fragment: abcd****wxyz
            r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b",  # IPv4 (and port)
            r"\[?[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\]?(?::\d{1,5})?(?=[\s,;)\]]|$)",  # IPv6
            r"\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:\d{2,5}\b",  # host:port
        ]
    )
)

#: A configured secret at least this long is also searched for by the fragments
#: providers quote (its first 8 and last 4 characters); shorter ones only whole.
FRAGMENT_MIN_SECRET = 24
#: A configured secret shorter than this is masked in views but not searched for in
#: text: removing every `v1` or `abc` from a log line would destroy it and protect
#: nothing (such a value is not a credential anyone can use).
MIN_SEARCHED_SECRET = 8
#: The leading fragment of a long secret that providers quote (`sk-upstr****XYZW`).
LEADING_FRAGMENT = 8
#: The password of a URL (`scheme://user:PASSWORD@`), whoever wrote the URL.
URL_CREDENTIALS = re.compile(r"(?<=://)([^\s/@:]*):[^\s/@]+@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` as a client may see it, once (`Redactor.client` for repeated use)."""
    return Redactor(secrets).client(text)


def _url_credentials(text: str) -> str:
    if "://" in text and "@" in text:
        return URL_CREDENTIALS.sub(r"\1:[redacted]@", text)
    return text


def _replace(text: str, pieces: tuple[str, ...]) -> str:
    # A substring test per piece runs at C speed and almost always fails: cheaper than
    # one alternation regex, which Python's engine tries at every position.
    for piece in pieces:
        if piece in text:
            text = text.replace(piece, REDACTED)
    return text


def _longest_first(pieces: Iterable[str]) -> tuple[str, ...]:
    """Longest first, so a whole secret goes before a fragment of it."""
    return tuple(sorted(set(pieces), key=lambda p: (-len(p), p)))


class Redactor:
    """The secrets of one config version, prepared once (a Runtime builds it), for the
    error paths and log records that need them; never run on a successful request.

    `secrets(text)` removes each secret of at least `MIN_SEARCHED_SECRET` characters,
    the leading fragment of long ones, and any URL's password: for the server log and
    for detail an operator chose to expose (`server.expose_upstream_errors`).
    `client(text)` also removes the trailing fragment providers quote and everything
    `redact` removes (key-like strings, IPs, host:port): for what a client receives."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        whole = {s for s in secrets if len(s) >= MIN_SEARCHED_SECRET}
        long = [s for s in whole if len(s) >= FRAGMENT_MIN_SECRET]
        self.pieces = _longest_first(whole | {s[:LEADING_FRAGMENT] for s in long})
        self._client_pieces = _longest_first([*self.pieces, *(s[-4:] for s in long)])

    def __bool__(self) -> bool:
        return bool(self.pieces)

    def secrets(self, text: str) -> str:
        return _url_credentials(_replace(text, self.pieces))

    def client(self, text: str) -> str:
        return _PATTERNS.sub(REDACTED, _url_credentials(_replace(text, self._client_pieces)))

    def secrets_in_bytes(self, data: bytes) -> bytes:
        """`secrets` over UTF-8 bytes (relayed stream events); `data` itself when clean."""
        if not self.pieces:
            return data
        text = data.decode("utf-8", "replace")
        cleaned = self.secrets(text)
        return data if cleaned == text else cleaned.encode()


_PLAIN = (int, float, bool, type(None))


class LogRedaction:
    """The secrets of every live config version, removed from every log record the
    process makes: its message, its arguments, its exception and stack text.

    It hooks the process's log record factory (`install`), so it sees each record
    when it is made, before any logger's filter or any handler: no call site, logger
    or handler can forget it (a filter on a logger would miss its children's records,
    and the handlers are uvicorn's or the operator's). Each Runtime `add`s its
    `Redactor` and `discard`s it when closed; registration is weak, so a Runtime that
    is never closed does not keep its secrets here forever. Records are touched only
    when they hold a secret: a clean record keeps its arguments (uvicorn's access
    formatter reads them as a tuple)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()
        self._pieces: tuple[str, ...] = ()
        self._installed = False

    def add(self, redactor: Redactor) -> None:
        with self._lock:
            self._redactors.add(redactor)
            self._rebuild()

    def discard(self, redactor: Redactor) -> None:
        with self._lock:
            self._redactors.discard(redactor)
            self._rebuild()

    def _rebuild(self) -> None:
        self._pieces = _longest_first(p for r in self._redactors for p in r.pieces)

    def text(self, text: str) -> str:
        return _url_credentials(_replace(text, self._pieces))

    def _clean(self, value: object) -> object:
        """`value` with secrets removed: a string if it held one, else itself."""
        if isinstance(value, _PLAIN):
            return value
        text = value if isinstance(value, str) else str(value)
        cleaned = self.text(text)
        return value if cleaned == text else cleaned

    def scrub(self, record: logging.LogRecord) -> None:
        """Remove secrets from `record`, in place."""
        record.msg = self._clean(record.msg)
        args = record.args
        if isinstance(args, tuple):
            values = tuple(self._clean(arg) for arg in args)
            if any(a is not b for a, b in zip(values, args, strict=True)):
                record.args = values
        elif isinstance(args, Mapping):
            record.args = {key: self._clean(arg) for key, arg in args.items()}
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Formatted once here (handlers reuse `exc_text`, as they would their own).
            text = _TRACEBACKS.formatException(record.exc_info)
            record.exc_text = self.text(text)
            if record.exc_text != text:
                # The text replaces the exception: a handler that formatted the
                # exception itself would print the secret again.
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.text(record.stack_info)

    def install(self) -> None:
        """Hook the log record factory, once per process (idempotent)."""
        with self._lock:
            if self._installed:
                return
            previous = logging.getLogRecordFactory()

            def factory(*args: object, **kwargs: object) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                try:
                    self.scrub(record)
                except Exception as exc:  # a value whose str() fails: never the caller's
                    # problem, and never a record that could not be checked.
                    record.msg = (
                        f"<log record not shown: checking it failed ({type(exc).__name__})>"
                    )
                    record.args, record.exc_info, record.exc_text = (), None, None
                return record

            logging.setLogRecordFactory(factory)
            self._installed = True


_TRACEBACKS = logging.Formatter()
#: The process's one log redaction (logging itself is process-wide).
LOG_REDACTION = LogRedaction()
