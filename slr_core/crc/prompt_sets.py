"""Prompt sets: the shipped ones by name ("paper", "open") and a user's own JSON, checked before any work.

A prompt set is a JSON list of {"instruction": text, "valid": [answer, ...]}. An answer is any
non-empty text without surrounding whitespace (one character, a word, a number, a name); answers of
several tokens are scored over every way the tokenizer can say them (README, "Answers of several
tokens"). Whether a tokenizer can say an answer at all is checked when the set is encoded
(crc.prompts.encode_prompts), after the tokenizer loads and before any sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

from slr_core import inputs
from slr_core.crc import open_answers
from slr_core.crc.prompts import CRCPrompt, default_prompts
from slr_core.errors import PromptSetError

# Named sets, in the order a picker lists them; "paper" is the default everywhere.
SET_NAMES = ("paper", "open")
DEFAULT_SET = "paper"
SET_LABELS = {
    "paper": "paper: 40 random digit / letter prompts",
    "open": f"open answers: {len(open_answers.TABLE)} prompts with word, name and number answers",
}


def open_prompts() -> list[CRCPrompt]:
    """The shipped "open answers" set (crc/open_answers.py), in its table's order."""
    return [CRCPrompt(text, answers) for text, answers in open_answers.TABLE.values()]


def named_prompts(name: str) -> list[CRCPrompt]:
    """A shipped set by name: "paper" (the paper's digits and letters) or "open" (open answers)."""
    if name == "paper":
        return default_prompts()
    if name == "open":
        return open_prompts()
    raise PromptSetError(f"Unknown prompt set '{name}': use one of {', '.join(SET_NAMES)}, or a JSON file.")


def prompt_set(spec: str | None) -> list[CRCPrompt]:
    """`--prompts`: a shipped set's name, else a JSON file (read and checked); None means "paper"."""
    text = (spec or DEFAULT_SET).strip()
    if text in SET_NAMES:
        return named_prompts(text)
    if not Path(text).expanduser().is_file():
        raise PromptSetError(
            f"--prompts {text!r} is neither a shipped prompt set ({', '.join(SET_NAMES)}) nor a file: "
            "give a set's name or the path of a JSON prompt set."
        )
    return load_prompts(Path(text).expanduser())


def load_prompts(path: str | Path, name: str | None = None) -> list[CRCPrompt]:
    """Read and check a prompt set file; `name` is how messages call it (default: the path)."""
    where = name or str(path)
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not UTF-8
        raise PromptSetError(f"Cannot read prompt set {where}: {error}") from error
    return parse_prompt_set(items, where)


def parse_prompt_set(items, where: str = "the prompt set") -> list[CRCPrompt]:
    """Check a decoded JSON prompt set: a non-empty list of prompts, no instruction twice."""
    if not isinstance(items, list) or not items:
        raise PromptSetError(f"{where}: expected a non-empty JSON list of prompt objects.")
    prompts, seen = [], {}
    for index, item in enumerate(items):
        prompt = _parse_prompt(item, f"{where}, prompt {index}")
        key = prompt.instruction.strip()
        if key in seen:
            raise PromptSetError(
                f"{where}, prompt {index}: repeats the instruction of prompt {seen[key]}; "
                "each instruction may appear once (a repeat would count twice in every mean)."
            )
        seen[key] = index
        prompts.append(prompt)
    return prompts


def _parse_prompt(item, where: str) -> CRCPrompt:
    if not isinstance(item, dict) or not isinstance(item.get("instruction"), str):
        raise PromptSetError(f"{where}: needs a string 'instruction'.")
    if not item["instruction"].strip():
        raise PromptSetError(f"{where}: the 'instruction' is empty: write the request the model answers.")
    valid = item.get("valid")
    valid = list(valid) if isinstance(valid, str) else valid  # "0123": one answer per character
    if not isinstance(valid, list) or not valid:
        raise PromptSetError(f"{where}: 'valid' must be a non-empty list of answers.")
    for answer in valid:
        if not isinstance(answer, str) or not answer.strip():
            raise PromptSetError(
                f"{where}: every valid answer must be non-empty text, got {answer!r}: remove it or write the answer."
            )
        if answer != answer.strip():
            raise PromptSetError(
                f"{where}: the answer {answer!r} has whitespace around it; write it as {answer.strip()!r} "
                "(a reply's surrounding whitespace is ignored when it is scored)."
            )
    repeated = sorted({answer for answer in valid if valid.count(answer) > 1})
    if repeated:
        raise PromptSetError(
            f"{where}: 'valid' lists {repeated} more than once; list each answer once "
            "(a repeat would count its probability twice)."
        )
    return CRCPrompt(item["instruction"], tuple(valid))


def check_size(prompts: list[CRCPrompt], hosted: bool) -> list[CRCPrompt]:
    """`prompts` if they fit hosted mode's caps (inputs.PROMPT_SET_CAPS; none locally), else PromptSetError."""
    if not hosted:
        return prompts
    caps = inputs.PROMPT_SET_CAPS
    answers = sum(len(p.valid) for p in prompts)
    widest = max(prompts, key=lambda p: len(p.valid))
    longest = max((a for p in prompts for a in p.valid), key=len)
    wordiest = max(prompts, key=lambda p: len(p.instruction))
    over = [
        (len(prompts) > caps["prompts"], f"{len(prompts)} prompts (at most {caps['prompts']})"),
        (answers > caps["answers"], f"{answers} answers in all (at most {caps['answers']})"),
        (
            len(widest.valid) > caps["answers_per_prompt"],
            f"{len(widest.valid)} answers for one prompt (at most {caps['answers_per_prompt']})",
        ),
        (
            len(longest) > caps["answer_chars"],
            f"an answer of {len(longest)} characters (at most {caps['answer_chars']})",
        ),
        (
            len(wordiest.instruction) > caps["instruction_chars"],
            f"an instruction of {len(wordiest.instruction)} characters (at most {caps['instruction_chars']})",
        ),
    ]
    too_big = [text for is_over, text in over if is_over]
    if too_big:
        raise PromptSetError(
            "This prompt set is larger than this server takes: " + "; ".join(too_big) + ". Use a smaller set "
            "here, or run SLR Explorer locally (`python -m slr_core sweep --prompts FILE`), which has no caps."
        )
    return prompts
