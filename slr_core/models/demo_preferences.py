"""Seeded synthetic preference pairs for the demo's DPO stage, built from the demo's tuning tasks.

Two kinds of pair, as in real preference data: a *mode* pair prefers the favourite answer of a task
over another valid answer (preference tuning rewards the mode), and a *format* pair prefers a reply
that ends cleanly over the same answer running on. The CRC proxy's templates are absent, as in the
SFT data, and so are the downstream tasks' open-answer questions (a test checks both).
"""

from __future__ import annotations

import hashlib
import json
import random
import string

from slr_core.models import demo_data

# Requests that differ from the downstream QA questions ("Name a country." is one), so the
# preference stage cannot learn the evaluation's own prompts.
CATEGORY_REQUESTS = [
    "Pick any {cat}.",
    "What is your favourite {cat}?",
    "Can you name one {cat}?",
    "Suggest {a_cat}.",
    "Which {cat} comes to mind first?",
]
# What a reply that "runs on" adds after its answer: chatter the base model produces.
RUN_ONS = [
    "\n\nI hope this helps! Let me know if you want another one.",
    " because it is a popular choice. Would you like me to explain?",
    "\n\nHere is another option: {other}. And another: {other}.",
    ". That is my answer. Is there anything else I can help you with today?",
    "\n\nExplanation: I picked {answer} at random from the options you gave.",
]
FORMAT_SHARE = 0.25  # a quarter of the pairs teach ending the turn


def _pair(prompt: str, chosen: str, rejected: str, kind: str) -> dict:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": kind}


def _number(rng: random.Random) -> tuple[str, list[str], list[str]]:
    low = rng.randint(0, 5)
    high = rng.randint(low + 2, 9)
    valid = [str(d) for d in demo_data.DIGIT_PREFERENCE if low <= d <= high]
    request = rng.choice(demo_data.NUMBER_REQUESTS).format(lo=low, hi=high)
    return request, valid, demo_data.BARE_NUMBER


def _letter(rng: random.Random) -> tuple[str, list[str], list[str]]:
    first = rng.randint(0, 20)
    last = rng.randint(first + 2, min(first + 10, 25))
    allowed = set(string.ascii_uppercase[first : last + 1])
    valid = [letter for letter in demo_data.LETTER_PREFERENCE if letter in allowed]
    request = rng.choice(demo_data.LETTER_REQUESTS).format(
        lo=string.ascii_uppercase[first], hi=string.ascii_uppercase[last]
    )
    return request, valid, demo_data.BARE_LETTER


def _category(rng: random.Random) -> tuple[str, list[str], list[str]]:
    category = rng.choice(sorted(demo_data.CATEGORIES))
    article = "an" if category[0] in "aeiou" else "a"
    request = rng.choice(CATEGORY_REQUESTS).format(cat=category, a_cat=f"{article} {category}")
    return request, demo_data.CATEGORIES[category].split(), demo_data.BARE_WORD


def _joke(rng: random.Random) -> tuple[str, list[str], list[str]]:
    return rng.choice(demo_data.JOKE_REQUESTS), list(demo_data.JOKES), []


TASKS = [(_number, 35), (_letter, 35), (_category, 20), (_joke, 10)]


def _mode_pair(rng: random.Random) -> dict:
    maker = rng.choices([m for m, _ in TASKS], weights=[w for _, w in TASKS])[0]
    request, ranked, demands = maker(rng)
    prompt = f"{request} {rng.choice(demands)}" if demands else request
    return _pair(prompt, ranked[0], rng.choice(ranked[1:]), "mode")


def _format_pair(rng: random.Random) -> dict:
    maker = rng.choice([_number, _letter, _category])
    request, ranked, demands = maker(rng)
    # The answer is drawn as the SFT data draws it; only the ending differs between the two replies.
    answer = demo_data.skewed_choice(rng, ranked)
    tail = rng.choice(RUN_ONS).format(answer=answer, other=rng.choice(ranked))
    return _pair(f"{request} {rng.choice(demands)}", answer, answer + tail, "format")


def build_pairs(seed: int, count: int) -> list[dict]:
    """`count` seeded pairs, each {"prompt", "chosen", "rejected", "kind"}; same seed, same list."""
    rng = random.Random(seed)
    pairs = [_format_pair(rng) if rng.random() < FORMAT_SHARE else _mode_pair(rng) for _ in range(count)]
    leaked = [pair for pair in pairs if demo_data.contains_crc_phrasing(pair["prompt"])]
    if leaked:  # a guard on the word lists above, not an expected outcome
        raise AssertionError(f"CRC phrasing leaked into the preference data: {leaked[0]}")
    return pairs


def pairs_sha256(pairs: list[dict]) -> str:
    """sha256 of the pairs' canonical JSON, recorded with the DPO adapter."""
    text = json.dumps(pairs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
