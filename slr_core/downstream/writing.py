"""Creative-writing scoring: embedding diversity, distinct-n, and two clearly labelled quality proxies.

Diversity follows the paper: 1 - mean pairwise cosine similarity of the samples' sentence
embeddings (all-MiniLM-L6-v2 here, Qwen3-Embedding-8B in the paper), per prompt, then averaged.
The paper judges quality with an LLM; offline we report two proxies instead, NOT quality scores:
  - loglik: the post-trained model's mean per-token log-likelihood of a sample given the
    chat-formatted prompt (re-tokenised text, stop token excluded). It favours the post-trained
    model's own style, so read it as "how natural to the post-trained model", nothing more.
  - repetition: share of samples that degenerate into loops (distinct-2 < 0.5, or a 4-gram
    occurring 3+ times).
"""

from __future__ import annotations

from collections import Counter

from tqdm.auto import tqdm

from slr_core.downstream.likelihood import token_logliks
from slr_core.downstream.metrics import distinct_n, embedding_dissimilarity, reply_scores
from slr_core.downstream.qa import item_seed, mean_std
from slr_core.downstream.sampling import SamplingSettings, sample_replies
from slr_core.downstream.writing_data import KINDS, WritingPrompt

WRITING_METRICS = ("diversity", "distinct_1", "distinct_2", "loglik", "repetition", "stopped", "words")


def is_degenerate(text: str) -> bool:
    """True when a sample loops: distinct-2 below 0.5, or some 4-gram occurring three or more times."""
    words = text.split()
    bigrams = [tuple(words[k : k + 2]) for k in range(len(words) - 1)]
    if bigrams and len(set(bigrams)) / len(bigrams) < 0.5:
        return True
    fourgrams = Counter(tuple(words[k : k + 4]) for k in range(len(words) - 3))
    return any(count >= 3 for count in fourgrams.values())


def prompt_scores(samples: list[str], logliks: list[float], ended: list[bool]) -> dict[str, float]:
    """All writing metrics of one prompt's samples (`ended`: which stopped by themselves)."""
    return {
        "diversity": embedding_dissimilarity(samples),
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "repetition": sum(map(is_degenerate, samples)) / len(samples),
        **reply_scores(samples, ended, logliks),
    }


def evaluate_writing(
    model, scorer, tokenizer, prompts: list[WritingPrompt], settings: SamplingSettings, desc: str = "writing"
) -> tuple[dict[str, float], list[dict]]:
    """Sample every prompt with `model`, score with `scorer` (the post-trained model); mean/std + examples."""
    rows, examples = [], []
    for index, prompt in enumerate(tqdm(prompts, desc=desc, leave=False)):
        seeded = SamplingSettings(**{**settings.as_dict(), "seed": item_seed(settings.seed, index)})
        replies = sample_replies(model, tokenizer, prompt.text, seeded)
        samples = replies.texts
        row = prompt_scores(samples, token_logliks(scorer, tokenizer, prompt.text, samples), replies.ended)
        rows.append({**row, "kind": prompt.kind})
        if index < 3:
            examples += [{"prompt": prompt.text, "output": s[:400]} for s in samples[:2]]
    metrics = mean_std(rows, WRITING_METRICS)
    for kind in KINDS:
        of_kind = [row for row in rows if row["kind"] == kind]
        if of_kind:
            metrics[f"diversity_{kind}"] = mean_std(of_kind, ("diversity",))["diversity"]
    return metrics, examples
