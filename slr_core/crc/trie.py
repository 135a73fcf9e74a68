"""Answers of several tokens: every token sequence that says an answer, as one trie per prompt.

A sequence s says answer a when decode(s).strip() == a and no token of s decodes to whitespace only
(README, "Answers of several tokens"). Different segmentations of one answer ("Red", or "R" + "ed")
are different ways the model can say it, so all are counted. The decoded text of a sequence is the
concatenation of each token's text *in context* (read after a fixed anchor token, so a tokenizer
that drops a first token's leading space still gives " York" for "▁York"); the naive reference checks
this against tokenizer.decode of whole sequences. A token that is part of a character (a byte of
UTF-8 that the tokenizer cannot decode alone) can therefore not be part of an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slr_core.errors import PromptSetError

# A trie is laid out as one row of branch positions per prompt: its nodes widen every row, and the
# attention mask grows with the square of the widest row. These caps keep a sweep's memory bounded.
MAX_TRIE_NODES = 1024  # nodes of one prompt's trie
MAX_TOTAL_TRIE_NODES = 16384  # nodes of all of a prompt set's tries together
# Every node costs layer work at every interval, and most spellings of a long word ("Afgh"+"anistan")
# carry almost no mass. A trie over this many nodes starts from a pruned layout that the sweep widens
# by measured mass (engine/sweep.py, widen_layout); smaller tries are laid out whole.
FULL_LAYOUT_NODES = 64


@dataclass
class Trie:
    """One prompt's answer trie; nodes in an order where every parent comes before its children."""

    tokens: list[int] = field(default_factory=list)  # the token each node adds
    parent: list[int] = field(default_factory=list)  # parent node index, -1 at depth 1
    answer: list[int] = field(default_factory=list)  # index of the answer the node completes, or -1
    # Where the layout leaves sequences out (tries over the cap): per node, the tokens that continue
    # toward an answer but are not laid out, and the same for first tokens. Their measured mass
    # bounds everything under them (crc/trie_scores.py).
    omitted: dict[int, list[int]] = field(default_factory=dict)
    root_omitted: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def depth(self) -> list[int]:
        """Depth of each node (1 for a first token)."""
        depths: list[int] = []
        for parent in self.parent:
            depths.append(1 if parent < 0 else depths[parent] + 1)
        return depths

    @property
    def minimal(self) -> list[bool]:
        """Whether each node completes an answer and no ancestor of it does (what first-answer Q counts)."""
        below_answer: list[bool] = []  # the node or an ancestor completes an answer
        minimal = []
        for node, parent in enumerate(self.parent):
            above = parent >= 0 and below_answer[parent]
            minimal.append(self.answer[node] >= 0 and not above)
            below_answer.append(above or self.answer[node] >= 0)
        return minimal

    @property
    def is_flat(self) -> bool:
        """Every node is a first token: the single-token layout strict CRC always had."""
        return all(parent < 0 for parent in self.parent)

    def path(self, node: int) -> list[int]:
        """The token sequence from the root to `node`."""
        tokens = []
        while node >= 0:
            tokens.append(self.tokens[node])
            node = self.parent[node]
        return tokens[::-1]

    def children(self) -> list[list[int]]:
        """Child node indices of each node."""
        out: list[list[int]] = [[] for _ in self.tokens]
        for node, parent in enumerate(self.parent):
            if parent >= 0:
                out[parent].append(node)
        return out


# ---------------------------------------------------------------- token texts


def token_texts(tokenizer) -> list[str | None]:
    """Each token's text in the middle of a reply; None for special tokens and whitespace-only ones."""
    cached = getattr(tokenizer, "_slr_token_texts", None)
    if cached is not None:
        return cached
    size, special = len(tokenizer), set(tokenizer.all_special_ids)
    anchor = _anchor(tokenizer)
    prefix = tokenizer.decode([anchor], clean_up_tokenization_spaces=False)
    # One batched decode of (anchor, token) pairs: about 2 s for a 262k vocabulary.
    pairs = tokenizer.batch_decode([[anchor, t] for t in range(size)], clean_up_tokenization_spaces=False)
    texts: list[str | None] = []
    for token, text in enumerate(pairs):
        if token in special:
            texts.append(None)
            continue
        text = text[len(prefix) :] if text.startswith(prefix) else tokenizer.decode([token])
        texts.append(text if text.strip() else None)
    tokenizer._slr_token_texts = texts
    return texts


def _anchor(tokenizer) -> int:
    # A token that decodes to one letter, alone and before another token: what mid-reply text follows.
    for letter in "aAxX0":
        ids = tokenizer.encode(letter, add_special_tokens=False)
        for token in ids[-1:]:
            if tokenizer.decode([token], clean_up_tokenization_spaces=False).strip() == letter:
                return token
    return 0


@dataclass
class _Index:
    """Token ids by text, as the trie builder looks them up (built once per tokenizer)."""

    exact: dict[str, list[int]]  # text -> tokens (a token inside an answer)
    lstripped: dict[str, list[int]]  # text without leading whitespace -> tokens (a first token)
    rstripped: dict[str, list[int]]  # for texts with trailing whitespace: without it (a last token)
    stripped: dict[str, list[int]]  # for texts with trailing whitespace: stripped (first and last)


def _index(tokenizer) -> _Index:
    cached = getattr(tokenizer, "_slr_answer_index", None)
    if cached is not None:
        return cached
    index = _Index({}, {}, {}, {})
    for token, text in enumerate(token_texts(tokenizer)):
        if text is None:
            continue
        index.exact.setdefault(text, []).append(token)
        index.lstripped.setdefault(text.lstrip(), []).append(token)
        if text.rstrip() != text:
            index.rstripped.setdefault(text.rstrip(), []).append(token)
            index.stripped.setdefault(text.strip(), []).append(token)
    tokenizer._slr_answer_index = index
    return index


def _steps(index: _Index, answer: str, done: int) -> list[tuple[int, int]]:
    """(token, characters of `answer` said after it) for every token that may follow `done` characters."""
    rest, found = answer[done:], {}
    for length in range(1, len(rest) + 1):
        piece = rest[:length]
        # Leading whitespace only before the answer starts; trailing whitespace only once it is complete.
        for token in (index.lstripped if done == 0 else index.exact).get(piece, ()):
            found[token] = done + length
        if length == len(rest):
            for token in (index.stripped if done == 0 else index.rstripped).get(piece, ()):
                found[token] = len(answer)
    return sorted(found.items())


def _counts(index: _Index, answer: str) -> tuple[int, int]:
    """(sequences that say `answer`, nodes of its own trie): counted without building it."""
    steps = [_steps(index, answer, done) for done in range(len(answer))]
    ways_to_end = [0] * len(answer) + [1]  # sequences from `done` characters to the whole answer
    for done in range(len(answer) - 1, -1, -1):
        ways_to_end[done] = sum(ways_to_end[after] for _, after in steps[done])
    ways_to = [1] + [0] * len(answer)  # sequences from the start to `done` characters
    for done in range(len(answer)):
        for _, after in steps[done]:
            ways_to[after] += ways_to[done]
    nodes = sum(ways_to[done] for done in range(1, len(answer) + 1) if ways_to_end[done])
    return ways_to_end[0], nodes


def _can_finish(index: _Index, answer: str, done: int, memo: dict) -> bool:
    """Whether some sequence says the rest of `answer` after `done` characters."""
    key = (answer, done)
    if key not in memo:
        memo[key] = False  # no cycles: every step says at least one character
        memo[key] = any(
            after == len(answer) or _can_finish(index, answer, after, memo)
            for _, after in _steps(index, answer, done)
        )
    return memo[key]


def _live_steps(index: _Index, answer: str, done: int, memo: dict) -> list[tuple[int, int]]:
    # Steps after which the answer can still be completed (no dead ends in the trie).
    return [
        (token, after)
        for token, after in _steps(index, answer, done)
        if after == len(answer) or _can_finish(index, answer, after, memo)
    ]


class _Builder:
    """Adds token sequences to a trie, merging shared prefixes."""

    def __init__(self) -> None:
        self.trie, self.nodes = Trie(), {}

    def add(self, parent: int, token: int) -> int:
        node = self.nodes.get((parent, token))
        if node is None:
            node = self.nodes[(parent, token)] = len(self.trie)
            self.trie.tokens.append(token)
            self.trie.parent.append(parent)
            self.trie.answer.append(-1)
        return node


def build_trie(
    tokenizer, answers: tuple[str, ...], limit: int | None = None, max_depth: int | None = None
) -> Trie:
    """The trie of every sequence (of at most `max_depth` tokens) that says one of `answers`.

    Stops adding nodes past `limit`. Nodes come answer by answer, tokens in id order: for
    single-token answers the order of the valid first tokens strict CRC always used.
    """
    index, builder, memo = _index(tokenizer), _Builder(), {}

    def grow(slot: int, answer: str, done: int, parent: int, depth: int) -> None:
        for token, after in _live_steps(index, answer, done, memo):
            if limit is not None and len(builder.trie) > limit:
                return
            if after < len(answer) and max_depth is not None and depth >= max_depth:
                continue
            node = builder.add(parent, token)
            if after == len(answer):
                builder.trie.answer[node] = slot
            else:
                grow(slot, answer, after, node, depth + 1)

    for slot, answer in enumerate(answers):
        grow(slot, answer, 0, -1, 1)
    return builder.trie


# A pruned layout keeps the sequences of at most this many tokens and each answer's own tokenisation
# (with and without a leading space); the mass of all others is measured, not guessed.
SHORT_SEQUENCES = 1


def pruned_trie(tokenizer, answers: tuple[str, ...]) -> Trie:
    """A trie of the likely spellings only, recording at every node which continuations it leaves out."""
    texts = token_texts(tokenizer)
    trie = build_trie(tokenizer, answers, max_depth=SHORT_SEQUENCES)
    builder = _Builder()
    builder.trie, builder.nodes = trie, {(p, t): n for n, (p, t) in enumerate(zip(trie.parent, trie.tokens))}
    for slot, answer in enumerate(answers):
        for variant in (answer, " " + answer):
            ids = tokenizer.encode(variant, add_special_tokens=False)
            pieces = [texts[t] for t in ids]
            if not ids or None in pieces or "".join(pieces).strip() != answer:
                continue  # not a sequence that says the answer by the rule above
            node = -1
            for token in ids:
                node = builder.add(node, token)
            trie.answer[node] = slot
    return _record_left_out(tokenizer, answers, trie)


def widen_trie(tokenizer, answers: tuple[str, ...], trie: Trie, additions: list[tuple[int, int]]) -> Trie:
    """A copy of a pruned `trie` with nodes (parent node, token) added (parent -1: a first token).

    Each addition must be a continuation the trie records as left out; the added nodes' own
    continuations are then recorded as left out in turn.
    """
    builder = _Builder()
    builder.trie = Trie(list(trie.tokens), list(trie.parent), list(trie.answer))
    builder.nodes = {(p, t): n for n, (p, t) in enumerate(zip(trie.parent, trie.tokens))}
    for parent, token in additions:
        left_out = trie.root_omitted if parent < 0 else trie.omitted.get(parent, [])
        if token not in left_out:
            raise ValueError(f"token {token} is not left out under node {parent}")
        builder.add(parent, token)
    return _record_left_out(tokenizer, answers, builder.trie)


def trie_from_nodes(tokenizer, answers: tuple[str, ...], tokens: list[int], parent: list[int]) -> Trie:
    """The trie of these nodes (every parent before its children), its answers and left-out tokens recorded."""
    if len(tokens) != len(parent) or any(not -1 <= p < node for node, p in enumerate(parent)):
        raise ValueError("every node's parent must be -1 or an earlier node")
    return _record_left_out(tokenizer, answers, Trie(list(tokens), list(parent), [-1] * len(tokens)))


def _record_left_out(tokenizer, answers: tuple[str, ...], trie: Trie) -> Trie:
    # What each node's text says (its answer), and which of its continuations are not laid out.
    index, memo, texts = _index(tokenizer), {}, token_texts(tokenizer)
    node_text: list[str] = []
    for parent, token in zip(trie.parent, trie.tokens):
        node_text.append((node_text[parent] if parent >= 0 else "") + texts[token])
    slots = {answer: slot for slot, answer in enumerate(answers)}
    trie.answer = [slots.get(text.strip(), -1) for text in node_text]
    laid_out, trie.omitted = trie.children(), {}
    for node in [-1, *range(len(trie))]:
        said = node_text[node].lstrip() if node >= 0 else ""
        wanted = set()
        for answer in answers:
            if answer.startswith(said) and len(said) < len(answer):
                wanted.update(token for token, _ in _live_steps(index, answer, len(said), memo))
        present = {trie.tokens[c] for c in (laid_out[node] if node >= 0 else _roots(trie))}
        missing = sorted(wanted - present)
        if node < 0:
            trie.root_omitted = missing
        elif missing:
            trie.omitted[node] = missing
    return trie


def _roots(trie: Trie) -> list[int]:
    return [node for node, parent in enumerate(trie.parent) if parent < 0]


def layout_trie(tokenizer, answers: tuple[str, ...]) -> Trie:
    """The trie the sweep lays out: every spelling when they fit FULL_LAYOUT_NODES, else `pruned_trie`."""
    limit = min(FULL_LAYOUT_NODES, MAX_TRIE_NODES)
    trie = build_trie(tokenizer, answers, limit)
    return trie if len(trie) <= limit else pruned_trie(tokenizer, answers)


def trie_sizes(tokenizer, answer_sets: list[tuple[str, ...]]) -> list[int]:
    """Nodes each answer set lays out (`layout_trie`), to check a prompt set against the caps before work."""
    return [len(layout_trie(tokenizer, answers)) for answers in answer_sets]


def unsayable_answers(tokenizer, answers: tuple[str, ...]) -> list[str]:
    """The answers no token sequence of this tokenizer says (by the rule above)."""
    index = _index(tokenizer)
    return [answer for answer in answers if _counts(index, answer)[0] == 0]


def answer_tries(tokenizer, instructions: list[str], answer_sets: list[tuple[str, ...]]) -> list[Trie]:
    """Every prompt's trie; PromptSetError naming the prompt for an unsayable answer or a trie over a cap."""
    tries = []
    for instruction, answers in zip(instructions, answer_sets):
        missing = unsayable_answers(tokenizer, answers)
        if missing:
            raise PromptSetError(
                f"No token sequence of this tokenizer says the answer(s) {missing} (prompt: {instruction!r}): "
                "every token must decode to text that is part of the answer; remove or reword them."
            )
        trie = layout_trie(tokenizer, answers)
        if len(trie) > MAX_TRIE_NODES:
            raise PromptSetError(
                f"The answers of prompt {instruction!r} need {len(trie)} trie nodes even when only their "
                f"spellings of at most {SHORT_SEQUENCES} tokens are laid out; the cap is {MAX_TRIE_NODES} "
                "per prompt: use fewer or shorter answers, or split the prompt."
            )
        tries.append(trie)
    size = sum(len(trie) for trie in tries)
    if size > MAX_TOTAL_TRIE_NODES:
        raise PromptSetError(
            f"The prompt set's answers need {size} trie nodes in all (every way this tokenizer can "
            f"spell them); the cap is {MAX_TOTAL_TRIE_NODES}: use fewer prompts or shorter answers."
        )
    return tries
