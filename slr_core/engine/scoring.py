"""CRC scores from a model's kept final states: the LM head at each prompt's last position and trie nodes.

The head over a node is a full-vocabulary softmax, most of the strict-CRC cost: nodes are visited
from likely to unlikely and skipped once provably negligible, and a head already run for a node in
an earlier layout of the same model and prompt is reused (`Heads`).
"""

from __future__ import annotations

import torch
from torch import nn

from slr_core.crc.branches import Batch
from slr_core.crc.prompts import EncodedPrompts, answer_probabilities, first_token_scores
from slr_core.crc.trie_scores import TrieWalk
from slr_core.engine.capture import Reference, capture, final_logits, kept_positions, replay
from slr_core.engine.stack import Stats
from slr_core.errors import PromptSetError
from slr_core.models import precision

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
        raise left_out_error(share)
    scores = torch.stack([walk.scores() for walk in walks])
    return scores if strict else scores[:, :2]


def left_out_error(share: float) -> PromptSetError:
    """The refusal of a result whose layout leaves out `share` of a prompt's Q, over OMITTED_TOLERANCE."""
    return PromptSetError(
        f"The answer spellings left out of the trie layout carry {share:.3g} of a prompt's Q here, "
        f"over the {OMITTED_TOLERANCE:g} the sweep allows: these numbers would not be exact. Use "
        "shorter answers (their every spelling is then laid out)."
    )


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
        live = [walks[b].live_tokens(m) for b, m in chunk]
        picked = [logits[row, torch.tensor(tokens, dtype=torch.long, device=logits.device)].double()
                  for row, tokens in enumerate(live)]  # fmt: skip
        end_logits = logits[:, end_index].double()
        log_norm = _log_normalizer(logits)  # overwrites logits: read what is needed first
        log_end = torch.logsumexp(end_logits, dim=-1) - log_norm
        for row, ((b, m), tokens, value) in enumerate(zip(chunk, live, log_end.exp().cpu())):
            log_probs = picked[row] - log_norm[row]
            walks[b].visit(m, float(value), log_probs)
            if heads is not None:
                heads[b][_head_key(walks[b], m)] = (float(value), dict(zip(tokens, log_probs.tolist())))
        stats.head_rows += len(chunk)


def _log_normalizer(logits: torch.Tensor) -> torch.Tensor:
    """float64 log of each row's sum of exp [R] from float32 logits [R, V], which it overwrites."""
    # One float32 exp pass summed in float64: a float64 copy of the rows and a second logsumexp
    # were over half of the head's time (256 rows x 262k logits), for a gap of ~1e-9.
    top = logits.amax(dim=-1, keepdim=True)
    sums = logits.sub_(top).exp_().sum(dim=-1, dtype=torch.float64)
    return top.squeeze(-1).double() + sums.log()


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
