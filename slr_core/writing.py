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

import math
from collections import Counter

import torch
from tqdm.auto import tqdm

from .chat import encode_chat
from .metrics import distinct_n, embedding_dissimilarity
from .qa import item_seed, mean_std
from .sampling import SamplingSettings, sample
from .writing_data import KINDS, WritingPrompt

WRITING_METRICS = ("diversity", "distinct_1", "distinct_2", "loglik", "repetition", "words")
LOGIT_BUDGET = 2**27  # logit floats per forward pass (512 MiB in float32), bounds scoring memory


def is_degenerate(text: str) -> bool:
    """True when a sample loops: distinct-2 below 0.5, or some 4-gram occurring three or more times."""
    words = text.split()
    bigrams = [tuple(words[k : k + 2]) for k in range(len(words) - 1)]
    if bigrams and len(set(bigrams)) / len(bigrams) < 0.5:
        return True
    fourgrams = Counter(tuple(words[k : k + 4]) for k in range(len(words) - 3))
    return any(count >= 3 for count in fourgrams.values())


@torch.inference_mode()
def token_logliks(model, tokenizer, instruction: str, samples: list[str]) -> list[float]:
    """Mean per-token log-likelihood of each sample after the chat prompt; NaN for empty samples."""
    prompt = encode_chat(tokenizer, instruction)
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in samples]
    out = [math.nan] * len(rows)
    filled = [k for k, row in enumerate(rows) if row]
    if not filled:
        return out
    longest = max(len(rows[k]) for k in filled)
    vocab = model.get_output_embeddings().weight.shape[0]
    chunk = max(1, LOGIT_BUDGET // ((longest + 1) * vocab))
    for start in range(0, len(filled), chunk):
        part = filled[start : start + chunk]
        for k, value in zip(
            part, _score_batch(model, tokenizer, prompt, [rows[k] for k in part], longest), strict=True
        ):
            out[k] = value
    return out


def _score_batch(model, tokenizer, prompt: list[int], rows: list[list[int]], longest: int) -> list[float]:
    # Same prompt for every row and right padding: response token t sits at len(prompt) + t in all
    # rows, so keeping the last longest + 1 logits covers every response token of the batch.
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    ids = torch.tensor([prompt + row + [pad] * (longest - len(row)) for row in rows], device=device)
    mask = torch.tensor(
        [[1] * (len(prompt) + len(row)) + [0] * (longest - len(row)) for row in rows], device=device
    )
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=longest + 1).logits[:, :-1].float()
    targets = ids[:, len(prompt) :]
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    valid = mask[:, len(prompt) :].to(picked.dtype)
    return ((picked * valid).sum(1) / valid.sum(1)).tolist()


def prompt_scores(samples: list[str], logliks: list[float]) -> dict[str, float]:
    """All writing metrics of one prompt's samples."""
    finite = [v for v in logliks if not math.isnan(v)]
    return {
        "diversity": embedding_dissimilarity(samples),
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "loglik": sum(finite) / len(finite) if finite else math.nan,
        "repetition": sum(map(is_degenerate, samples)) / len(samples),
        "words": sum(len(s.split()) for s in samples) / len(samples),
    }


def evaluate_writing(
    model, scorer, tokenizer, prompts: list[WritingPrompt], settings: SamplingSettings, desc: str = "writing"
) -> tuple[dict[str, float], list[dict]]:
    """Sample every prompt with `model`, score with `scorer` (the post-trained model); mean/std + examples."""
    rows, examples = [], []
    for index, prompt in enumerate(tqdm(prompts, desc=desc, leave=False)):
        seeded = SamplingSettings(**{**settings.as_dict(), "seed": item_seed(settings.seed, index)})
        samples = sample(model, tokenizer, prompt.text, seeded)
        row = prompt_scores(samples, token_logliks(scorer, tokenizer, prompt.text, samples))
        rows.append({**row, "kind": prompt.kind})
        if index < 3:
            examples += [{"prompt": prompt.text, "output": s[:400]} for s in samples[:2]]
    metrics = mean_std(rows, WRITING_METRICS)
    for kind in KINDS:
        of_kind = [row for row in rows if row["kind"] == kind]
        if of_kind:
            metrics[f"diversity_{kind}"] = mean_std(of_kind, ("diversity",))["diversity"]
    return metrics, examples
