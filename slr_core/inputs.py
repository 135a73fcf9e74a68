"""Checks of what a user types, cheap enough to run before any model loads (docs/inputs.md lists them all).

Each check returns the value, converted, or raises InputError (an SLRError, so the CLI exits 2 and the
app shows a gr.Error; also a ValueError). The ranges more than one entry point needs live here once:
the CLI, the app and SamplingSettings all check seeds, temperatures and q_min the same way.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from slr_core.errors import InputError, SLRError

SEED_MAX = 2**32 - 1  # the range every RNG takes (numpy's is the narrowest)
TEMPERATURE_MAX = 5.0
MAX_TEMPERATURES = 8  # an evaluation runs every method at each: more would hold the device for hours
# A visitor's own prompt set in hosted mode (crc.prompt_sets.check_size): every answer's tokenisations
# become rows of every sweep step, so the set's size is the sweep's cost. The shipped sets fit.
PROMPT_SET_CAPS = {
    "prompts": 64,
    "answers": 1000,  # over all prompts
    "answers_per_prompt": 64,
    "answer_chars": 40,
    "instruction_chars": 1000,
}


def _bad(name: str, text: str) -> InputError:
    return InputError(f"{name} {text}" if name else text)


def whole_number(value, name: str = "value", low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high]; 3.0 or "3" counts as 3, while 2.5, NaN or None is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise _bad(name, f"needs a number, got {value!r}.") from None
        if not as_float.is_integer():
            raise _bad(name, f"must be a whole number, got {value!r}.")
        number = int(as_float)
    if (low is not None and number < low) or (high is not None and number > high):
        if high is None:
            span = f"of at least {low}"
        else:
            span = f"of at most {high}" if low is None else f"from {low} to {high}"
        raise _bad(name, f"must be a whole number {span}, got {number}.")
    return number


def real_number(
    value,
    name: str = "value",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a finite float in [low, high]; low_open/high_open leave that end out."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad(name, f"needs a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise _bad(name, f"must be a finite number, got {value!r}.")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        left = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        right = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise _bad(name, f"must lie in {left}, {right}, got {number:g}.")
    return number


def seed(value, name: str = "seed") -> int:
    """A random seed: a whole number from 0 to 2^32 - 1."""
    return whole_number(value, name, 0, SEED_MAX)


def temperature(value, name: str = "temperature") -> float:
    """A sampling temperature: 0 < T <= 5."""
    return real_number(value, name, 0.0, TEMPERATURE_MAX, low_open=True)


def temperatures(values, name: str = "temperatures") -> list[float]:
    """A list of sampling temperatures: each 0 < T <= 5, repeats dropped, sorted, 1 to MAX_TEMPERATURES.

    Repeats would repeat the same work (the API can send [1.0] * 200), so they count once."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise _bad(name, f"needs a list of numbers, got {values!r}.")
    values = list(values)
    if len(values) > 64 * MAX_TEMPERATURES:  # refuse a huge list before converting each entry
        raise _bad(name, f"takes at most {MAX_TEMPERATURES} different values, got a list of {len(values)}.")
    unique = sorted({temperature(value) for value in values})
    if not unique:
        raise _bad("", "Pick at least one temperature.")
    if len(unique) > MAX_TEMPERATURES:
        raise _bad(name, f"takes at most {MAX_TEMPERATURES} different values, got {len(unique)}.")
    return unique


def q_fraction(value, name: str = "q_min fraction") -> float:
    """q_min as a fraction of the post-trained model's quality: 0 < f <= 1 (0.9 in the paper).

    0 would make every interval feasible, so the pick would ignore quality altogether."""
    return real_number(value, name, 0.0, 1.0, low_open=True)


def q_min(value, name: str = "q_min") -> float:
    """An absolute q_min: a quality is a probability, so 0 <= q <= 1."""
    return real_number(value, name, 0.0, 1.0)


def prompt(value, max_chars: int | None = None, name: str = "prompt") -> str:
    """A prompt to sample: text, not empty once stripped, at most `max_chars` characters (None: no cap)."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise _bad("", "Write a prompt first (or pick an example).")
    if max_chars is not None and len(text) > max_chars:
        raise _bad(
            "",
            f"The {name} has {len(text)} characters; this server takes at most {max_chars} "
            "(SLR_PROMPT_CHARS): shorten it.",
        )
    return text


def output_file(path, name: str = "--out") -> Path:
    """A file a command writes at its end: not a folder, inside a folder that exists or can be made."""
    text = str(path).strip()
    if not text:
        raise _bad(name, "needs a file name, got an empty one.")
    target = Path(text).expanduser()
    if target.is_dir():
        raise _bad(name, f"{target} is a folder: name a file to write (the folder may hold it).")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the file's folder is made when the file is written
    if not folder.is_dir():
        raise _bad(name, f"cannot write {target}: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _bad(name, f"cannot write {target}: no permission to write in {folder}.")
    return target


def flag(check: Callable, **options) -> Callable[[str], object]:
    """`check` as an argparse type: a bad value gets argparse's own error (usage line, exit 2)."""

    def parse(text: str):
        try:
            return check(text, name="", **options)
        except SLRError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = check.__name__
    return parse
