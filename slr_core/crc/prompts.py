"""CRC, the Constrained Random Character proxy (paper, Section 3.2): prompts, valid sets, Q and D."""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from dataclasses import dataclass, field

import torch

from slr_core.crc.trie import Trie, answer_tries
from slr_core.models.chat import encode_chat

DIGIT_TEMPLATE = (
    "Generate a random integer in the range [{low}, {high}]. Do not include anything else in your reply."
)
LETTER_TEMPLATE = (
    "Generate a random letter from {low} to {high} (inclusive). Do not include anything else in your reply."
)


# What a CRC-style request asks for, when a free-form prompt is one (the paper's wording or close).
DIGIT_RANGE = re.compile(r"range \[\s*(\d+)\s*,\s*(\d+)\s*\]", re.IGNORECASE)
LETTER_RANGE = re.compile(r"letter from ([A-Za-z]) to ([A-Za-z])", re.IGNORECASE)


@dataclass(frozen=True)
class CRCPrompt:
    """One CRC request and the characters that answer it validly."""

    instruction: str
    valid: tuple[str, ...]


def default_prompts(seed: int = 0, per_family: int = 20) -> list[CRCPrompt]:
    """The paper's set: `per_family` digit and letter prompts with ranges drawn from `seed`."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(per_family):
        low = rng.randint(0, 6)
        high = rng.randint(low + 2, 9)
        valid = tuple(str(d) for d in range(low, high + 1))
        prompts.append(CRCPrompt(DIGIT_TEMPLATE.format(low=low, high=high), valid))
    letters = string.ascii_uppercase
    for _ in range(per_family):
        low = rng.randint(0, 20)
        high = rng.randint(low + 2, min(low + 9, 25))
        valid = tuple(letters[low : high + 1])
        prompts.append(CRCPrompt(LETTER_TEMPLATE.format(low=letters[low], high=letters[high]), valid))
    return prompts


def valid_answers(instruction: str) -> tuple[str, ...] | None:
    """The valid answers of a CRC-style request (a digit range or a letter range), else None."""
    digits = DIGIT_RANGE.search(instruction)
    if digits:
        low, high = int(digits.group(1)), int(digits.group(2))
        return tuple(str(n) for n in range(low, high + 1)) if low <= high <= low + 100 else None
    letters = LETTER_RANGE.search(instruction)
    if letters:
        low, high = ord(letters.group(1).upper()), ord(letters.group(2).upper())
        return tuple(chr(c) for c in range(low, high + 1)) if low <= high else None
    return None


# ---------------------------------------------------------------- tokens


def single_character_tokens(tokenizer) -> dict[str, list[int]]:
    """Map each character to every token id whose text, stripped of whitespace, is exactly it."""
    cached = getattr(tokenizer, "_slr_single_character_tokens", None)
    if cached is not None:
        return cached
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    # Decoding all of a 262k vocabulary is slow; only short pieces can decode to one character.
    candidates = [i for i, piece in enumerate(pieces) if piece is not None and len(piece) <= 8]
    index: dict[str, list[int]] = {}
    for token_id in candidates:
        text = tokenizer.decode([token_id]).strip()
        if len(text) == 1:
            index.setdefault(text, []).append(token_id)
    tokenizer._slr_single_character_tokens = index
    return index


@dataclass
class EncodedPrompts:
    """A prompt set made ready for one tokenizer: input ids and each prompt's answer trie."""

    prompts: list[CRCPrompt]
    input_ids: list[list[int]]
    # Per prompt: the trie nodes' token ids, and for each the index in prompt.valid of the answer it
    # completes (-1: none). For single-token answers the nodes are exactly the valid first tokens.
    token_ids: list[torch.Tensor]
    char_index: list[torch.Tensor]
    tries: list[Trie] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """Identity of exactly what is fed to the model and scored."""
        payload = json.dumps([[p.valid, ids] for p, ids in zip(self.prompts, self.input_ids)])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def is_flat(self) -> bool:
        """Every answer is one token: the single-token layout and arithmetic."""
        return all(trie.is_flat for trie in self.tries)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices: list[int]) -> EncodedPrompts:
        """The prompts at `indices`, in that order."""
        pick = lambda items: [items[k] for k in indices]  # noqa: E731
        return EncodedPrompts(
            pick(self.prompts),
            pick(self.input_ids),
            pick(self.token_ids),
            pick(self.char_index),
            pick(self.tries),
        )

    def with_tries(self, tries: list[Trie]) -> EncodedPrompts:
        """The same prompts laid out with other tries (a widened layout)."""
        token_ids = [torch.tensor(trie.tokens, dtype=torch.long) for trie in tries]
        char_index = [torch.tensor(trie.answer, dtype=torch.long) for trie in tries]
        return EncodedPrompts(self.prompts, self.input_ids, token_ids, char_index, tries)


def encode_prompts(tokenizer, prompts: list[CRCPrompt]) -> EncodedPrompts:
    """Apply the chat template and build every prompt's answer trie (crc/trie.py).

    PromptSetError, naming the prompt, for an answer no token sequence says or a trie over a cap.
    """
    tries = answer_tries(tokenizer, [p.instruction for p in prompts], [p.valid for p in prompts])
    input_ids = [encode_chat(tokenizer, prompt.instruction) for prompt in prompts]
    return EncodedPrompts(list(prompts), input_ids, [], [], []).with_tries(tries)


# ---------------------------------------------------------------- scores
# Single-token answers, per prompt x, t over the valid first tokens, E the end-of-reply tokens:
#   Q = sum_t p(t|x);  D = entropy of p(t|x) / Q grouped by character;
#   P_end(x, t) = sum_{e in E} p(e | x, t);  strict = sum_t p(t|x) P_end(x, t);  stop = strict / Q.
# Answers of any length (and answer_diversity): crc/trie_scores.py, whose SCORE_COLUMNS the sweep returns.


def answer_probabilities(
    logits: torch.Tensor, encoded: EncodedPrompts, rows: list[int]
) -> list[torch.Tensor]:
    """p(t | x) in float64 for each valid token of the prompt each logits row [B, V] answers."""
    probs = torch.softmax(logits.double(), dim=-1)
    return [probs[b, encoded.token_ids[p].to(probs.device)].cpu() for b, p in enumerate(rows)]


def first_token_scores(
    token_probs: list[torch.Tensor], encoded: EncodedPrompts, rows: list[int]
) -> torch.Tensor:
    """Per-prompt (Q, D) [B, 2] from the valid tokens' probabilities, grouped by character."""
    scores = torch.empty(len(rows), 2, dtype=torch.float64)
    for b, prompt_idx in enumerate(rows):
        per_char = torch.zeros(len(encoded.prompts[prompt_idx].valid), dtype=torch.float64)
        per_char.index_add_(0, encoded.char_index[prompt_idx], token_probs[b])
        quality = per_char.sum()
        tilde = per_char / quality.clamp_min(1e-300)
        scores[b, 0], scores[b, 1] = quality, -(tilde * torch.log(tilde.clamp_min(1e-300))).sum()
    return scores


def strict_scores(token_probs: list[torch.Tensor], end_probs: list[torch.Tensor]) -> torch.Tensor:
    """Per-prompt (stop, strict quality) [B, 2] from p(t|x) and P_end(x, t) of each valid token."""
    scores = torch.zeros(len(token_probs), 2, dtype=torch.float64)
    for b, (probs, ends) in enumerate(zip(token_probs, end_probs)):
        quality, strict = probs.sum(), (probs * ends.double()).sum()
        scores[b, 0] = strict / quality if quality > 0 else 0.0
        scores[b, 1] = strict
    return scores


def score_logits(logits: torch.Tensor, encoded: EncodedPrompts, rows: list[int]) -> torch.Tensor:
    """Per-prompt (Q, D) from next-token logits [B, V] whose row b answers prompt rows[b]."""
    return first_token_scores(answer_probabilities(logits, encoded, rows), encoded, rows)


def crc_means(per_prompt: torch.Tensor) -> tuple[float, ...]:
    """Means over prompts of per-prompt scores [P, C]: (Q, D) or (Q, D, stop, strict quality)."""
    return tuple(float(x) for x in per_prompt.mean(dim=0))
