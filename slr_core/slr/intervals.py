"""What can be restored, as text and as numbers: restore modes, intervals and layer sets, checked.

A leaf of the slr package (no torch): hybrids, landscapes, the CLI and the page all read layer text
through these parsers, which check every bound against the depth before expanding anything, so a
typed range like 0-99999999999 costs nothing but its error.
"""

from __future__ import annotations

from slr_core.errors import IntervalError

RESTORE_MODES = ("layer", "attention", "mlp")
MAX_LAYER_TEXT = 4000  # characters of typed layers or intervals; far more than any real model needs


def check_interval(start: int, end: int, num_layers: int) -> None:
    """Raise IntervalError unless 0 <= start <= end <= num_layers - 1."""
    if not (isinstance(start, int) and isinstance(end, int)):
        raise IntervalError(f"Interval bounds must be integers, got [{start!r}, {end!r}].")
    if not 0 <= start <= end <= num_layers - 1:
        raise IntervalError(
            f"Interval [{start}, {end}] is invalid for a {num_layers}-layer model: "
            f"need 0 <= i <= j <= {num_layers - 1} (0-based, inclusive)."
        )


def check_mode(mode: str) -> str:
    """Return `mode` if it is a restore mode, else raise IntervalError naming the choices."""
    if mode not in RESTORE_MODES:
        raise IntervalError(f"Unknown restore mode '{mode}': use one of {', '.join(RESTORE_MODES)}.")
    return mode


def _ranges(text: str, what: str, example: str) -> list[tuple[int, int]]:
    """'3,5,9-11' -> [(3, 3), (5, 5), (9, 11)]: the form only, nothing expanded."""
    text = str(text)
    if len(text) > MAX_LAYER_TEXT:
        raise IntervalError(
            f"The {what} text is {len(text):,} characters long; keep it under {MAX_LAYER_TEXT}."
        )
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bounds = [b.strip() for b in part.split("-")]
        if len(bounds) > 2 or not all(b.isdecimal() and b.isascii() for b in bounds):
            raise IntervalError(f"Cannot read {what} '{part}': write k or i-j with i <= j, e.g. {example}.")
        first, last = int(bounds[0]), int(bounds[-1])
        if first > last:
            raise IntervalError(f"Cannot read {what} '{part}': write k or i-j with i <= j, e.g. {example}.")
        ranges.append((first, last))
    if not ranges:
        raise IntervalError(f"No {what} given in '{text}': type them like {example}.")
    return ranges


def parse_layers(text: str, num_layers: int) -> tuple[int, ...]:
    """'3,5,9-11' -> (3, 5, 9, 10, 11), every bound checked against the depth before expanding."""
    ranges = _ranges(text, "layers", "3,5,9-11")
    for first, last in ranges:
        if last >= num_layers:
            raise IntervalError(
                f"Layers {first}-{last} are invalid for a {num_layers}-layer model: "
                f"use layers 0..{num_layers - 1}, e.g. '3,5,9-11'."
            )
    return tuple(sorted({k for first, last in ranges for k in range(first, last + 1)}))


def parse_intervals(text: str, num_layers: int | None = None) -> set[tuple[int, int]]:
    """'0-3,5-9,7' -> {(0, 3), (5, 9), (7, 7)}, validated against the depth (the form alone without one)."""
    wanted = set(_ranges(text, "interval", "0-3,5-9,7"))
    if num_layers is not None:
        for start, end in sorted(wanted):
            check_interval(start, end, num_layers)
    return wanted
