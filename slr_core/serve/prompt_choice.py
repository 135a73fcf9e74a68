"""The page's prompt-set picker: a shipped set by name, or a visitor's own JSON file, checked before any work.

What the page shows per set is its own landscape: the cache keys results by the encoded prompts'
digest (engine.cached_sweep.context_id), so each set is swept once and then read back.
"""

from __future__ import annotations

from pathlib import Path

from slr_core.crc.prompt_sets import (
    DEFAULT_SET,
    SET_LABELS,
    SET_NAMES,
    check_size,
    load_prompts,
    named_prompts,
)
from slr_core.crc.prompts import CRCPrompt
from slr_core.errors import InputError

UPLOAD = "upload"
SHORT_NAMES = {"paper": "paper", "open": "open answers"}  # how maps and notes name each shipped set


def choices() -> list[tuple[str, str]]:
    """(label, value) pairs for the picker: the shipped sets, then a visitor's own file."""
    return [(SET_LABELS[name], name) for name in SET_NAMES] + [
        ("your own JSON file (upload it below)", UPLOAD)
    ]


def chosen_prompts(
    choice: str, upload: str | None, hosted: bool
) -> tuple[str, tuple[CRCPrompt, ...] | None] | None:
    """(name to show, prompts; None for the paper's set) of a picker choice and an uploaded file's path;
    None while "upload" is picked and no file is given yet. A bad file is a PromptSetError naming the
    file; in hosted mode a set over the caps (inputs.PROMPT_SET_CAPS) is refused too."""
    if choice in SET_NAMES:
        return SHORT_NAMES[choice], None if choice == DEFAULT_SET else tuple(named_prompts(choice))
    if choice != UPLOAD:
        raise InputError(f"Unknown prompt set {choice!r}: pick one of the list.")
    if not upload:
        return None
    path = Path(upload)
    prompts = check_size(load_prompts(path, name=path.name), hosted)
    return f"{path.name} ({len(prompts)} prompts)", tuple(prompts)
