"""What an evaluation run will do and about how long it takes: said on the Evaluate tab before a run,
and how far a running one has got."""

from __future__ import annotations

from slr_core.downstream.evaluation import PRESETS, TASKS, item_count, select_methods
from slr_core.errors import SLRError
from slr_core.slr.landscape import Landscape

# Measured: `python -m slr_core evaluate --task T --quick` on the demo pair (268 M parameters), float32,
# the 2-core CPU of README's "Downstream on the demo pair" (2026-11-30, shared with other jobs): wall
# seconds for its 16 steps (8 methods x 2 temperatures).
MEASURED = {"qa": (847.0, 16), "writing": (3925.0, 16)}
MEASURED_PARAMS = 268e6
TASK_NAMES = {"qa": "open-ended QA", "writing": "creative writing"}


def _minutes(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds < 60:
        return "under a minute"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def step_seconds(task: str, quick: bool, num_params: float) -> float:
    """About how long one step (one method at one temperature) takes on a CPU like the measured one:
    the measured quick run's step, scaled by the new tokens a step may sample and by model size."""
    seconds, steps = MEASURED[task]
    quick_run, run = PRESETS[(task, True)], PRESETS[(task, bool(quick))]
    tokens = item_count(task, quick) * run.num_samples * run.max_new_tokens
    quick_tokens = item_count(task, True) * quick_run.num_samples * quick_run.max_new_tokens
    return seconds / steps * tokens / quick_tokens * num_params / MEASURED_PARAMS


def plan_markdown(
    task: str, quick: bool, temperatures, landscape: Landscape | None, num_params: float, device: str
) -> str:
    """What a run will sample, and about how long it takes (Markdown), before it starts."""
    if task not in TASKS:
        return f"Unknown task '{task}'."
    if not temperatures:
        return "Pick at least one temperature."
    settings = PRESETS[(task, bool(quick))]
    try:
        methods = [m.label for m in select_methods(landscape)[0]] if landscape is not None else []
    except SLRError:
        methods = []
    methods_text = (
        f"{len(methods)} models ({', '.join(methods)})"
        if methods
        else "the post-trained model, SLR and Proxy-Soup under each rule, the SLR-Early/-Late controls "
        "and the pre-trained model (once the CRC landscape is complete)"
    )
    count = len(methods) or 8
    steps = count * len(temperatures)
    items = item_count(task, quick)
    lines = [
        f"**A run of {TASK_NAMES[task]}{' (quick)' if quick else ''}** samples {methods_text}, at "
        f"temperature {', '.join(f'{t:g}' for t in sorted(temperatures))}: {items} "
        f"{'questions' if task == 'qa' else 'prompts'} × {settings.num_samples} samples of at most "
        f"{settings.max_new_tokens} new tokens each, in {steps} steps (one model at one temperature); "
        "each step's rows appear as it ends, and steps already computed come from the cache."
    ]
    estimate = steps * step_seconds(task, quick, num_params)
    where = (
        "on a 2-core CPU like the one measured" if device == "cpu" else "on a 2-core CPU (a GPU is faster)"
    )
    lines.append(
        f"About **{_minutes(estimate)}** {where}: the measured quick run of the demo pair "
        f"({_minutes(MEASURED[task][0])} for 16 steps) scaled by tokens and model size."
    )
    return "\n\n".join(lines)


def progress_markdown(results: dict, elapsed: float, running: bool) -> str:
    """How far a run has got: steps done, time so far and, while running, about how long is left."""
    steps = results.get("meta", {}).get("steps", {})
    done, total = steps.get("done", 0), steps.get("total", 0)
    line = f"{done} / {total} steps in {_minutes(elapsed)}"
    if running and 0 < done < total:
        line += f"; about {_minutes(elapsed / done * (total - done))} left at this pace"
    elif not running and done < total:
        line += ": stopped. The rows above are the steps that finished (kept in the cache)."
    elif done == total:
        line += ": done."
    return line
