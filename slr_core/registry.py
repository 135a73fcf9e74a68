"""Model pairs shared by many requests: each loaded once, reused read-only, the least recent evicted.

Requests never change a shared pair: each builds its own hybrid (a view over the pair's layers).
The fair lock gives model computations turns, for callers whose computations must not overlap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from .crc import EncodedPrompts, default_prompts, encode_prompts
from .drift import layer_drift
from .models import ModelPair, load_pair
from .settings import Settings

PairKey = tuple[str, str, Settings]


class FairLock:
    """A first-come, first-served lock: a sweep re-taking it each step cannot starve a sampler."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> FairLock:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._condition.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc_info) -> None:
        with self._condition:
            self._serving += 1
            self._condition.notify_all()


@dataclass
class LoadedPair:
    """A loaded pair with what the app derives from it once: CRC prompts and layer drift."""

    pair: ModelPair
    encoded: EncodedPrompts
    drift: list[float]


class PairRegistry:
    """The few most recently used pairs, keyed by (pre, post, settings); one loader per key."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[PairKey, LoadedPair] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[PairKey, threading.Lock] = {}

    def get(self, key: PairKey) -> LoadedPair:
        """The loaded pair for `key`, loading it (once, however many ask) if needed."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loader = self._loading.setdefault(key, threading.Lock())
        with loader:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            entry = load_entry(*key)
            with self._lock:
                self._entries[key] = entry
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
                self._loading.pop(key, None)
            return entry

    def __contains__(self, key: PairKey) -> bool:
        with self._lock:
            return key in self._entries


def load_entry(pre: str, post: str, settings: Settings) -> LoadedPair:
    """Load a pair, encode the CRC prompts, and measure layer drift."""
    pair = load_pair(pre, post, settings)
    return LoadedPair(pair, encode_prompts(pair.tokenizer, default_prompts()), layer_drift(pair))
