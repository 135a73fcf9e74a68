"""Helpers shared by the export, model-card and Hub tests: tiny pairs, folder tensors, a strict landscape."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import torch
from safetensors import safe_open

from slr_core.models.loading import ModelPair, load_pair
from slr_core.models.settings import Settings
from slr_core.slr.landscape import Landscape, Point

# The q-fraction the synthetic landscape is built around; picks below are worked out for it.
FRACTION = 0.8
STRICT_PICK, PAPER_PICK = (0, 1), (1, 2)


def load_tiny(tiny_paths, family: str) -> ModelPair:
    """The tiny pair of one family, in float32 on the CPU."""
    pre, post = tiny_paths(family)
    return load_pair(str(pre), str(post), Settings(device="cpu", dtype="float32"))


def folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder's safetensors files, by name."""
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, "pt") as stream:
            tensors.update({name: stream.get_tensor(name) for name in stream.keys()})
    return tensors


def mergekit_command() -> list[str] | None:
    """mergekit-yaml from $MERGEKIT_YAML (as .ci/run sets it) or the PATH; None when not installed."""
    found = os.environ.get("MERGEKIT_YAML") or shutil.which("mergekit-yaml")
    return [found] if found else None


def mergekit_rebuild(folder: Path, out: Path) -> dict[str, torch.Tensor]:
    """Rebuild an export from its mergekit.yaml with mergekit itself; the rebuilt tensors by name."""
    run = subprocess.run(
        [*mergekit_command(), str(folder / "mergekit.yaml"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return folder_tensors(out)


def strict_landscape() -> Landscape:
    """A 4-layer landscape where the strict and paper rules pick different intervals at FRACTION.

    Thresholds: strict 0.8 x 0.70 = 0.56, paper 0.8 x 0.80 = 0.64. [0, 1] is the most diverse
    interval both rules allow; [1, 2] is more diverse, passes the first-token rule, but rarely stops.
    """
    return Landscape(
        num_layers=4,
        post=Point(0.80, 0.20, stop=0.90, strict_quality=0.70),
        pre=Point(0.30, 0.90, stop=0.20, strict_quality=0.10),
        intervals={
            (0, 0): Point(0.78, 0.30, stop=0.90, strict_quality=0.68),
            (0, 1): Point(0.74, 0.40, stop=0.88, strict_quality=0.60),
            (1, 2): Point(0.70, 0.50, stop=0.50, strict_quality=0.35),
            (2, 3): Point(0.55, 0.60, stop=0.95, strict_quality=0.52),
        },
    )
