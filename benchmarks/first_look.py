"""Time the app's first look on the demo pair, through the page's own handlers, with an empty result cache.

Usage (SLR_CACHE_DIR must name an empty or fresh folder; the demo snapshot is built there if missing):
    SLR_CACHE_DIR=/tmp/first-look python benchmarks/first_look.py [--full]
Prints the load time, when the first complete (coarse) map is drawn, and with --full when the full map
(strict columns and soup) is complete and how many redraws the page made and what they cost. The shipped demo landscapes are set aside, so everything is computed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: E402
from slr_core.engine import cached_sweep  # noqa: E402
from slr_core.serve.session import SessionView  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="go on until the full map is complete")
    args = parser.parse_args()
    cached_sweep.SHIPPED_DIR = Path(tempfile.mkdtemp())  # nothing shipped: every cell is computed
    page, view = app.build_page(), SessionView()
    drawing = {"count": 0, "seconds": 0.0}
    draw = page.view_update

    def timed_draw(shown: SessionView) -> dict:  # what each redraw of the maps, plots and tables costs
        began = time.perf_counter()
        try:
            return draw(shown)
        finally:
            drawing["count"] += 1
            drawing["seconds"] += time.perf_counter() - began

    page.view_update = timed_draw
    began = time.perf_counter()
    page.show_pair(view, "demo:pre", "demo:post")
    loaded = time.perf_counter()
    print(f"pair loaded in {loaded - began:.1f} s", flush=True)
    first = None
    for update in page.run_sweep(view):
        meta = json.loads(update[page.heat_diversity])["layout"]["meta"]
        if (
            first is None
            and meta["filled"] == view.landscape.num_layers * (view.landscape.num_layers + 1) // 2
        ):
            first = time.perf_counter() - loaded
            print(
                f"first complete map drawn {first:.1f} s after the load ({meta['coarse']} coarse cells)",
                flush=True,
            )
            if not args.full:
                print(f"{drawing['count']} redraws took {drawing['seconds']:.1f} s in all", flush=True)
                return
    print(
        f"full map complete {time.perf_counter() - loaded:.1f} s after the load: {update[page.sweep_status]}"
    )
    print(f"{drawing['count']} redraws took {drawing['seconds']:.1f} s in all", flush=True)


if __name__ == "__main__":
    main()
