"""Creative-writing prompts written for SLR Explorer: poems, stories and jokes.

Ordered poem, story, joke, poem, ... so that any prefix (the quick set is the first six) holds
each kind equally often.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class WritingPrompt:
    """One instruction and its kind: 'poem', 'story' or 'joke'."""

    id: str
    kind: str
    text: str


KINDS = ("poem", "story", "joke")

POEMS = (
    "Write a short poem about the sea at night.",
    "Write a short poem about an old bicycle.",
    "Write a short poem about the first snow of winter.",
    "Write a short poem about a lighthouse keeper.",
    "Write a short poem about morning coffee.",
    "Write a short poem about a library after closing time.",
    "Write a short poem about learning to swim.",
    "Write a short poem about a city bus.",
    "Write a short poem about a forgotten umbrella.",
    "Write a short poem about the last day of summer.",
)

STORIES = (
    "Write a short story that begins with the sentence: 'The door was already open.'",
    "Write a short story about a robot who learns to grow tomatoes.",
    "Write a short story about a letter that arrives fifty years late.",
    "Write a short story about a town where it never stops raining.",
    "Write a short story about a cat who thinks it is a detective.",
    "Write a short story about the night shift at a small bakery.",
    "Write a short story about a map that changes every morning.",
    "Write a short story about two strangers stuck in a lift.",
    "Write a short story about a child who finds a key in the sand.",
    "Write a short story about a violinist who loses her hearing.",
)

JOKES = (
    "Tell me a joke about cats.",
    "Tell me a joke about programmers.",
    "Tell me a joke about the weather.",
    "Tell me a joke about dentists.",
    "Tell me a joke about coffee.",
    "Tell me a joke about astronauts.",
    "Tell me a joke about libraries.",
    "Tell me a joke about trains.",
    "Tell me a joke about cooking.",
    "Tell me a joke about mathematicians.",
)

PROMPTS: tuple[WritingPrompt, ...] = tuple(
    WritingPrompt(f"{kind}_{index:02d}", kind, text)
    for index, group in enumerate(zip(POEMS, STORIES, JOKES, strict=True))
    for kind, text in zip(KINDS, group, strict=True)
)
QUICK_COUNT = 6  # two of each kind


def data_digest() -> str:
    """A short hash of all prompts, stored with results and in cache keys."""
    payload = [[p.id, p.kind, p.text] for p in PROMPTS]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]
