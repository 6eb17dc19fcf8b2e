"""Reading an SSE chat stream as an agent would, and judging how it ended.

A stream may end three ways: `data: [DONE]` (complete), an `error` event (the
gateway's honest `stream_interrupted`, or a refused tool call), or neither. The
last one, and a stream that carries pieces of two answers, are silent failures: an
agent would take a broken answer for a whole one. Two answers spliced together
show as a second role announcement, a second finish, a change of completion id,
or content after the finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

DONE = "[DONE]"


@dataclass
class StreamReader:
    done: bool = False
    error_code: str | None = None
    roles: int = 0
    finishes: int = 0
    content_after_finish: bool = False
    ids: set[str] = field(default_factory=set)
    events: int = 0
    _event_name: str = ""

    def feed(self, line: str) -> None:
        """One line of the SSE body (without its newline)."""
        if not line:
            self._event_name = ""
        elif line.startswith("event:"):
            self._event_name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            self._data(line[len("data:") :].strip())

    def _data(self, data: str) -> None:
        self.events += 1
        if data == DONE:
            self.done = True
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error_code = self.error_code or "invalid_event"
            return
        if not isinstance(payload, dict):
            return
        error = payload.get("error")
        if self._event_name == "error" or isinstance(error, dict):
            code = error.get("code") if isinstance(error, dict) else None
            self.error_code = str(code or "stream_error")
            return
        if isinstance(payload.get("id"), str):
            self.ids.add(payload["id"])
        for choice in payload.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice)

    def _choice(self, choice: dict[str, object]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if delta.get("role"):
                self.roles += 1
            if self.finishes and (delta.get("content") or delta.get("tool_calls")):
                self.content_after_finish = True
        if choice.get("finish_reason"):
            self.finishes += 1

    @property
    def spliced(self) -> bool:
        return self.roles > 1 or self.finishes > 1 or len(self.ids) > 1 or self.content_after_finish

    @property
    def errored(self) -> bool:
        return self.error_code is not None

    @property
    def silent_failure(self) -> bool:
        return self.spliced or not (self.done or self.errored)

    @property
    def ok(self) -> bool:
        return self.done and not self.errored and not self.spliced

    @property
    def failure_code(self) -> str | None:
        if self.error_code is not None:
            return self.error_code
        if self.spliced:
            return "stream_spliced"
        return None if self.done else "stream_truncated"
