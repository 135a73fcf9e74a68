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
from torch import nn
from tqdm.auto import tqdm

from slr_core.crc.branches import Batch, make_batch
from slr_core.crc.prompts import EncodedPrompts, answer_probabilities, first_token_scores
from slr_core.crc.trie import MAX_TOTAL_TRIE_NODES, MAX_TRIE_NODES, widen_trie
from slr_core.crc.trie_scores import TrieWalk
from slr_core.engine.capture import (
    Reference,
    capture,
    check_branches,
    check_tail,
    final_logits,
    kept_positions,
    replay,
)
from slr_core.engine.stack import Engine, State, Stats, choose_layout
from slr_core.errors import PromptSetError
from slr_core.models import precision
from slr_core.models.architectures import decoder_layers
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import ModelPair
from slr_core.slr.hybrid import build_hybrid, restoring_layer
from slr_core.slr.intervals import check_interval, check_mode

__all__ = ["Batch", "Stats", "make_batch", "model_scores", "sweep_intervals"]

# The LM head over a branch (a full-vocabulary softmax) is most of the strict-CRC cost, so branches
# are scored from likely to unlikely, tier by tier (p(t|x) >= each of SKIP_TIERS in turn), and a
# prompt stops once its unscored answer mass is at most SKIP_RELATIVE of the strict quality found
# so far: as P_end <= 1, the skipped branches then change strict quality by at most that fraction.
# In a trie an unvisited node bounds its whole subtree, so it counts against Q as well where no
# answer is complete above it (crc/trie_scores.py, TrieWalk.settled).
SKIP_TIERS = (1e-4, 1e-8, 0.0)
SKIP_RELATIVE = 1e-5
# Spellings a trie over the cap leaves out (crc/trie.py, pruned_trie): their mass is measured at every
# interval, and a result whose left-out mass exceeds this fraction of a prompt's Q is refused.
OMITTED_TOLERANCE = 1e-5
HEAD_ROWS = 256  # LM-head rows per matmul: 256 rows x 262k float32 logits is 268 MB
# One prompt's heads on one model, kept between layouts of it: (node, its token, its parent) ->
# (P_end, log p of each live token). A node attends only to the prompt and its ancestors, so its head
# is the same in every layout that holds it, and widening only appends nodes (crc/trie.py).
Heads = dict[tuple[int, int, int], tuple[float, dict[int, float]]]


def score_kept(
    model: nn.Module,
    kept: torch.Tensor,
    encoded: EncodedPrompts,
    end_ids: list[int],
    stats: Stats,
    strict: bool = True,
    walks: list[TrieWalk] | None = None,
    heads: list[Heads] | None = None,
) -> torch.Tensor:
    """Per-prompt (Q, D, stop, strict quality, answer_diversity) [P, 5] from kept final states
    [P, 1 + K, d] (the last prompt position, then each trie node); (Q, D) [P, 2] without strict.

    Given a `walks` list, each prompt's TrieWalk is appended to it and left-out mass is not refused
    (widen_layout reads it). Given `heads` (one per prompt), nodes found there are not run again and
    the nodes run are added."""
    rows = list(range(kept.shape[0]))
    root_logits = final_logits(model, kept[:, 0])
    stats.head_rows += len(rows)
    if not strict and encoded.is_flat:  # first tokens only: the root's head says it all
        return first_token_scores(answer_probabilities(root_logits, encoded, rows), encoded, rows)
    root_probs = torch.softmax(root_logits.double(), dim=-1)
    found = [
        TrieWalk(encoded.tries[p], len(encoded.prompts[p].valid), root_probs[b]) for b, p in enumerate(rows)
    ]
    walks, collected = found, walks
    if collected is not None:
        collected.extend(found)
    for tier in SKIP_TIERS:
        while True:  # a visited node makes its children's probabilities known: visit them in this tier
            wanted = [(b, node) for b, walk in enumerate(walks) if not walk.settled(SKIP_RELATIVE)
                      for node in walk.wanted(tier)]  # fmt: skip
            if not wanted:
                break
            _visit(model, kept, walks, wanted, end_ids, stats, heads)
    stats.branches_skipped += sum(int((~walk.headed).sum()) for walk in walks)
    share = max((walk.omitted_share() for walk in walks), default=0.0)
    stats.omitted_mass = max([stats.omitted_mass, *(walk.omitted for walk in walks)])
    stats.omitted_share = max(stats.omitted_share, share)
    if share > OMITTED_TOLERANCE and collected is None:
        raise _left_out_error(share)
    scores = torch.stack([walk.scores() for walk in walks])
    return scores if strict else scores[:, :2]


def _left_out_error(share: float) -> PromptSetError:
    return PromptSetError(
        f"The answer spellings left out of the trie layout carry {share:.3g} of a prompt's Q here, "
        f"over the {OMITTED_TOLERANCE:g} the sweep allows: these numbers would not be exact. Use "
        "shorter answers (their every spelling is then laid out)."
    )


# Widening stops once the post and pre models leave out at most WIDEN_TARGET of each prompt's Q. Each
# round lays out the heaviest left-out continuations, largest first, until what stays out is a tenth
# of that; a new node's own continuations are measured in the next round, so deep spellings take several.
WIDEN_ROUNDS = 8
WIDEN_TARGET = OMITTED_TOLERANCE / 10


# Widening pads every prompt's row to the widest one: prompts are widened in groups of this many,
# of similar widths (prompts are independent, so the groups' layouts are the same as one set's).
WIDEN_GROUP = 8


def widen_layout(pair: ModelPair, encoded: EncodedPrompts) -> EncodedPrompts:
    """`encoded` with its pruned tries widened until the post and pre models leave out little.

    Each round scores both models (one pass each) and lays out, per prompt and model, the heaviest
    left-out continuations; it stops at WIDEN_TARGET, after WIDEN_ROUNDS, or at the node caps.
    Intervals are checked on their own as they are swept.
    """
    if not any(trie.omitted or trie.root_omitted for trie in encoded.tries):
        return encoded
    order = sorted(range(len(encoded)), key=lambda p: len(encoded.input_ids[p]) + len(encoded.tries[p]))
    groups = [order[lo : lo + WIDEN_GROUP] for lo in range(0, len(order), WIDEN_GROUP)]
    tries = list(encoded.tries)
    for group in tqdm(groups, desc="Widening answer tries", unit="group", leave=False):
        budget = MAX_TOTAL_TRIE_NODES * len(group) // len(encoded)
        widened = _widen_group(pair, encoded.subset(group), budget)
        for prompt, trie in zip(group, widened.tries):
            tries[prompt] = trie
    return encoded.with_tries(tries)


def _widen_group(pair: ModelPair, encoded: EncodedPrompts, budget: int) -> EncodedPrompts:
    models, end_ids = (pair.post, pair.pre), end_of_turn_ids(pair.tokenizer)
    heads = [[{} for _ in range(len(encoded))] for _ in models]  # per model: later rounds run new nodes only
    for _ in range(WIDEN_ROUNDS):
        if not any(trie.omitted or trie.root_omitted for trie in encoded.tries):
            break
        batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
        walks: list[TrieWalk] = []
        reference = Reference(pair.post, batch)
        for model, kept_heads in zip(models, heads):
            model_scores(model, encoded, batch, end_ids, reference=reference, walks=walks, heads=kept_heads)
        if max(walk.omitted_share() for walk in walks) <= WIDEN_TARGET:
            break
        widened = _widened(pair, encoded, walks, budget)
        if widened is None:
            break
        encoded = widened
    return encoded


def _widened(pair: ModelPair, encoded: EncodedPrompts, walks: list[TrieWalk], budget: int):
    # The layout with each prompt's heaviest left-out continuations (walks: one per prompt and model,
    # model by model) added; None if that passes a node cap or adds nothing.
    additions: list[set] = [set() for _ in encoded.tries]
    for k, walk in enumerate(walks):
        additions[k % len(encoded)].update(_heaviest_left_out(walk))
    tries = [
        widen_trie(pair.tokenizer, prompt.valid, trie, sorted(added)) if added else trie
        for prompt, trie, added in zip(encoded.prompts, encoded.tries, additions)
    ]
    too_big = sum(map(len, tries)) > budget or max(map(len, tries)) > MAX_TRIE_NODES
    return None if too_big or tries == encoded.tries else encoded.with_tries(tries)


def _heaviest_left_out(walk: TrieWalk) -> list[tuple[int, int]]:
    # (node, token) left out, heaviest first, until what remains is at most WIDEN_TARGET / 10 of Q.
    quality = float(walk.prob[walk.minimal & walk.known].sum())
    pieces = [(m, node, t) for node, tokens, masses in walk.left_out for t, m in zip(tokens, masses.tolist())]
    chosen, remaining = [], walk.omitted
    for mass, node, token in sorted(pieces, reverse=True):
        if remaining <= WIDEN_TARGET / 10 * quality:
            break
        chosen.append((node, token))
        remaining -= mass
    return chosen


def rescored(
    pair: ModelPair, model: nn.Module, encoded: EncodedPrompts, scores, walks, stats, heads
) -> torch.Tensor:
    """`scores` [P, C] of `model`, with every prompt whose layout leaves out over OMITTED_TOLERANCE of
    its Q (per `walks`) laid out again, widened on `model` itself until it leaves out no more than that.

    A hybrid far from both post and pre (say one that names an answer and never ends) may favour
    spellings neither model does: only its own prompts are redone, so the shared layout stays lean.
    PromptSetError if the widened layout still leaves out too much. `heads`: those `walks` ran, reused."""
    over = [p for p, walk in enumerate(walks) if walk.omitted_share() > OMITTED_TOLERANCE]
    if not over:
        return scores
    again = _scored_on_itself(pair, model, encoded.subset(over), stats, [heads[p] for p in over])
    stats.prompts_relaid += len(over)
    scores = scores.clone()
    scores[over] = again[:, : scores.shape[1]].to(scores.dtype)
    return scores


def _scored_on_itself(
    pair: ModelPair, model: nn.Module, encoded: EncodedPrompts, stats, heads
) -> torch.Tensor:
    # Widen round by round on `model` alone until it leaves out at most OMITTED_TOLERANCE of each
    # prompt's Q (the bar every result meets), and return the scores of the pass that shows it: that
    # pass is the scoring. The model records its own layer calls, so no post-model pass is replayed,
    # and each round runs the LM head only on nodes no earlier round (or `heads`' pass) ran it on.
    end_ids, share = end_of_turn_ids(pair.tokenizer), float("inf")
    for _ in range(WIDEN_ROUNDS + 1):
        batch, walks = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device), []
        scores = model_scores(model, encoded, batch, end_ids, stats, Reference(model, batch), walks, heads)
        share = max(walk.omitted_share() for walk in walks)
        if share <= OMITTED_TOLERANCE:
            return scores
        widened = _widened(pair, encoded, walks, MAX_TOTAL_TRIE_NODES)
        if widened is None:
            break
        encoded = widened
    raise _left_out_error(share)


def checked_scores(
    pair: ModelPair, model: nn.Module, encoded: EncodedPrompts, batch: Batch, stats=None, reference=None
):
    """`model_scores` of a whole model (post, pre, a soup), any prompt it pushes over the left-out
    tolerance laid out again for it (`rescored`)."""
    stats, walks, heads = stats or Stats(), [], [{} for _ in range(len(encoded))]
    end_ids = end_of_turn_ids(pair.tokenizer)
    scores = model_scores(model, encoded, batch, end_ids, stats, reference, walks, heads)
    return rescored(pair, model, encoded, scores, walks, stats, heads)


def _visit(
    model, kept, walks: list[TrieWalk], pairs: list[tuple[int, int]], end_ids, stats, heads=None
) -> None:
    # Each node's head: P_end(node) = the softmax mass on the end ids, and its live tokens' log p.
    if heads is not None:
        wanted, pairs = len(pairs), [(b, m) for b, m in pairs if not _reused(walks[b], heads[b], m)]
        stats.heads_reused += wanted - len(pairs)
    end_index = torch.tensor(end_ids, device=kept.device)
    for lo in range(0, len(pairs), HEAD_ROWS):
        chunk = pairs[lo : lo + HEAD_ROWS]
        b_idx = torch.tensor([b for b, _ in chunk], device=kept.device)
        m_idx = torch.tensor([m for _, m in chunk], device=kept.device)
        logits = final_logits(model, kept[b_idx, 1 + m_idx])
        log_end = torch.logsumexp(logits[:, end_index], dim=-1) - torch.logsumexp(logits, dim=-1)
        log_norm = torch.logsumexp(logits.double(), dim=-1)
        for row, ((b, m), value) in enumerate(zip(chunk, log_end.double().exp().cpu())):
            tokens = walks[b].live_tokens(m)
            ids = torch.tensor(tokens, dtype=torch.long, device=logits.device)
            log_probs = logits[row, ids].double() - log_norm[row]
            walks[b].visit(m, float(value), log_probs)
            if heads is not None:
                heads[b][_head_key(walks[b], m)] = (float(value), dict(zip(tokens, log_probs.tolist())))
        stats.head_rows += len(chunk)


def _head_key(walk: TrieWalk, node: int) -> tuple[int, int, int]:
    return node, walk.trie.tokens[node], walk.trie.parent[node]


def _reused(walk: TrieWalk, heads: Heads, node: int) -> bool:
    # Visit `node` from a head an earlier layout ran; a live token it lacks would mean the layouts
    # say different things after the same path, so that fails loudly (KeyError) rather than guessing.
    known = heads.get(_head_key(walk, node))
    if known is None:
        return False
    end, log_probs = known
    walk.visit(node, end, torch.tensor([log_probs[t] for t in walk.live_tokens(node)], dtype=torch.float64))
    return True


@torch.inference_mode()
def model_scores(
    model: nn.Module,
    encoded: EncodedPrompts,
    batch: Batch,
    end_ids: list[int],
    stats=None,
    reference: Reference | None = None,
    walks: list[TrieWalk] | None = None,
    heads: list[Heads] | None = None,
):
    """Per-prompt CRC scores [P, 4] of a whole model in one batched pass.

    With a `reference`, a model of its architecture replays the reference's recorded layer calls
    instead of recording its own: one pass through the layers instead of two. `walks` and `heads`:
    as in score_kept.
    """
    stats = stats or Stats()
    if reference is not None and model is reference.model:
        cap = reference.capture()
    else:
        cap = replay(model, batch, reference.capture()) if reference is not None else None
        cap = cap or capture(model, batch)
    stats.layer_evals += len(cap.args) * cap.num_prompts
    stats.token_layer_evals += len(cap.args) * int(batch.widths.sum())
    with precision.head_held(model):
        kept = kept_positions(cap.hidden_states[-1], batch.keep_index)
        return score_kept(model, kept, encoded, end_ids, stats, walks=walks, heads=heads)


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
                if any(walk.omitted_share() > OMITTED_TOLERANCE for walk in walks):
                    with stats.timed("relaid"):
                        hybrid = build_hybrid(pair, start, end, mode)
                        per_prompt = rescored(pair, hybrid, encoded, per_prompt, walks, stats, heads)
                yield IntervalScores(start, end, per_prompt)
        active = {i: h for i, h in active.items() if last_needed[i] > end}
    progress.close()
