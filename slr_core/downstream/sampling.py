"""Sampling from a model the way the paper does: min-p, temperature, explicit top-k/top-p off.

`sample` returns the replies; `stream_samples` yields them as they grow, through transformers' own
hooks: a streamer receives each new token, and a stopping criterion ends generation once a stop
event is set. Both seed torch the same way, so a streamed run ends with exactly `sample`'s replies.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from slr_core import inputs
from slr_core.downstream.metrics import answer_counts, distinct_n, embedding_dissimilarity
from slr_core.models.chat import encode_chat, end_of_turn_ids

JOIN_SECONDS = 2.0  # how long closing a stream waits for its generation to stop


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings; every one is passed to generate so generation_config adds nothing."""

    num_samples: int = 8
    min_p: float = 0.1
    temperature: float = 1.0
    max_new_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        # InputError (a ValueError) names the setting and its range; docs/inputs.md lists them.
        inputs.whole_number(self.num_samples, "num_samples", 1, 256)
        inputs.real_number(self.min_p, "min_p", 0.0, 1.0, high_open=True)
        inputs.temperature(self.temperature)
        inputs.whole_number(self.max_new_tokens, "max_new_tokens", 1, 2048)
        inputs.seed(self.seed)

    @classmethod
    def from_values(cls, num_samples, min_p, temperature, max_new_tokens, seed) -> SamplingSettings:
        """Settings from loosely typed values (a form's numbers); InputError says which one is bad."""
        return cls(
            inputs.whole_number(num_samples, "num_samples"),
            inputs.real_number(min_p, "min_p"),
            inputs.real_number(temperature, "temperature"),
            inputs.whole_number(max_new_tokens, "max_new_tokens"),
            inputs.whole_number(seed, "seed"),
        )

    def as_dict(self) -> dict:
        """Plain settings, to store beside results."""
        return asdict(self)


@dataclass(frozen=True)
class Replies:
    """Sampled replies, and for each whether it ended its turn by itself before the token cap."""

    texts: list[str]
    ended: list[bool]
    tokens: list[int] = field(
        default_factory=list
    )  # each reply's new tokens, its end-of-turn token not counted

    @property
    def stop_share(self) -> float:
        """Share of replies that ended by themselves (an end-of-turn token) before the cap."""
        return sum(self.ended) / len(self.ended) if self.ended else float("nan")

    @property
    def mean_tokens(self) -> float:
        """Mean reply length in tokens."""
        return sum(self.tokens) / len(self.tokens) if self.tokens else float("nan")


@torch.inference_mode()
def _generate(model, tokenizer, instruction: str, settings: SamplingSettings, **hooks) -> Replies:
    """`num_samples` replies in one batched generate call; `hooks` are generate's streamer/stopping_criteria."""
    prompt = encode_chat(tokenizer, instruction)
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt] * settings.num_samples, device=device)
    stop_ids = end_of_turn_ids(tokenizer)  # the same E that strict CRC scores
    torch.manual_seed(settings.seed)  # one seed drives the whole batch, so a run reproduces
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=settings.temperature,
        min_p=settings.min_p or None,
        top_k=0,
        top_p=1.0,
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0],
        use_cache=True,
        **hooks,
    )
    return _replies(tokenizer, output[:, input_ids.shape[1] :], stop_ids)


def sample(model, tokenizer, instruction: str, settings: SamplingSettings) -> list[str]:
    """`num_samples` replies to `instruction`, all in one batched generate call."""
    return _generate(model, tokenizer, instruction, settings).texts


def sample_replies(model, tokenizer, instruction: str, settings: SamplingSettings) -> Replies:
    """`sample`'s replies, with whether each ended by itself before `max_new_tokens`."""
    return _generate(model, tokenizer, instruction, settings)


class _TokenQueue(BaseStreamer):
    """generate's streamer: each step's new tokens (one per sample) go to a queue; the prompt is skipped."""

    def __init__(self, updates: queue.Queue) -> None:
        self.updates, self.prompt_seen = updates, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate first puts the prompt ids
            self.prompt_seen = True
            return
        self.updates.put(("tokens", value.reshape(-1).tolist()))

    def end(self) -> None:
        pass  # the worker reports the end itself, with the final replies


class _StopWhenSet(StoppingCriteria):
    """Ends every sample at once when any of the events is set (e.g. a visitor stopped waiting)."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        """Whether generation should stop."""
        return any(event.is_set() for event in self.events)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_samples(
    model,
    tokenizer,
    instruction: str,
    settings: SamplingSettings,
    stop_event: threading.Event | None = None,
    turn: AbstractContextManager | None = None,
    every: float = 0.0,
) -> Iterator[Replies]:
    """The replies as they grow (at most one update per `every` seconds), then `sample_replies`' final ones.

    Generation runs in a worker thread inside `turn` (e.g. a lock giving the device its turn). Setting
    `stop_event`, or closing this iterator, stops generation at its next token; a stopped run yields
    no final replies. Errors in generation are raised here.
    """
    closed = threading.Event()  # set when this iterator is closed or dropped
    stop = _StopWhenSet(closed, *([stop_event] if stop_event is not None else []))
    updates: queue.Queue = queue.Queue()
    hooks = {"streamer": _TokenQueue(updates), "stopping_criteria": StoppingCriteriaList([stop])}

    def work() -> None:
        try:
            with turn or nullcontext():
                if stop.is_set():  # stopped while waiting for its turn
                    updates.put(("done", None))
                    return
                replies = _generate(model, tokenizer, instruction, settings, **hooks)
            updates.put(("done", None if stop.is_set() else replies))
        except Exception as error:  # handed to the iterating thread, which raises it
            updates.put(("error", error))

    worker = threading.Thread(target=work, daemon=True, name="stream-samples")
    worker.start()
    stop_ids, columns, last_sent = end_of_turn_ids(tokenizer), [], 0.0
    try:
        while True:
            kind, payload = updates.get()
            while kind == "tokens" and not updates.empty():  # catch up: only the newest texts matter
                columns.append(payload)
                kind, payload = updates.get()
            if kind == "error":
                raise payload
            if kind == "done":
                if payload is not None:
                    yield payload
                return
            columns.append(payload)
            if time.monotonic() - last_sent >= every:
                last_sent = time.monotonic()
                yield _replies(tokenizer, torch.tensor(columns).T, stop_ids)
    finally:
        closed.set()
        worker.join(timeout=JOIN_SECONDS)  # generation ends at its next token (unless still waiting its turn)


def _replies(tokenizer, new_ids: torch.Tensor, stop_ids: list[int]) -> Replies:
    # A reply is cut at its first end-of-turn token; generate pads the rows that ended before the others.
    texts, ended, tokens = [], [], []
    for row in new_ids.tolist():
        cut = next((k for k, t in enumerate(row) if t in stop_ids), None)
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        ended.append(cut is not None)
        tokens.append(len(row) if cut is None else cut)
    return Replies(texts, ended, tokens)


def sample_statistics(texts: list[str]) -> dict[str, float]:
    """Distinct answers, distinct-1/-2 and mean pairwise embedding dissimilarity of samples."""
    return {
        "distinct answers": len(answer_counts(texts)),
        "distinct-1": distinct_n(texts, 1),
        "distinct-2": distinct_n(texts, 2),
        "embedding dissimilarity": embedding_dissimilarity(texts),
    }
