"""A running sweep redraws the page by cost: at most DRAW_SHARE of the wall time goes to drawing."""

from __future__ import annotations

import time

from slr_core.serve.session import DRAW_SHARE, SessionView
from slr_core.slr.landscape import Landscape, Point


def sweep_steps(num_layers: int, step_seconds: float, soup_steps: int = 0):
    """A stand-in sweep that yields one more result every `step_seconds` (the sweep's own work): every
    interval, then `soup_steps` soup points, as the full pass goes on after the map is complete."""
    landscape = Landscape(num_layers)
    for start in range(num_layers):
        for end in range(start, num_layers):
            time.sleep(step_seconds)
            landscape.intervals[(start, end)] = Point(0.5, 1.0)
            yield landscape
    for step in range(soup_steps):
        time.sleep(step_seconds)
        landscape.soup[step / soup_steps] = Point(0.5, 1.0)
        yield landscape


def test_redraws_take_at_most_their_share_of_the_wall_time_and_the_complete_map_is_drawn():
    view = SessionView(landscape=Landscape(12))
    began, drawing, drawn = time.monotonic(), 0.0, []
    for running in view.follow(sweep_steps(12, 0.01, 300), every=0.0):  # 378 steps of 10 ms
        if running:
            redraw = time.monotonic()
            time.sleep(0.05)  # a redraw as dear as five steps: drawing every step would take 83 % of the time
            drawing += time.monotonic() - redraw
            drawn.append(len(view.landscape.intervals))
    wall = time.monotonic() - began
    # Two draws on top of the share: the first result and the step that completes the map are drawn
    # whether due or not; 20 ms for sleep overshoot on a busy machine.
    assert drawing <= DRAW_SHARE * wall + 2 * 0.05 + 0.02, (drawing, wall)
    assert 4 <= len(drawn) < 378 / 20
    assert drawn[0] == 1  # the first result is drawn at once
    assert 78 in drawn  # so is the step that completes the map, due or not


def test_a_cheap_redraw_still_waits_the_minimum_interval():
    view = SessionView(landscape=Landscape(6))
    drawn = [running for running in view.follow(sweep_steps(6, 0.01), every=10.0)]
    assert drawn == [True, True, False]  # the first step and the completing step; then the end
