"""Model pairs shared by many requests: each loaded once, reused read-only, the least recent evicted.

Requests never change a shared pair: each builds its own hybrid (a view over the pair's layers).
Pairs are evicted past a count (capacity) or a memory budget; a request for an evicted pair gets
PairEvicted unless it asks to load (only the Load button does), so a stale click never reloads one.
The fair lock gives model computations turns, for callers whose computations must not overlap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from slr_core.crc.prompts import EncodedPrompts, default_prompts, encode_prompts
from slr_core.errors import SLRError
from slr_core.models.hosting import HostedPolicy
from slr_core.models.loading import ModelPair, load_pair, weight_bytes
from slr_core.models.settings import Settings
from slr_core.slr.drift import layer_drift

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


class PairEvicted(SLRError):
    """A request for a pair that is not loaded (evicted, or the server restarted): load it again."""


class PairRegistry:
    """The most recently used pairs, keyed by (pre, post, settings), within a count and a memory budget
    (bytes of both models' weights; None: no budget); one loader per key. `policy` rules the loads."""

    def __init__(
        self, capacity: int | None = 2, budget_bytes: int | None = None, policy: HostedPolicy | None = None
    ) -> None:
        self.capacity, self.budget_bytes, self.policy = capacity, budget_bytes, policy or HostedPolicy()
        self._entries: OrderedDict[PairKey, LoadedPair] = OrderedDict()
        self._sizes: dict[PairKey, int] = {}
        self._lock = threading.Lock()
        self._loading: dict[PairKey, threading.Lock] = {}

    @classmethod
    def from_policy(cls, policy: HostedPolicy) -> PairRegistry:
        """A registry with the policy's pair count (SLR_MAX_PAIRS) and memory budget (SLR_PAIR_MEMORY_GB)."""
        return cls(policy.max_pairs, policy.pair_memory_bytes, policy)

    def follow(self, policy: HostedPolicy) -> None:
        """Rule later loads by `policy`, with its pair count and memory budget (e.g. once flags are read)."""
        with self._lock:
            self.capacity, self.budget_bytes, self.policy = policy.max_pairs, policy.pair_memory_bytes, policy
            self._evict()

    def get(self, key: PairKey, load: bool = True) -> LoadedPair:
        """The loaded pair for `key`, loading it (once, however many ask) if needed.

        load=False, for every request but the Load button's: PairEvicted instead of loading."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._evict()  # limits may have shrunk since it loaded (follow)
                return self._entries[key]
            if not load:
                raise PairEvicted(
                    f"The pair {key[0]} / {key[1]} is no longer loaded on this server (it was unloaded to "
                    "make room for other pairs, or the server restarted): press Load pair to load it again."
                )
            loader = self._loading.setdefault(key, threading.Lock())
        with loader:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            entry = load_entry(*key, policy=self.policy)
            with self._lock:
                self._entries[key], self._sizes[key] = entry, pair_bytes(entry.pair)
                self._evict()
                self._loading.pop(key, None)
            return entry

    def _evict(self) -> None:
        # Oldest first, never the pair just loaded (the last): a pair alone over the budget still
        # loads, since the size cap (SLR_MAX_PARAMS) is what refuses a model before it downloads.
        while len(self._entries) > 1 and (self._over_count() or self._over_budget()):
            key, _ = self._entries.popitem(last=False)
            self._sizes.pop(key, None)

    def _over_count(self) -> bool:
        return self.capacity is not None and len(self._entries) > self.capacity

    def _over_budget(self) -> bool:
        return self.budget_bytes is not None and self.loaded_bytes() > self.budget_bytes

    def loaded_bytes(self) -> int:
        """Memory the loaded pairs' weights take, in bytes."""
        return sum(self._sizes.values())

    def __contains__(self, key: PairKey) -> bool:
        with self._lock:
            return key in self._entries


def pair_bytes(pair: ModelPair) -> int:
    """Bytes of both models' parameters and buffers, each storage counted once (tied weights share one)."""
    return weight_bytes(pair.pre, pair.post)


def load_entry(pre: str, post: str, settings: Settings, policy: HostedPolicy | None = None) -> LoadedPair:
    """Load a pair (under `policy`'s rules), encode the CRC prompts, and measure layer drift."""
    pair = load_pair(pre, post, settings, policy)
    return LoadedPair(pair, encode_prompts(pair.tokenizer, default_prompts()), layer_drift(pair))
