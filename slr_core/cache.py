"""Everything SLR Explorer keeps on disk between runs: sweep results and model snapshots.

A result's key names everything its numbers depend on: the context (the pair, prompts, valid tokens,
mode: cached_sweep.context_id) and the runtime (torch, transformers, and a hash of the sweep engine's
code), so nobody has to remember to bump a version. A damaged database is moved aside and rebuilt; a
store that cannot be written is reported by keeping(), never claimed as kept.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import os
import shutil
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import diskcache

from slr_core.files import replace_folder, staging_folder

SCHEMA_VERSION = 2  # 2: results carry the strict-CRC numbers (stop, strict_quality)
RESULT_METRICS = ("quality", "diversity", "stop", "strict_quality")
# Numbers a result may lack: a landscape shipped before answer_diversity existed is stored without it.
OPTIONAL_METRICS = ("answer_diversity",)
CACHE_ENV = "SLR_CACHE_DIR"
# The modules whose code computes a cached result's numbers: the hash covers them and every slr_core
# module they import, transitively, so an edit anywhere below them (not to comments or docstrings)
# gives every result a new key.
ENGINE_ROOTS = ("slr_core.engine.cached_sweep", "slr_core.engine.lambda_slice")
STORE_ERRORS = (sqlite3.Error, OSError, diskcache.Timeout)  # what a store that cannot be used raises
_problems: dict[Path, str | None] = {}  # per results folder: why the last write failed, None if it worked
_moved: dict[Path, Path] = {}  # per results folder: where a damaged database was moved to
_recovering = threading.Lock()


def cache_root() -> Path:
    """The cache folder: $SLR_CACHE_DIR, else ./cache."""
    return Path(os.environ.get(CACHE_ENV, "cache")).expanduser().resolve()


def _store() -> diskcache.Cache:
    # One short-lived handle per use: diskcache is process- and thread-safe through SQLite.
    return diskcache.Cache(str(cache_root() / "results"), size_limit=2**33)


def _damaged(error: BaseException) -> bool:
    # "file is not a database", "database disk image is malformed"; not a locked or read-only one.
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)


def _using(action: Callable[[diskcache.Cache], object]):
    """action(store); a damaged database is moved aside and rebuilt once, then the action retried."""
    try:
        with _store() as store:
            return action(store)
    except sqlite3.DatabaseError as error:
        if not _damaged(error):
            raise
        _move_aside(cache_root() / "results", error)
    with _store() as store:
        return action(store)


def _move_aside(folder: Path, error: BaseException) -> None:
    with _recovering:  # one thread moves it; the others find a fresh database
        try:
            with diskcache.Cache(str(folder)) as store:
                len(store)
            return  # readable now: another thread (or process) has already rebuilt it
        except sqlite3.DatabaseError as again:
            if not _damaged(again):
                raise
        target = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        folder.rename(target)
        _moved[folder] = target
    warnings.warn(
        f"The result cache {folder} could not be read ({error}); it was moved aside to {target} and an "
        "empty one started. Results computed before are computed again when needed.",
        RuntimeWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class Keeping:
    """Whether results are being kept on disk, and a sentence saying so truthfully."""

    kept: bool
    folder: Path
    problem: str | None = None
    moved_to: Path | None = None

    def note(self) -> str:
        """One sentence for a page or a log."""
        if not self.kept:
            return (
                f"Results are not being kept: the cache at {self.folder} cannot be written ({self.problem}). "
                "They are shown, but a restart computes them again."
            )
        moved = f" (a damaged cache was moved aside to {self.moved_to})" if self.moved_to else ""
        return (
            f"Results are kept in the cache at {self.folder}, so a restart resumes where it stopped{moved}."
        )


def keeping() -> Keeping:
    """Whether the last write to the result cache worked (true until one fails)."""
    folder = cache_root() / "results"
    problem = _problems.get(folder)
    return Keeping(problem is None, folder, problem, _moved.get(folder))


def probe() -> Keeping:
    """Try one small write now (e.g. at startup), so keeping() is known before any result is stored."""
    put_json("probe/keeping", time.time())
    return keeping()


def _wrote(error: BaseException | None) -> bool:
    folder = cache_root() / "results"
    reason = (
        None if error is None else (getattr(error, "strerror", None) or str(error) or type(error).__name__)
    )
    if reason is not None and _problems.get(folder) != reason:
        warnings.warn(f"Results are not being kept: cannot write {folder} ({reason}).", RuntimeWarning, 3)
    _problems[folder] = reason
    return error is None


def module_path(name: str) -> Path:
    """The source file of an slr_core module or package, found without importing it."""
    base = Path(__file__).parent.joinpath(*name.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_modules(roots: tuple[str, ...]) -> list[str]:
    """Every slr_core module the roots import, transitively (function-level imports too), sorted."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or not module_path(name).is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(module_path(name).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slr_core"):
                todo += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("slr_core")]
    return sorted(seen)


@functools.cache
def code_version(roots: tuple[str, ...] = ENGINE_ROOTS) -> str:
    """A hash of the code the roots run (imported_modules), comments, docstrings and layout aside."""
    digest = hashlib.sha256()
    for name in imported_modules(roots):
        tree = ast.parse(module_path(name).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]
        digest.update(name.encode() + ast.dump(tree).encode())
    return digest.hexdigest()[:12]


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


@functools.cache
def runtime_id() -> str:
    """What computed a result, besides its context: torch, transformers and the engine's code."""
    import torch
    import transformers

    text = f"torch={torch.__version__}|transformers={transformers.__version__}|code={code_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def result_key(context: str, name: str) -> str:
    """The key of one result (an interval, a reference model, a soup alpha) in a sweep context."""
    return f"v{SCHEMA_VERSION}/{runtime_id()}/{context}/{name}"


def _valid_result(value) -> bool:
    if not isinstance(value, dict) or value.get("schema") != SCHEMA_VERSION:
        return False
    optional = all(value.get(x) is None or isinstance(value[x], float) for x in OPTIONAL_METRICS)
    return optional and all(
        isinstance(value.get(x), float) and math.isfinite(value[x]) for x in RESULT_METRICS
    )


def get_result(key: str) -> dict | None:
    """A stored result, or None when missing or unreadable (then it is recomputed, not trusted)."""
    try:
        value = _using(lambda store: store.get(key))
    except Exception:  # a corrupt row or pickle, an unreadable store: treat as missing
        return None
    return value if _valid_result(value) else None


def get_results(keys: list[str]) -> dict[str, dict | None]:
    """Many stored results through one handle (opening one per key costs ~25 ms); None if unusable."""

    def read(store: diskcache.Cache) -> dict[str, dict | None]:
        found = {}
        for key in keys:
            try:
                value = store.get(key)
            except Exception as error:  # one corrupt row must not hide the rest
                if _damaged(error):
                    raise  # the database itself: move it aside
                value = None
            found[key] = value if _valid_result(value) else None
        return found

    try:
        return _using(read)
    except Exception:
        return dict.fromkeys(keys)


def put_result(key: str, metrics: dict[str, float]) -> bool:
    """Store one result (every RESULT_METRICS number) at once, so an interruption loses nothing.

    False (with a warning, and keeping() saying why) when the store cannot be written: the caller's
    work goes on, it is just not kept."""
    value = {"schema": SCHEMA_VERSION, **{name: float(metrics[name]) for name in RESULT_METRICS}}
    value |= {name: None if metrics.get(name) is None else float(metrics[name]) for name in OPTIONAL_METRICS}
    return _put(key, value)


def _put(key: str, value) -> bool:
    try:
        _using(lambda store: store.set(key, value))
    except STORE_ERRORS as error:
        return _wrote(error)
    return _wrote(None)


def get_json(key: str):
    """A stored JSON-like value (evaluation results, file hashes), or None."""
    try:
        return _using(lambda store: store.get(key))
    except Exception:
        return None


def put_json(key: str, value) -> bool:
    """Store a JSON-like value under `key`; False when it could not be kept (see put_result)."""
    return _put(key, json.loads(json.dumps(value)))


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
    put_json(memo_key, value)  # a read-only cache still lets us hash
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
