"""Everything SLR Explorer keeps on disk between runs: sweep results and model snapshots."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import diskcache

from .files import replace_folder, staging_folder

SCHEMA_VERSION = 2  # 2: results carry the strict-CRC numbers (stop, strict_quality)
RESULT_METRICS = ("quality", "diversity", "stop", "strict_quality")
CACHE_ENV = "SLR_CACHE_DIR"


def cache_root() -> Path:
    """The cache folder: $SLR_CACHE_DIR, else ./cache."""
    return Path(os.environ.get(CACHE_ENV, "cache")).expanduser().resolve()


def _store() -> diskcache.Cache:
    # One short-lived handle per use: diskcache is process- and thread-safe through SQLite.
    return diskcache.Cache(str(cache_root() / "results"), size_limit=2**33)


def result_key(context: str, name: str) -> str:
    """The key of one result (an interval, a reference model, a soup alpha) in a sweep context."""
    return f"v{SCHEMA_VERSION}/{context}/{name}"


def _valid_result(value) -> bool:
    if not isinstance(value, dict) or value.get("schema") != SCHEMA_VERSION:
        return False
    return all(isinstance(value.get(x), float) and math.isfinite(value[x]) for x in RESULT_METRICS)


def get_result(key: str) -> dict | None:
    """A stored result, or None when missing or unreadable (then it is recomputed, not trusted)."""
    try:
        with _store() as store:
            value = store.get(key)
    except Exception:  # a corrupt row or pickle: treat as missing
        return None
    return value if _valid_result(value) else None


def get_results(keys: list[str]) -> dict[str, dict | None]:
    """Many stored results through one handle (opening one per key costs ~25 ms); None if unusable."""
    found = {}
    try:
        with _store() as store:
            for key in keys:
                try:
                    value = store.get(key)
                except Exception:  # one corrupt row must not hide the rest
                    value = None
                found[key] = value if _valid_result(value) else None
    except Exception:
        return dict.fromkeys(keys)
    return found


def put_result(key: str, metrics: dict[str, float]) -> None:
    """Store one result (every RESULT_METRICS number) at once, so an interruption loses nothing."""
    value = {"schema": SCHEMA_VERSION, **{name: float(metrics[name]) for name in RESULT_METRICS}}
    with _store() as store:
        store.set(key, value)


def get_json(key: str):
    """A stored JSON-like value (evaluation results, file hashes), or None."""
    try:
        with _store() as store:
            return store.get(key)
    except Exception:
        return None


def put_json(key: str, value) -> None:
    """Store a JSON-like value under `key`."""
    with _store() as store:
        store.set(key, json.loads(json.dumps(value)))


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) so big weights hash once."""
    stat = path.stat()
    memo_key = f"digest/{path.resolve()}/{stat.st_size}/{stat.st_mtime_ns}"
    known = get_json(memo_key)
    if isinstance(known, str):
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    value = digest.hexdigest()
    try:
        put_json(memo_key, value)
    except OSError:  # a read-only cache still lets us hash
        pass
    return value


def snapshot_dir(name: str) -> Path:
    """Where the model snapshot `name` (e.g. a dequantized GGUF) lives in the cache."""
    return cache_root() / "models" / name


def write_model_snapshot(folder: Path, state_dict: dict, config, tokenizer) -> Path:
    """Write a loadable model folder (safetensors, config, tokenizer) atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder)
    try:
        tensors = {name: t.detach().contiguous() for name, t in state_dict.items()}
        save_file(_untie(tensors), str(staging / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return folder


def _untie(tensors: dict) -> dict:
    # safetensors refuses shared storage (tied embeddings); drop later names that alias earlier ones.
    seen, kept = set(), {}
    for name, tensor in tensors.items():
        pointer = (tensor.data_ptr(), tuple(tensor.shape))
        if pointer in seen:
            continue
        seen.add(pointer)
        kept[name] = tensor
    return kept
