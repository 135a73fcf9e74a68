"""Atomic writes: a file or folder appears complete, with the modes open()/mkdir() would give, or not at all."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def publish(path: Path) -> None:
    """Give `path` (and all inside it) the modes open() and mkdir() would have: 0666/0777 less umask."""
    # mkstemp and mkdtemp stage privately (0600/0700); results and model folders are meant to be shared.
    mask = os.umask(0)  # the only way to read the umask; set back at once
    os.umask(mask)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` to write; when the block ends without error it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so the final os.replace is a rename on one filesystem: readers never see half a file.
    handle, name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".partial", dir=path.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        publish(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)  # gone already when the rename succeeded


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8, newlines as given) to `path` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as staging:
        with open(staging, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
    return path


def write_json(path: str | Path, value) -> Path:
    """Write `value` as indented JSON (with a final newline) to `path` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def csv_text(rows: Iterable[dict], columns: list[str] | tuple[str, ...]) -> str:
    """Rows of dicts as CSV text with a header, '\\n' line ends."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: str | Path, rows: Iterable[dict], columns: list[str] | tuple[str, ...]) -> Path:
    """Write rows of dicts as CSV (header first) to `path` atomically."""
    return write_text_atomic(path, csv_text(rows, columns))


def staging_folder(target: Path, suffix: str = ".partial") -> Path:
    """A new private folder beside `target` to build a folder in before replace_folder moves it."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-", suffix=suffix, dir=target.parent))


def replace_folder(staging: Path, target: Path) -> None:
    """Publish `staging` and rename it to `target`, so `target` holds the old folder or the new one whole."""
    publish(staging)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(staging, target)
        return
    # A folder cannot be replaced in one rename: retire the old one first, then delete it.
    retired = target.with_name(f".{target.name}-{os.getpid()}-{time.time_ns()}.old")
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
