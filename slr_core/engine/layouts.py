"""Answer-trie layouts widened until little is left out: before a sweep, and again for one hybrid.

A pruned trie (crc/trie.py) lays out only the likely spellings and measures the mass of the rest.
Widening adds the heaviest left-out continuations, round by round, until the post and pre models
leave out at most WIDEN_TARGET of each prompt's Q. A hybrid that still leaves out over
OMITTED_TOLERANCE has those prompts laid out again on itself (a relay).
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from slr_core import cache
from slr_core.crc.branches import Batch, make_batch
from slr_core.crc.prompts import EncodedPrompts
from slr_core.crc.trie import MAX_TOTAL_TRIE_NODES, MAX_TRIE_NODES, trie_from_nodes, widen_trie
from slr_core.crc.trie_scores import TrieWalk
from slr_core.engine import scoring
from slr_core.engine.capture import Reference
from slr_core.engine.scoring import left_out_error, model_scores
from slr_core.engine.stack import Stats
from slr_core.errors import PromptSetError
from slr_core.models.chat import end_of_turn_ids
from slr_core.models.loading import ModelPair

# Widening stops once the post and pre models leave out at most WIDEN_TARGET of each prompt's Q. Each
# round lays out the heaviest left-out continuations, largest first, until what stays out is a tenth
# of that; a new node's own continuations are measured in the next round, so deep spellings take several.
WIDEN_ROUNDS = 8
WIDEN_TARGET = scoring.OMITTED_TOLERANCE / 10


# Widening pads every prompt's row to the widest one: prompts are widened in groups of this many,
# of similar widths (prompts are independent, so the groups' layouts are the same as one set's).
WIDEN_GROUP = 8


def widen_layout(pair: ModelPair, encoded: EncodedPrompts) -> EncodedPrompts:
    """`encoded` with its pruned tries widened until the post and pre models leave out little.

    Each round scores both models (one pass each) and lays out, per prompt and model, the heaviest
    left-out continuations; it stops at WIDEN_TARGET, after WIDEN_ROUNDS, or at the node caps.
    Intervals are checked on their own as they are swept.
    """
    if not _leaves_out(encoded):
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


def _leaves_out(encoded: EncodedPrompts) -> bool:
    # Whether any trie is pruned (records continuations it does not lay out).
    return any(trie.omitted or trie.root_omitted for trie in encoded.tries)


def widened_once(pair: ModelPair, encoded: EncodedPrompts, key: str | None) -> EncodedPrompts:
    """`widen_layout(pair, encoded)`, kept in the cache under `key` (None: not kept) and read back
    from it, so a run that resumes a landscape does not widen the same prompts again."""
    if not _leaves_out(encoded):
        return encoded  # nothing to widen: no cache read
    stored = cache.get_json(key) if key is not None else None
    widened = _stored_layout(pair, encoded, stored)
    if widened is None:
        widened = widen_layout(pair, encoded)
        if key is not None:
            cache.put_json(key, [[trie.tokens, trie.parent] for trie in widened.tries])
    return widened


def _stored_layout(pair: ModelPair, encoded: EncodedPrompts, stored) -> EncodedPrompts | None:
    # A stored widening of `encoded`: each trie must extend this prompt's own laid-out trie (widening
    # only appends nodes), else it is not used. Any layout is exact (every result measures what it
    # leaves out); this one only saves the widening passes.
    if not isinstance(stored, list) or len(stored) != len(encoded):
        return None
    tries = []
    for prompt, trie, nodes in zip(encoded.prompts, encoded.tries, stored):
        try:
            tokens, parent = map(list, nodes)
            if tokens[: len(trie)] != trie.tokens or parent[: len(trie)] != trie.parent:
                return None
            tries.append(trie_from_nodes(pair.tokenizer, prompt.valid, tokens, parent))
        except (TypeError, ValueError):
            return None
    return encoded.with_tries(tries)


def _widen_group(pair: ModelPair, encoded: EncodedPrompts, budget: int) -> EncodedPrompts:
    models, end_ids = (pair.post, pair.pre), end_of_turn_ids(pair.tokenizer)
    heads = [[{} for _ in range(len(encoded))] for _ in models]  # per model: later rounds run new nodes only
    tries, todo = list(encoded.tries), list(range(len(encoded)))
    for _ in range(WIDEN_ROUNDS):
        # A prompt both models leave little of is done: later rounds lay out and run only the others.
        todo = [p for p in todo if tries[p].omitted or tries[p].root_omitted]
        if not todo:
            break
        current = encoded.subset(todo).with_tries([tries[p] for p in todo])
        batch, walks = make_batch(current, pair.tokenizer.pad_token_id, pair.device), []
        reference = Reference(pair.post, batch)
        for model, kept_heads in zip(models, heads):
            model_scores(model, current, batch, end_ids, reference=reference, walks=walks,
                         heads=[kept_heads[p] for p in todo])  # fmt: skip
        over = [k for k in range(len(todo)) if _worst_share(walks, k, len(todo)) > WIDEN_TARGET]
        if not over:
            break
        kept_as_is = set(range(len(tries))) - {todo[k] for k in over}
        chosen = [walks[m * len(todo) + k] for m in range(len(models)) for k in over]
        left = budget - sum(len(tries[p]) for p in kept_as_is)  # the node budget is the group's
        widened = _widened(pair, current.subset(over), chosen, left)
        if widened is None:
            break
        todo = [todo[k] for k in over]
        for p, trie in zip(todo, widened.tries):
            tries[p] = trie
    return encoded.with_tries(tries)


def _worst_share(walks: list[TrieWalk], prompt: int, num_prompts: int) -> float:
    # The largest left-out share of one prompt over the models (walks: model by model).
    return max(walk.omitted_share() for walk in walks[prompt::num_prompts])


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
    pair: ModelPair, model: nn.Module, encoded: EncodedPrompts, scores, walks, stats, heads, seeds=None
) -> torch.Tensor:
    """`scores` [P, C] of `model`, with every prompt whose layout leaves out over OMITTED_TOLERANCE of
    its Q (per `walks`) laid out again, widened on `model` itself until it leaves out no more than that.

    A hybrid far from both post and pre (say one that names an answer and never ends) may favour
    spellings neither model does: only its own prompts are redone, so the shared layout stays lean.
    PromptSetError if the widened layout still leaves out too much. `heads`: those `walks` ran, reused.
    `seeds` (prompt -> trie) starts a prompt from the layout its last relay ended with, and is updated."""
    over = [p for p, walk in enumerate(walks) if walk.omitted_share() > scoring.OMITTED_TOLERANCE]
    if not over:
        return scores
    subset, seeds = encoded.subset(over), {} if seeds is None else seeds
    seeded = subset.with_tries([seeds.get(p, trie) for p, trie in zip(over, subset.tries)])
    from_seeds = sum(p in seeds for p in over)
    try:  # on copies of `heads`: a seeded layout's nodes past the shared ones are not the retry's
        again, tries = _scored_on_itself(pair, model, seeded, stats, [dict(heads[p]) for p in over])
        stats.relays_seeded += from_seeds
    except PromptSetError:  # a seed grown near a node cap: start again from the shared layout
        if not from_seeds:
            raise
        again, tries = _scored_on_itself(pair, model, subset, stats, [heads[p] for p in over])
    seeds.update(zip(over, tries))
    stats.prompts_relaid += len(over)
    scores = scores.clone()
    scores[over] = again[:, : scores.shape[1]].to(scores.dtype)
    return scores


def _scored_on_itself(
    pair: ModelPair, model: nn.Module, encoded: EncodedPrompts, stats, heads
) -> tuple[torch.Tensor, list]:
    # Widen round by round on `model` alone until it leaves out at most OMITTED_TOLERANCE of each
    # prompt's Q (the bar every result meets), and return each prompt's scores from the pass that shows
    # it (that pass is its scoring) with the tries it ended on. A prompt that meets the bar is done:
    # later rounds lay out only the others. The model records its own layer calls, so no post-model
    # pass is replayed, and each round runs the LM head only on nodes no earlier round (or `heads`' pass)
    # ran it on.
    end_ids, share = end_of_turn_ids(pair.tokenizer), float("inf")
    tries, todo, found = list(encoded.tries), list(range(len(encoded))), [None] * len(encoded)
    for _ in range(WIDEN_ROUNDS + 1):
        current = encoded.subset(todo).with_tries([tries[p] for p in todo])
        batch, walks = make_batch(current, pair.tokenizer.pad_token_id, pair.device), []
        scores = model_scores(
            model, current, batch, end_ids, stats, Reference(model, batch), walks, [heads[p] for p in todo]
        )
        shares = [walk.omitted_share() for walk in walks]
        for k, p in enumerate(todo):
            found[p] = scores[k]
        over = [k for k, one in enumerate(shares) if one > scoring.OMITTED_TOLERANCE]
        if not over:
            return torch.stack(found), tries
        share = max(shares)
        widened = _widened(pair, current.subset(over), [walks[k] for k in over], MAX_TOTAL_TRIE_NODES)
        if widened is None:
            break
        todo = [todo[k] for k in over]
        for p, trie in zip(todo, widened.tries):
            tries[p] = trie
    raise left_out_error(share)


def checked_scores(
    pair: ModelPair, model: nn.Module, encoded: EncodedPrompts, batch: Batch, stats=None, reference=None
):
    """`model_scores` of a whole model (post, pre, a soup), any prompt it pushes over the left-out
    tolerance laid out again for it (`rescored`)."""
    stats, walks, heads = stats or Stats(), [], [{} for _ in range(len(encoded))]
    end_ids = end_of_turn_ids(pair.tokenizer)
    scores = model_scores(model, encoded, batch, end_ids, stats, reference, walks, heads)
    return rescored(pair, model, encoded, scores, walks, stats, heads)
