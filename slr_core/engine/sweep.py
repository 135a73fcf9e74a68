"""The exact, shared-work sweep of CRC scores over every interval [i, j].

For a fixed end j, every start i <= j needs the same post-trained tail j+1..N-1, and for a fixed
start the restored stack i..j grows one pre-trained layer at a time. So the sweep walks j upwards,
keeping one hidden state per live start: each step applies pre-trained layer j to all live starts
at once, then runs the post-trained tail on them, batched. Inputs below layer i come from one
post-trained pass. That is ~N^3/6 layer evaluations instead of the naive loop's ~N^3/2.

Layers are called as the model itself calls them, with the arguments capture.py recorded, so no
architecture's forward is rewritten here; stack.py runs them, sharing the prompts' common prefix
once per state and narrowing the last layer to the kept positions (prefix.py), each only where a
pass of the post model proves it exact. Each prompt row also carries its valid answer tokens as
branches (branches.py), so the same pass gives p(end | prompt, answer) for strict CRC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from slr_core.crc.branches import Batch, make_batch
from slr_core.crc.prompts import EncodedPrompts
from slr_core.crc.trie import Trie
from slr_core.crc.trie_scores import TrieWalk
from slr_core.engine import scoring
from slr_core.engine.capture import Reference, check_branches, check_tail
from slr_core.engine.layouts import checked_scores, rescored, widen_layout
from slr_core.engine.scoring import Heads, model_scores, score_kept
from slr_core.engine.stack import Engine, State, Stats, choose_layout
from slr_core.models import precision
from slr_core.models.architectures import decoder_layers
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import ModelPair
from slr_core.slr.hybrid import build_hybrid, restoring_layer
from slr_core.slr.intervals import check_interval, check_mode

__all__ = [
    "Batch",
    "Stats",
    "checked_scores",
    "make_batch",
    "model_scores",
    "sweep_intervals",
    "widen_layout",
]


@dataclass
class IntervalScores:
    """Per-prompt CRC scores [P, 4] (Q, D, stop, strict quality) of the hybrid [start, end]."""

    start: int
    end: int
    per_prompt: torch.Tensor = field(repr=False)


@torch.inference_mode()
def sweep_intervals(
    pair: ModelPair,
    encoded: EncodedPrompts,
    wanted: set[tuple[int, int]],
    batch_tokens: int = 16384,
    stats: Stats | None = None,
    mode: str = "layer",
    reference: Reference | None = None,
    strict: bool = True,
    share: bool = True,
) -> Iterator[IntervalScores]:
    """Yield exact per-prompt scores for each interval in `wanted`, column by column.

    `mode` says what comes back in each restored layer (hybrid.RESTORE_MODES); the stack grown for a
    start is then made of those mixed layers (post-trained layer, pre-trained attention or MLP).
    Without `strict` the rows carry no branches and only (Q, D) [P, 2] come back. `share` allows the
    shared prefix and the narrowed last layer (stack.py), each used only once proven on the post model.
    """
    num_layers, stats = pair.num_layers, stats or Stats()
    check_mode(mode)
    for start, end in wanted:
        check_interval(start, end, num_layers)
    if reference is None:  # a caller with a reference has laid out (and widened) its batch already
        encoded = widen_layout(pair, encoded)
    # The post model's capture is the same for every interval: reuse the caller's if it has one.
    reference = reference or Reference(
        pair.post, make_batch(encoded, pair.tokenizer.pad_token_id, pair.device, branches=strict)
    )
    batch = reference.batch
    post_layers = list(decoder_layers(pair.post))
    pre_layers = [
        restoring_layer(post, pre, mode) for post, pre in zip(post_layers, decoder_layers(pair.pre))
    ]
    with stats.timed("capture"):
        cap = reference.capture(stats)
        check_tail(pair.post, cap, batch)
        check_branches(pair.post, cap, batch)
    with stats.timed("checks"):
        engine = Engine(cap, batch, batch_tokens, stats, choose_layout(post_layers, cap, batch, share))
    last_needed = {}
    for start, end in wanted:
        last_needed[start] = max(end, last_needed.get(start, -1))
    with precision.head_held(pair.post):  # split weights: one float32 head for all the head calls
        yield from _columns(
            pair, encoded, wanted, engine, last_needed, post_layers, pre_layers, stats, (strict, mode)
        )


def _columns(pair, encoded, wanted, engine: Engine, last_needed, post_layers, pre_layers, stats, how):
    (strict, mode), num_layers, end_ids = how, pair.num_layers, end_of_turn_ids(pair.tokenizer)
    active: dict[int, State] = {}  # start -> hidden states after pre layers start..j-1
    # Neighbouring hybrids favour the same spellings: a prompt relaid again starts from the layout its
    # last relay ended with (a widening of the shared one), not from the shared layout.
    seeds: dict[int, Trie] = {}
    progress = tqdm(total=len(wanted), desc="CRC sweep", unit="interval", leave=False)
    for end in range(num_layers):
        if end in last_needed:
            active[end] = engine.initial(end)
        if not active:
            continue
        starts = sorted(active)
        column = [i for i in starts if (i, end) in wanted]
        # The last layer is only ever a stack's end: it runs as part of the tail, narrowed.
        tail = post_layers[end + 1 :] if end + 1 < num_layers else pre_layers[end:]
        if end + 1 < num_layers:
            with stats.timed("extension"):
                states = engine.apply(pre_layers[end : end + 1], end, [active[i] for i in starts])
            active = dict(zip(starts, states))
        if column:
            first = end + 1 if end + 1 < num_layers else end
            with stats.timed("tails"):
                finals = engine.apply(tail, first, [active[i] for i in column], keep=True)
            for start, kept in zip(column, finals):
                progress.update(1)
                walks: list[TrieWalk] = []
                heads: list[Heads] = [{} for _ in range(len(encoded))]
                with stats.timed("head"):
                    per_prompt = score_kept(pair.post, kept, encoded, end_ids, stats, strict, walks, heads)
                if any(walk.omitted_share() > scoring.OMITTED_TOLERANCE for walk in walks):
                    with stats.timed("relaid"):
                        hybrid = build_hybrid(pair, start, end, mode)
                        per_prompt = rescored(pair, hybrid, encoded, per_prompt, walks, stats, heads, seeds)
                yield IntervalScores(start, end, per_prompt)
        active = {i: h for i, h in active.items() if last_needed[i] > end}
    progress.close()
