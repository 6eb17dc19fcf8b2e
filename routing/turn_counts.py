"""Token counts of a conversation's earlier messages and tool definitions, remembered
per caller.

An agent sends its whole conversation again on every turn, so a gateway that counts
each prompt exactly (the limits' token reservation, the prompt guard near its limit)
would count a conversation's first message once per turn: O(n²) tokenization over
n turns, and for a long conversation the largest cost of a request (tiktoken counts
~1-2 million tokens a second; a 20,000-token history is 10-20 ms of CPU a turn).
Remembered, each turn counts what it adds.

What is remembered, and why it cannot leak or grow:

- Only messages before the last one: the conversation so far, which the next turn
  sends again. The last message is usually new, so remembering it would only push
  out counts that will be asked for. And the tool definitions (their JSON text, one
  count for all of a request's), which an agent sends unchanged every turn: twenty
  function tools are ~2,000 tokens, most of a short turn's counting.
- A count is keyed by a hash of the encoding's name and the text (Python's keyed
  SipHash: nobody without the process's key can make two texts collide), never by
  the text itself: nothing a caller sent is kept, only integers.
- Per caller (its API key's identity): a caller's counts are its own, so how fast a
  count comes back tells nobody whether another caller sent the same text.
- Bounded in count, so in bytes: `MAX_CALLERS` callers (the least recently seen is
  forgotten) of `MAX_COUNTS` counts each (the least recently used is forgotten),
  ~100 bytes a count: at most ~13 MB per worker. A caller that floods its own counts
  pushes out only its own. Callers past `MAX_CALLERS` (a tenant with more keys in use
  than that, say) push out the least recently seen callers' counts: a cost, never a
  wrong count, since a forgotten count is counted again, exactly.

Thread-safe: a large prompt is counted in a worker thread (tiktoken releases the
GIL) while the event loop counts others.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING

from routing.tokens import count_text

if TYPE_CHECKING:
    import tiktoken

#: Callers whose counts are kept, at most (one per API key identity, or one for
#: a gateway without keys).
MAX_CALLERS = 128
#: Counts kept per caller, at most: a hundred conversations of a hundred messages.
MAX_COUNTS = 1024


class CallerCounts:
    """One caller's remembered counts, least recently used first."""

    __slots__ = ("_counts", "_limit", "_lock")

    def __init__(self, limit: int = MAX_COUNTS) -> None:
        self._counts: dict[int, int] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, text: str, encoding: tiktoken.Encoding) -> int:
        """`count_text(text, encoding)`, remembered."""
        key = hash((encoding.name, text))
        counts = self._counts
        with self._lock:
            found = counts.pop(key, None)
            if found is not None:
                counts[key] = found  # now the most recently used
                return found
        tokens = count_text(text, encoding)
        with self._lock:
            counts[key] = tokens
            if len(counts) > self._limit:
                del counts[next(iter(counts))]
        return tokens


class TurnCounts:
    """Every caller's `CallerCounts`, for the stages that count prompts."""

    def __init__(self, max_callers: int = MAX_CALLERS, max_counts: int = MAX_COUNTS) -> None:
        self.max_callers = max_callers
        self.max_counts = max_counts
        self._callers: dict[Hashable, CallerCounts] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._callers)

    def of(self, caller: Hashable) -> CallerCounts:
        """`caller`'s counts (made on its first prompt; the least recently seen
        caller's are forgotten past `max_callers`)."""
        callers = self._callers
        with self._lock:
            found = callers.pop(caller, None)
            if found is None:
                found = CallerCounts(self.max_counts)
                if len(callers) >= self.max_callers:
                    del callers[next(iter(callers))]
            callers[caller] = found
            return found
