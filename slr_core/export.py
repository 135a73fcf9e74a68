"""Everything SLR Explorer writes for users: landscape CSV/JSON files and exported hybrids."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

from .landscape import CSV_COLUMNS, Landscape


def _atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "w", newline="") as stream:
        stream.write(text)
    os.replace(staging, path)
    return path


def landscape_csv(landscape: Landscape) -> str:
    """The landscape as CSV text: kind,start,end,alpha,quality,diversity."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(landscape.rows())
    return buffer.getvalue()


def write_csv(landscape: Landscape, path: str | Path) -> Path:
    """Write the landscape CSV, with a sidecar JSON of its provenance (models, prompts, dtype)."""
    path = _atomic_write_text(path, landscape_csv(landscape))
    _atomic_write_text(path.with_suffix(".meta.json"), json.dumps(landscape.meta, indent=2))
    return path


def write_json(value, path: str | Path) -> Path:
    """Write a JSON file atomically."""
    return _atomic_write_text(path, json.dumps(value, indent=2) + "\n")
