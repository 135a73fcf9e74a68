"""Model pairs shared by many requests: each loaded once, reused read-only, the least recent evicted.

Requests never change a shared pair: each builds its own hybrid (a view over the pair's layers).
Pairs are evicted past a count (capacity) or a memory budget, reserved before a load; never one a
request in flight is using. A request for an evicted pair gets PairEvicted unless it asks to load
(only the Load button does), so a stale click never reloads one.
The fair lock gives model computations turns, for callers whose computations must not overlap.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from slr_core.crc.prompts import CRCPrompt, EncodedPrompts, default_prompts, encode_prompts
from slr_core.errors import InputError, SLRError
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


MAX_ENCODINGS = 8  # prompt sets kept encoded per pair (visitors' uploads would otherwise pile up)


@dataclass
class LoadedPair:
    """A loaded pair with what the app derives from it once: the paper's CRC prompts, layer drift, and
    any other prompt set a visitor chose, encoded once for this pair's tokenizer."""

    pair: ModelPair
    encoded: EncodedPrompts
    drift: list[float]
    encodings: OrderedDict = field(default_factory=OrderedDict)

    def encoded_for(self, prompts: tuple[CRCPrompt, ...] | None) -> EncodedPrompts:
        """`prompts` encoded for this pair (None: the paper's set); PromptSetError if the tokenizer cannot
        say an answer. Kept for the MAX_ENCODINGS most recent sets."""
        if prompts is None or tuple(prompts) == tuple(self.encoded.prompts):
            return self.encoded
        key = tuple(prompts)
        encoded = self.encodings.get(key)
        if encoded is None:  # two requests may both encode it: same result, no lock held while encoding
            encoded = encode_prompts(self.pair.tokenizer, list(key))
            self.encodings[key] = encoded
            while len(self.encodings) > MAX_ENCODINGS:
                self.encodings.pop(next(iter(self.encodings)), None)
        return encoded


class PairEvicted(SLRError):
    """A request for a pair that is not loaded (evicted, or the server restarted): load it again."""


class ServerBusy(SLRError):
    """No room for another pair: every loaded pair is in use by a request in flight."""


# A pair's identity: each source as (kind, location, revision), as resolved by the policy, and the
# settings; so "dir", "./dir" and " dir " are one pair, not three that evict each other.
ResolvedKey = tuple[tuple[str, str, str | None], tuple[str, str, str | None], Settings]


class PairRegistry:
    """The most recently used pairs, keyed by their resolved sources and settings, within a count and a
    memory budget (bytes of both models' weights; None: no budget); one loader per pair. A load
    reserves its slot and its estimated bytes before any weights load; a pair that a request is
    `using` is never evicted (a load that would need it gets ServerBusy). `policy` rules the loads."""

    def __init__(
        self, capacity: int | None = 2, budget_bytes: int | None = None, policy: HostedPolicy | None = None
    ) -> None:
        self.capacity, self.budget_bytes, self.policy = capacity, budget_bytes, policy or HostedPolicy()
        self._entries: OrderedDict[ResolvedKey, LoadedPair] = OrderedDict()
        self._sizes: dict[ResolvedKey, int] = {}
        self._reserved: dict[ResolvedKey, int] = {}  # loads under way: their estimated bytes
        self._users: Counter[ResolvedKey] = Counter()  # requests in flight per pair
        self._lock = threading.Lock()
        self._loading: dict[ResolvedKey, threading.Lock] = {}

    @classmethod
    def from_policy(cls, policy: HostedPolicy) -> PairRegistry:
        """A registry with the policy's pair count (SLR_MAX_PAIRS) and memory budget (SLR_PAIR_MEMORY_GB)."""
        return cls(policy.max_pairs, policy.pair_memory_bytes, policy)

    def follow(self, policy: HostedPolicy) -> None:
        """Rule later loads by `policy`, with its pair count and memory budget (e.g. once flags are read)."""
        with self._lock:
            self.capacity, self.budget_bytes, self.policy = policy.max_pairs, policy.pair_memory_bytes, policy
            self._evict()

    def resolve(self, key: PairKey) -> ResolvedKey:
        """The pair's identity: both sources as the policy resolves them (text only, nothing loaded);
        a source the policy refuses, or the same model as both, is refused here."""
        pre, post, settings = key
        sources = [self.policy.source(spec) for spec in (pre, post)]
        resolved = tuple((s.kind, s.location, s.revision) for s in sources)
        if resolved[0] == resolved[1]:
            raise InputError(
                f"The pre-trained and post-trained models are the same ('{str(pre).strip()}'): every hybrid "
                "would be that model. Give the base model and its post-trained counterpart."
            )
        return (*resolved, settings)

    def get(self, key: PairKey, load: bool = True) -> LoadedPair:
        """The loaded pair for `key`, loading it (once, however many ask) if needed.

        load=False, for every request but the Load button's: PairEvicted instead of loading."""
        resolved = self.resolve(key)
        with self._lock:
            if resolved in self._entries:
                self._entries.move_to_end(resolved)
                self._evict()  # limits may have shrunk since it loaded (follow)
                return self._entries[resolved]
            if not load:
                raise PairEvicted(
                    f"The pair {key[0]} / {key[1]} is no longer loaded on this server (it was unloaded to "
                    "make room for other pairs, or the server restarted): press Load pair to load it again."
                )
            loader = self._loading.setdefault(resolved, threading.Lock())
        with loader:
            with self._lock:
                if resolved in self._entries:
                    return self._entries[resolved]
                self._make_room(resolved, 0)  # a slot, before anything loads
                self._reserved[resolved] = 0
            try:
                entry = load_entry(
                    *key, policy=self.policy, reserve=lambda size: self._reserve(resolved, size)
                )
                size = pair_bytes(entry.pair)
            finally:
                with self._lock:
                    self._reserved.pop(resolved, None)
                    self._loading.pop(resolved, None)
            with self._lock:
                self._entries[resolved], self._sizes[resolved] = entry, size
                self._evict()
            return entry

    @contextmanager
    def using(self, key: PairKey) -> Iterator[LoadedPair]:
        """The loaded pair (PairEvicted if it is not), never evicted while the block runs: a request
        in flight keeps its pair however many other pairs are loaded meanwhile."""
        resolved = self.resolve(key)
        with self._lock:
            entry = self._entries.get(resolved)
            if entry is None:
                raise PairEvicted(
                    f"The pair {key[0]} / {key[1]} is no longer loaded on this server (it was unloaded to "
                    "make room for other pairs, or the server restarted): press Load pair to load it again."
                )
            self._users[resolved] += 1
            self._entries.move_to_end(resolved)
        try:
            yield entry
        finally:
            with self._lock:
                self._users[resolved] -= 1
                if self._users[resolved] <= 0:
                    del self._users[resolved]
                self._evict()

    def _reserve(self, resolved: ResolvedKey, size: int) -> None:
        # Called by the load once the sources are checked, before any weights load.
        with self._lock:
            self._reserved[resolved] = 0
            self._make_room(resolved, size)
            self._reserved[resolved] = size

    def _make_room(self, resolved: ResolvedKey, size: int) -> None:
        """Evict idle pairs, oldest first, until one more pair of `size` bytes fits; ServerBusy if the
        pairs that would have to go are in use. A pair alone (nothing else loaded or loading) always
        loads: the size cap (SLR_MAX_PARAMS) is what refuses a model too large for the server."""

        def fits() -> bool:
            count = len(self._entries) + len(self._reserved.keys() - {resolved}) + 1
            used = self.loaded_bytes() + sum(self._reserved.values()) - self._reserved.get(resolved, 0)
            over_count = self.capacity is not None and count > self.capacity
            over_budget = self.budget_bytes is not None and used + size > self.budget_bytes
            alone = count == 1
            return alone or not (over_count or over_budget)

        while not fits():
            idle = next((key for key in self._entries if not self._users[key]), None)
            if idle is None:
                raise ServerBusy(
                    "The server is busy: every model pair it can hold is in use by other visitors' requests "
                    "right now. Try again in a minute, or run SLR Explorer locally."
                )
            self._drop(idle)

    def _evict(self) -> None:
        # Oldest idle first, never the pair just loaded (the last) nor one in use: a pair alone over the
        # budget still loads, since the size cap (SLR_MAX_PARAMS) refuses a model before it downloads.
        while self._over_count() or self._over_budget():
            idle = [key for key in list(self._entries)[:-1] if not self._users[key]]
            if not idle:
                return
            self._drop(idle[0])

    def _drop(self, key: ResolvedKey) -> None:
        self._entries.pop(key, None)
        self._sizes.pop(key, None)

    def _over_count(self) -> bool:
        return self.capacity is not None and len(self._entries) > self.capacity

    def _over_budget(self) -> bool:
        return self.budget_bytes is not None and self.loaded_bytes() > self.budget_bytes

    def loaded_bytes(self) -> int:
        """Memory the loaded pairs' weights take, in bytes."""
        return sum(self._sizes.values())

    def __contains__(self, key: PairKey) -> bool:
        resolved = self.resolve(key)
        with self._lock:
            return resolved in self._entries


def pair_bytes(pair: ModelPair) -> int:
    """Bytes of both models' parameters and buffers, each storage counted once (tied weights share one)."""
    return weight_bytes(pair.pre, pair.post)


def load_entry(
    pre: str,
    post: str,
    settings: Settings,
    policy: HostedPolicy | None = None,
    reserve: Callable[[int], None] | None = None,
) -> LoadedPair:
    """Load a pair (under `policy`'s rules, `reserve` told its size first), encode the CRC prompts, and
    measure layer drift."""
    pair = load_pair(pre, post, settings, policy, reserve)
    return LoadedPair(pair, encode_prompts(pair.tokenizer, default_prompts()), layer_drift(pair))
