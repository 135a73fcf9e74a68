"""The CRC scores of one prompt's answer trie, from the LM head at its nodes (README, "Answers of several tokens").

With pi(n) the probability of node n's token path after the prompt and P_end(n) the end-of-turn
mass after it:

- Q = sum of pi(n) over nodes that complete an answer with no ancestor completing one: the mass of
  replies that begin with a complete answer; D = entropy of that mass grouped by the answer, / Q;
- strict quality = sum of pi(n) P_end(n) over every node that completes an answer; stop = strict / Q;
- answer_diversity = entropy over answers of their strict mass, / strict quality (0 when it is 0).

On single-token answers every node is a first token and these are the single-token formulas. The
head is run node by node (`visit`); a node not yet visited bounds what its whole subtree and its own
end mass can add by pi(n), and children the layout leaves out add exactly their measured mass to
`omitted` (which bounds everything under them).
"""

from __future__ import annotations

import torch

from slr_core.crc.trie import Trie

SCORE_COLUMNS = ("quality", "diversity", "stop", "strict_quality", "answer_diversity")


def entropy(masses: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of non-negative masses normalised to sum 1 (0 for all-zero masses)."""
    tilde = masses / masses.sum().clamp_min(1e-300)
    return -(tilde * torch.log(tilde.clamp_min(1e-300))).sum()


class TrieWalk:
    """One prompt's trie scored head by head: path probabilities, end masses, what is left unscored."""

    def __init__(self, trie: Trie, num_answers: int, root_probs: torch.Tensor) -> None:
        """`root_probs`: the float64 next-token distribution [V] after the prompt."""
        n, self.trie, self.num_answers = len(trie), trie, num_answers
        self.parent = torch.tensor(trie.parent, dtype=torch.long)
        self.answer = torch.tensor(trie.answer, dtype=torch.long)
        self.complete = self.answer >= 0
        self.minimal = torch.tensor(trie.minimal, dtype=torch.bool)
        # Before any answer: neither the node nor an ancestor completes one (its subtree feeds Q).
        self.pre_answer = ~self.complete & ~_below_answer(trie)
        self.children = trie.children()
        self.prob = torch.zeros(n, dtype=torch.float64)
        self.end = torch.zeros(n, dtype=torch.float64)
        self.known = self.parent < 0
        self.headed = torch.zeros(n, dtype=torch.bool)
        tokens = torch.tensor(trie.tokens, dtype=torch.long)
        self.tokens = tokens
        self.prob[self.known] = root_probs[tokens[self.known].to(root_probs.device)].cpu()
        # Left-out continuations: (node or -1, their tokens, their path probabilities) once measured.
        self.left_out: list[tuple[int, list[int], torch.Tensor]] = []
        self.omitted = 0.0
        if trie.root_omitted:
            masses = root_probs[torch.tensor(trie.root_omitted, device=root_probs.device)].cpu()
            self.left_out.append((-1, trie.root_omitted, masses))
            self.omitted = float(masses.sum())

    def wanted(self, tier: float) -> list[int]:
        """Nodes whose path probability is known, at least `tier`, and whose head has not run."""
        return (self.known & ~self.headed & (self.prob >= tier)).nonzero().flatten().tolist()

    def live_tokens(self, node: int) -> list[int]:
        """The tokens a visit of `node` reads: its laid-out children's, then those the layout leaves out."""
        return self.trie_tokens(self.children[node]) + self.trie.omitted.get(node, [])

    def visit(self, node: int, end: float, log_probs: torch.Tensor) -> None:
        """Record a node's end mass and its children's pi, from the float64 log-probabilities [L] of its
        live_tokens after it."""
        self.end[node], self.headed[node] = end, True
        probs, children = log_probs.exp().cpu(), self.children[node]
        if children:
            self.prob[children] = self.prob[node] * probs[: len(children)]
            self.known[children] = True
        left_out = self.trie.omitted.get(node)
        if left_out:
            masses = self.prob[node] * probs[len(children) :]
            self.left_out.append((node, left_out, masses))
            self.omitted += float(masses.sum())

    def trie_tokens(self, nodes: list[int]) -> list[int]:
        """The tokens of `nodes`."""
        return [self.trie.tokens[n] for n in nodes]

    def omitted_share(self) -> float:
        """The left-out mass as a fraction of the Q found (what it can move Q, D and strict quality by)."""
        quality = float(self.prob[self.minimal & self.known].sum())
        if self.omitted == 0.0:
            return 0.0
        return self.omitted / quality if quality > 0 else float("inf")

    def unscored(self) -> tuple[float, float]:
        """(what unvisited nodes can add to strict quality, and to Q): each bounded by its pi."""
        waiting = self.known & ~self.headed
        return float(self.prob[waiting].sum()), float(self.prob[waiting & self.pre_answer].sum())

    def settled(self, relative: float) -> bool:
        """Whether what is unscored is at most `relative` of strict quality and of Q found so far."""
        if not self.headed.any():
            return False
        to_strict, to_quality = self.unscored()
        strict = float((self.prob * self.end)[self.complete & self.headed].sum())
        quality = float(self.prob[self.minimal & self.known].sum())
        return to_strict <= relative * strict and to_quality <= relative * quality

    def scores(self) -> torch.Tensor:
        """(Q, D, stop, strict quality, answer_diversity) [5] in float64."""
        first = self.minimal & self.known
        per_answer = torch.zeros(self.num_answers, dtype=torch.float64)
        per_answer.index_add_(0, self.answer[first], self.prob[first])
        quality = per_answer.sum()
        ends = self.complete & self.headed
        strict_terms = self.prob[ends] * self.end[ends]
        strict = strict_terms.sum()
        per_answer_strict = torch.zeros(self.num_answers, dtype=torch.float64)
        per_answer_strict.index_add_(0, self.answer[ends], strict_terms)
        first_mass = self.prob[first].sum()
        stop = strict / first_mass if first_mass > 0 else torch.zeros((), dtype=torch.float64)
        answer_diversity = entropy(per_answer_strict) if strict > 0 else torch.zeros((), dtype=torch.float64)
        return torch.stack([quality, entropy(per_answer), stop, strict, answer_diversity])


def _below_answer(trie: Trie) -> torch.Tensor:
    # Whether an ancestor of each node completes an answer.
    below: list[bool] = []
    for parent in trie.parent:
        below.append(parent >= 0 and (below[parent] or trie.answer[parent] >= 0))
    return torch.tensor(below, dtype=torch.bool)
