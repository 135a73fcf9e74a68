"""Hand-made 4-layer landscapes with all four CRC numbers, where the strict and paper rules disagree.

post: Q 0.80, strict Q 0.72. At q_fraction 0.9 the paper rule needs Q >= 0.72 and picks [0, 1]
(D 1.5, but it rarely stops: strict Q 0.234); the strict rule needs strict Q >= 0.648 and picks
[1, 1] (D 1.0). Every other interval with more D fails both rules.
"""

from __future__ import annotations

from slr_core.slr.landscape import Landscape, Point

PAPER_PICK, STRICT_PICK = (0, 1), (1, 1)
PAPER_ALPHA, STRICT_ALPHA = 0.5, 0.25


def point(quality: float, diversity: float, stop: float) -> Point:
    """A Point whose strict quality is quality x stop, as the strict CRC defines it (answer diversity: D)."""
    return Point(quality, diversity, stop, quality * stop, diversity)


def two_rule_landscape() -> Landscape:
    """The landscape described above, with a 5-alpha soup whose picks differ by rule too."""
    intervals = {(i, j): point(0.4, 2.0, 0.5) for i in range(4) for j in range(i, 4)}
    intervals.update(
        {
            (0, 0): point(0.79, 0.6, 0.95),
            PAPER_PICK: point(0.78, 1.5, 0.3),
            STRICT_PICK: point(0.75, 1.0, 0.9),
        }
    )
    soup = {
        0.0: point(0.8, 0.5, 0.9),
        STRICT_ALPHA: point(0.76, 0.7, 0.9),
        PAPER_ALPHA: point(0.74, 0.9, 0.5),
        0.75: point(0.5, 1.6, 0.5),
        1.0: point(0.3, 1.8, 0.4),
    }
    return Landscape(4, post=point(0.8, 0.5, 0.9), pre=point(0.3, 1.8, 0.4), intervals=intervals, soup=soup)


def paper_only_landscape() -> Landscape:
    """The same Q and D without the strict numbers (a landscape cached before the strict CRC)."""
    full = two_rule_landscape()

    def strip(p: Point) -> Point:
        return Point(p.quality, p.diversity)

    return Landscape(
        4,
        post=strip(full.post),
        pre=strip(full.pre),
        intervals={k: strip(p) for k, p in full.intervals.items()},
        soup={a: strip(p) for a, p in full.soup.items()},
    )
