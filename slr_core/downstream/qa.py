"""Open-ended QA scoring: map a sampled answer to a reference answer, then precision/entropy/coverage.

Matching rule (applied to an answer and, identically, to every alias):
  1. Normalise: fold accents, lower-case, drop apostrophes and the dots of one-letter abbreviations
     ("U.S.A."), turn every other non-alphanumeric run (other full stops included) into one space,
     drop the words "a", "an", "the".
  2. If the first non-empty line, or that line's first sentence, normalises to exactly an alias,
     the answer is that alias's reference ("**Ohio**", "Ohio.", "The Ohio" all count).
  3. Otherwise, find alias occurrences as whole words anywhere in the normalised answer, leftmost
     and longest first ("West Virginia" is West Virginia, not Virginia). Purely alphabetic aliases
     of one or two letters ("US", "Io", "Pi") are only used in step 2, since as words they collide
     with English ("us", "he"). If the occurrences name exactly one reference, that is the match.
  4. Otherwise (none, or several references, e.g. "Ohio and Texas") the answer is incorrect.
The paper uses an LLM judge for this mapping; this rule is its deterministic, offline stand-in.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from slr_core.downstream.likelihood import token_logliks
from slr_core.downstream.metrics import reply_scores
from slr_core.downstream.qa_data import Question
from slr_core.downstream.sampling import SamplingSettings, sample_replies

ARTICLES = frozenset({"a", "an", "the"})
QA_METRICS = ("precision", "entropy", "coverage", "stopped", "words", "loglik")


def normalise(text: str) -> str:
    """Lower-case ASCII words without accents, punctuation or articles: 'The U.S.A.!' -> 'usa'."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower().replace("&", " and ")
    # Only abbreviation dots go ("u.s.a." -> "usa"); any other full stop separates words, so a reply
    # that runs on past its answer ("Texas.userdata") still names Texas.
    folded = re.sub(r"(?<![a-z0-9])([a-z])\.", r"\1", folded)
    folded = re.sub(r"['’ʻ`´]", "", folded)
    words = re.sub(r"[^a-z0-9]+", " ", folded).split()
    return " ".join(word for word in words if word not in ARTICLES)


def _heads(answer: str) -> tuple[str, str]:
    line = next((line for line in answer.splitlines() if line.strip()), "")
    sentence = re.split(r"(?<=[.!?])\s", line.strip(), maxsplit=1)[0]
    return normalise(line), normalise(sentence)


@dataclass
class Matcher:
    """The compiled aliases of one question."""

    question: Question
    exact: dict[str, str] = field(init=False)
    pattern: re.Pattern | None = field(init=False)

    def __post_init__(self) -> None:
        self.exact = {}
        for reference, aliases in self.question.answers.items():
            for alias in aliases:
                self.exact.setdefault(normalise(alias), reference)
        searchable = sorted(
            (a for a in self.exact if not (a.isalpha() and len(a) <= 2)), key=len, reverse=True
        )
        # Longest first, so at any position the regex prefers "west virginia" to "virginia".
        body = "|".join(re.escape(alias) for alias in searchable)
        self.pattern = re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])") if body else None

    def match(self, answer: str) -> str | None:
        """The reference `answer` names, or None when it names none or several."""
        for head in _heads(answer):
            if head in self.exact:
                return self.exact[head]
        if self.pattern is None:
            return None
        found = {self.exact[m.group(0)] for m in self.pattern.finditer(normalise(answer))}
        return found.pop() if len(found) == 1 else None


def question_scores(matches: list[str | None], num_references: int) -> dict[str, float]:
    """Precision, entropy (nats) over correct answers, coverage-n, for one question's samples."""
    if not matches:
        raise ValueError("no samples to score")
    counts = Counter(m for m in matches if m is not None)
    correct = sum(counts.values())
    # No correct answer: an empty distribution, whose entropy we define as 0.
    entropy = -sum(c / correct * math.log(c / correct) for c in counts.values()) if correct else 0.0
    return {
        "precision": correct / len(matches),
        "entropy": entropy + 0.0,  # turns -0.0 into 0.0
        "coverage": len(counts) / num_references,
    }


def mean_std(rows: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, float]:
    """Per metric: mean and population standard deviation over rows, as name and name_std."""
    out = {}
    for name in names:
        values = [row[name] for row in rows if not math.isnan(row[name])]
        mean = sum(values) / len(values) if values else math.nan
        variance = sum((v - mean) ** 2 for v in values) / len(values) if values else math.nan
        out[name], out[f"{name}_std"] = mean, math.sqrt(variance)
    return out


def evaluate_qa(
    model, scorer, tokenizer, questions: list[Question], settings: SamplingSettings, desc: str = "qa"
) -> tuple[dict[str, float], list[dict]]:
    """Sample every question with `model`, match answers, score LL/tok with `scorer`; mean/std + examples."""
    rows, examples = [], []
    for index, question in enumerate(tqdm(questions, desc=desc, leave=False)):
        seeded = SamplingSettings(**{**settings.as_dict(), "seed": item_seed(settings.seed, index)})
        replies = sample_replies(model, tokenizer, question.text, seeded)
        answers, matcher = replies.texts, Matcher(question)
        matches = [matcher.match(answer) for answer in answers]
        logliks = token_logliks(scorer, tokenizer, question.text, answers)
        rows.append(
            {
                **question_scores(matches, len(question.answers)),
                **reply_scores(answers, replies.ended, logliks),
            }
        )
        if index < 3:
            examples += [
                {"prompt": question.text, "output": a[:200], "match": m}
                for a, m in zip(answers[:3], matches[:3], strict=True)
            ]
    return mean_std(rows, QA_METRICS), examples


def item_seed(seed: int, index: int) -> int:
    """The sampling seed of item `index`: distinct per item, the same for every method."""
    return seed * 100_003 + index
