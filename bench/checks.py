"""Real chat-completion requests: readiness polling and the correctness gate.

A throughput number is only worth reporting for a server that answers correctly,
so every target must first relay one reply intact: a `choices` array for a plain
completion; for a stream, every upstream chunk in order and exactly one `[DONE]`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from processes import Spawned
from upstream import STREAM_EVENTS

#: What the upstream's chunks spell when concatenated; a relay must not lose or reorder them.
EXPECTED_STREAM_TEXT = "".join(f"tok{i} " for i in range(STREAM_EVENTS - 1))
POLL_INTERVAL_S = 0.05
CHECK_TIMEOUT_S = 30.0


class StartError(RuntimeError):
    """The server exited, or never answered a chat completion with 200 in time."""


DEFAULT_PROMPT = "Hello there, how are you?"


def prompt_of(tokens: int) -> str:
    """A user message of about `tokens` tokens ("hello" is one token in both
    o200k_base and cl100k_base); 0 gives the default short greeting."""
    return " ".join(["hello"] * tokens) if tokens else DEFAULT_PROMPT


@dataclass(frozen=True)
class Endpoint:
    """Where a server under test takes chat completions, and as whom to call it.

    `extra_headers` go on every request, checks and wrk alike: a gateway that is told
    per request where to forward (Portkey) needs them to answer at all.
    """

    url: str
    api_key: str
    model: str
    prompt: str = DEFAULT_PROMPT
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def body(self, stream: bool) -> dict[str, Any]:
        """The request every measurement sends: a realistic single-turn chat."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompt}],
        }
        if stream:
            body["stream"] = True
        return body

    def encoded_body(self, stream: bool) -> bytes:
        return json.dumps(self.body(stream), separators=(",", ":")).encode()

    @property
    def headers(self) -> dict[str, str]:
        return {**self.extra_headers, "authorization": f"Bearer {self.api_key}"}


@dataclass(frozen=True)
class Check:
    """A correctness verdict; `detail` is what the report shows either way."""

    ok: bool
    detail: str


def wait_ready(endpoint: Endpoint, stream: bool, spawned: Spawned, timeout_s: float) -> float:
    """Seconds from spawn to the first 200 of a real chat completion.

    A health endpoint can answer before the model route works (lazy imports, config
    still loading), so readiness is what a client needs: a completed chat request.
    """
    deadline = spawned.started + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=CHECK_TIMEOUT_S) as client:
        while True:
            code = spawned.process.poll()
            if code is not None:
                raise StartError(f"exited with code {code}:\n{spawned.log_tail()}")
            try:
                with client.stream(
                    "POST", endpoint.url, json=endpoint.body(stream), headers=endpoint.headers
                ) as response:
                    response.read()
                if response.status_code == 200:
                    return time.monotonic() - spawned.started
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise StartError(f"not ready after {timeout_s:.0f} s (last: {last})")
            time.sleep(POLL_INTERVAL_S)


def check_completion(endpoint: Endpoint) -> Check:
    """A non-stream request must come back 200 with a non-empty `choices` array."""
    try:
        response = httpx.post(
            endpoint.url,
            json=endpoint.body(False),
            headers=endpoint.headers,
            timeout=CHECK_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        return Check(False, f"request failed: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return Check(False, f"HTTP {response.status_code}: {response.text[:300]}")
    try:
        choices = response.json().get("choices")
    except (ValueError, AttributeError):
        return Check(False, f"body is not a JSON object: {response.text[:300]}")
    if not isinstance(choices, list) or not choices:
        return Check(False, f"no choices array: {response.text[:300]}")
    return Check(True, f"HTTP 200, {len(choices)} choice(s)")


def check_stream(endpoint: Endpoint) -> Check:
    """A stream must relay all STREAM_EVENTS chunks, in order, then one final `[DONE]`."""
    try:
        with httpx.stream(
            "POST",
            endpoint.url,
            json=endpoint.body(True),
            headers=endpoint.headers,
            timeout=CHECK_TIMEOUT_S,
        ) as response:
            if response.status_code != 200:
                response.read()
                return Check(False, f"HTTP {response.status_code}: {response.text[:300]}")
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                return Check(False, f"content-type is {content_type!r}, not text/event-stream")
            payloads = [
                line[len("data:") :].strip()
                for line in response.iter_lines()
                if line.startswith("data:")
            ]
    except httpx.HTTPError as exc:
        return Check(False, f"stream failed: {type(exc).__name__}: {exc}")
    return judge_events(payloads)


def judge_events(payloads: list[str]) -> Check:
    """Compare the `data:` payloads of one stream with what the upstream sent."""
    if not payloads or payloads[-1] != "[DONE]" or payloads.count("[DONE]") != 1:
        return Check(False, f"stream does not end with exactly one [DONE] ({payloads[-1:]})")
    text = []
    for payload in payloads[:-1]:
        try:
            chunk = json.loads(payload)
        except ValueError:
            return Check(False, f"event is not JSON: {payload[:200]}")
        if not isinstance(chunk, dict) or chunk.get("object") != "chat.completion.chunk":
            return Check(False, f"event is not a chat.completion.chunk: {payload[:200]}")
        for choice in chunk.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
    events = len(payloads) - 1
    if events != STREAM_EVENTS:
        return Check(False, f"{events} chunk events, expected {STREAM_EVENTS}")
    if "".join(text) != EXPECTED_STREAM_TEXT:
        return Check(False, "chunk contents differ from the upstream's (lost or reordered)")
    return Check(True, f"HTTP 200, {events} chunk events + [DONE], content intact")
