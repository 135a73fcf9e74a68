"""Files SLR Explorer writes for users: landscape CSVs, and hybrids exported as model folders.

An export is a standard Hugging Face model folder (weights, tokenizer, model card, mergekit config,
provenance JSON), built in a staging folder beside the target and renamed into place whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import shlex
import shutil
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from safetensors import SafetensorError

from slr_core.errors import ExportError
from slr_core.export.mergekit_config import MERGEKIT_FILE, mergekit_yaml
from slr_core.export.model_card import (
    CARD_FILE,
    CLI_PREFIX,
    LANDSCAPE_FILE,
    PROVENANCE_FILE,
    crc_points,
    model_card,
    rule_picks,
    source_metadata,
)
from slr_core.files import (
    atomic_path,
    csv_text,
    replace_folder,
    staging_folder,
    write_json,
    write_text_atomic,
)
from slr_core.models.hosting import HostedPolicy
from slr_core.models.loading import ModelPair, weight_bytes
from slr_core.models.settings import DEFAULT_Q_FRACTION
from slr_core.models.sources import Source
from slr_core.slr.hybrid import Restoration, build_restored, interval_restoration
from slr_core.slr.intervals import check_interval
from slr_core.slr.landscape import CSV_COLUMNS, Landscape

SHARD_SIZE = "5GB"  # the Hub's customary shard size; one file for anything smaller
MIN_EXPORT_SECONDS = 30 * 60  # an export is never evicted for room before its visitor could fetch it
NAME_STEM_LENGTH = 48  # keeps export folder names well under filesystem limits
FILES_ALLOWANCE = 64 * 2**20  # tokenizer (Gemma's tokenizer.json is 33 MB), card, configs, landscape


# ---------------------------------------------------------------- landscape files


def landscape_csv(landscape: Landscape) -> str:
    """The landscape as CSV text with landscape.CSV_COLUMNS (kind, start, end, alpha, CRC numbers)."""
    return csv_text(landscape.rows(), CSV_COLUMNS)


def write_csv(landscape: Landscape, path: str | Path) -> Path:
    """Write the landscape CSV, with a sidecar JSON of its provenance (models, prompts, dtype)."""
    path = write_text_atomic(path, landscape_csv(landscape))
    write_json(path.with_suffix(".meta.json"), landscape.meta)
    return path


# ---------------------------------------------------------------- exported hybrids


def export_hybrid(
    pair: ModelPair,
    start: int,
    end: int,
    out_dir: str | Path,
    landscape: Landscape | None = None,
    overwrite: bool = False,
    command: str = "",
    max_shard_size: str | int = SHARD_SIZE,
    q_fraction: float = DEFAULT_Q_FRACTION,
) -> Path:
    """Write hybrid [start, end] as a Hugging Face model folder, all at once or not at all."""
    check_interval(start, end, pair.num_layers)
    restoration = interval_restoration(start, end)
    return export_restoration(
        pair, restoration, out_dir, landscape, overwrite, command, max_shard_size, q_fraction
    )


def export_restoration(
    pair: ModelPair,
    restoration: Restoration,
    out_dir: str | Path,
    landscape: Landscape | None = None,
    overwrite: bool = False,
    command: str = "",
    max_shard_size: str | int = SHARD_SIZE,
    q_fraction: float = DEFAULT_Q_FRACTION,
) -> Path:
    """Write any restoration (set of layers, mode, fraction) as a Hugging Face model folder."""
    restoration.check(pair.num_layers)
    target = check_target(out_dir, overwrite, (pair.pre_source, pair.post_source))
    try:
        staging = staging_folder(target)
    except OSError as error:
        raise ExportError(f"Cannot write in {target.parent}: {error.strerror or error}.") from error
    try:
        _write_hybrid(staging, pair, restoration, max_shard_size)
        cli_command = _cli_command(pair, restoration, target)
        _write_sidecars(
            staging, pair, restoration, landscape, command or cli_command, cli_command, q_fraction
        )
        replace_folder(staging, target)
    except (OSError, SafetensorError) as error:  # safetensors reports a full disk as its own error
        reason = getattr(error, "strerror", None) or str(error)
        raise ExportError(f"Could not write the export to {target}: {reason}.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return target


def check_target(out_dir: str | Path, overwrite: bool, sources: Iterable[Source]) -> Path:
    """The export folder, resolved, if it can take an export of the pair of `sources`; else ExportError.

    Cheap, so the CLI runs it before loading; export_restoration runs it again right before writing.
    """
    if not str(out_dir).strip():
        raise ExportError("No output folder given: name a new folder for the exported model.")
    target = Path(out_dir).expanduser().resolve()
    if target.parent == target:
        raise ExportError(f"{target} is a filesystem root: name a new folder for the exported model.")
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file, not a folder: name a new folder for the exported model.")
    if target.is_dir() and any(target.iterdir()):
        _check_replaceable(target, overwrite, sources)
    _make_parent(target.parent)
    return target


def _check_replaceable(target: Path, overwrite: bool, sources: Iterable[Source]) -> None:
    if not overwrite:
        raise ExportError(
            f"{target} already exists and is not empty: choose a new folder, or pass overwrite "
            "(--overwrite) to replace it."
        )
    # Overwrite replaces model folders only, so a mistyped path cannot wipe a home or project folder.
    if not (target / "config.json").is_file():
        raise ExportError(f"Refusing to replace {target}: it is not a model folder (no config.json).")
    if target in {Path(s.location).resolve() for s in sources if s.kind == "folder"}:
        raise ExportError(f"Refusing to replace {target}: it is one of the pair's own source models.")


def _make_parent(parent: Path) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise ExportError(f"Cannot create the folder {parent}: a file is in the way.") from error
    except OSError as error:
        raise ExportError(f"Cannot create the folder {parent}: {error.strerror or error}.") from error
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"Cannot write in {parent}: permission denied.")


def _write_hybrid(folder: Path, pair: ModelPair, restoration: Restoration, max_shard_size: str | int) -> None:
    # The hybrid shares its tensors with both models (blends aside); save_pretrained only reads them.
    hybrid = build_restored(pair, restoration)
    # In the checkpoint's own dtype: split weights are bfloat16 while a lambda blend is held in the
    # compute dtype, and an export never widens (or mixes) the dtype it was given.
    weights = pair.weights_dtype
    state = {
        name: tensor.to(weights) if tensor.is_floating_point() else tensor
        for name, tensor in hybrid.state_dict().items()
    }
    hybrid.save_pretrained(folder, max_shard_size=max_shard_size, state_dict=state)
    pair.tokenizer.save_pretrained(folder)  # with its chat template


def _write_sidecars(
    folder: Path,
    pair: ModelPair,
    restoration: Restoration,
    landscape: Landscape | None,
    command: str,
    cli_command: str,
    fraction: float,
) -> None:
    # A command run through the CLI reproduces itself; the app's description gets a CLI equivalent.
    cli_command = command if command.startswith(CLI_PREFIX) else cli_command
    metadata = [source_metadata(pair.pre_source), source_metadata(pair.post_source)]
    first, last = restoration.interval or (restoration.layers[0], restoration.layers[-1])
    card = model_card(pair, first, last, landscape, command, metadata, cli_command, fraction, restoration)
    write_text_atomic(folder / CARD_FILE, str(card))
    write_text_atomic(folder / MERGEKIT_FILE, mergekit_yaml(pair, first, last, restoration))
    if landscape is not None:
        write_text_atomic(folder / LANDSCAPE_FILE, landscape_csv(landscape))
    write_json(folder / PROVENANCE_FILE, provenance(pair, restoration, landscape, command, fraction))


def _cli_command(pair: ModelPair, restoration: Restoration, target: Path) -> str:
    sources = ["--pre", pair.pre_source.spec, "--post", pair.post_source.spec]
    if restoration.interval:
        which = ["--interval", str(restoration.interval[0]), str(restoration.interval[1])]
    else:
        which = ["--layers", restoration.span]
    which += [] if restoration.mode == "layer" else ["--restore", restoration.mode]
    which += [] if restoration.fraction == 1 else ["--fraction", f"{restoration.fraction:g}"]
    return shlex.join([*CLI_PREFIX.split(), "export", *sources, *which, "--out", str(target)])


def provenance(
    pair: ModelPair,
    restoration: Restoration | tuple[int, int],
    landscape: Landscape | None,
    command: str,
    fraction: float = DEFAULT_Q_FRACTION,
) -> dict:
    """slr_export.json: the restoration, the pair, all four CRC numbers per model, both rules' picks."""
    if not isinstance(restoration, Restoration):
        restoration = interval_restoration(*restoration)
    points = crc_points(landscape, restoration)
    picks = rule_picks(landscape, fraction) if landscape is not None else {}
    interval = restoration.interval
    return {
        "interval": list(interval) if interval else None,
        "layers": list(restoration.layers),
        "restore": restoration.mode,
        "lambda": restoration.fraction,
        "num_layers": pair.num_layers,
        **pair.provenance(),
        "crc": {name: dataclasses.asdict(point) for name, point in points.items()},
        "selection": {"q_fraction": fraction, **picks} if picks else None,
        "command": command,
        "landscape_meta": landscape.meta if landscape is not None else None,
    }


# ---------------------------------------------------------------- naming and zipping


def export_name(pair: ModelPair, interval: tuple[int, int], restoration: Restoration | None = None) -> str:
    """A folder name `slr-<post model>-<i>-<j>[-<mode>][-l<λ>]-<hash12>`, unique to both models and
    the restoration (`restoration` overrides `interval`; a set of layers is written 3_5_9-11)."""
    restoration = restoration or interval_restoration(*interval)
    start, end = restoration.interval or (restoration.layers[0], restoration.layers[-1])
    # Only the source's last path part, filtered: a visitor's text never becomes a path of its own.
    name = Path(pair.post_source.spec).name.replace(":", "-")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:NAME_STEM_LENGTH].strip("-.") or "model"
    # Both full fingerprints: pairs sharing a post-trained model must not share a folder.
    identity = [pair.pre_fingerprint, pair.post_fingerprint, str(start), str(end)]
    where = f"{start}-{end}" if restoration.interval else restoration.span.replace(",", "_")
    if restoration.mode != "layer" or restoration.fraction != 1 or not restoration.interval:
        identity += [restoration.span, restoration.mode, repr(restoration.fraction)]
        where += "" if restoration.mode == "layer" else f"-{restoration.mode}"
        where += "" if restoration.fraction == 1 else f"-l{restoration.fraction:g}"
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:12]
    return f"slr-{stem}-{where}-{digest}"


def zip_folder(folder: str | Path) -> Path:
    """folder.zip beside the folder, holding `<folder name>/...`; written whole or not at all."""
    folder = Path(folder)
    # Not with_suffix: a name like "Qwen2.5-..." has a dot, and with_suffix would cut the name there.
    target = folder.with_name(f"{folder.name}.zip")
    with atomic_path(target) as staging:
        # Weights barely compress: store them, so zipping a GB takes seconds, not minutes.
        with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, Path(folder.name) / path.relative_to(folder))
    return target


# ---------------------------------------------------------------- the app's export folder


def publish_archive(
    pair: ModelPair,
    restoration: Restoration,
    root: str | Path,
    landscape: Landscape | None = None,
    q_fraction: float = DEFAULT_Q_FRACTION,
    command: str = "",
    policy: HostedPolicy | None = None,
) -> Path:
    """Export a restoration into the export folder `root` as a zip and return the zip's path.

    Named by export_name (both full fingerprints and the restoration), so pairs never share a name;
    checked against free disk first; expired and (for the quota) oldest exports are removed first;
    in hosted mode only the zip is kept once it is complete."""
    policy = policy or HostedPolicy()
    restoration.check(pair.num_layers)
    root = Path(root).expanduser().resolve()
    _make_parent(root)  # made if missing, and checked writable
    interval = restoration.interval or (restoration.layers[0], restoration.layers[-1])
    # A random tail: the fingerprints are public, so a name from them alone could be guessed and
    # downloaded by anyone; each export gets its own name, known only to the visitor who asked.
    folder = root / f"{export_name(pair, interval, restoration)}-{secrets.token_hex(8)}"
    estimate = export_bytes(pair)
    kept = estimate if policy.hosted else 2 * estimate  # the zip, or the folder and the zip
    prune_exports(root, policy, incoming=kept, keep=(folder.name, f"{folder.name}.zip"))
    check_free_disk(root, 2 * estimate)  # the folder and its zip side by side, until the folder goes
    written = export_restoration(pair, restoration, folder, landscape, True, command, q_fraction=q_fraction)
    try:
        archive = zip_folder(written)
    except OSError as error:
        raise ExportError(f"Could not zip the export {written.name}: {error.strerror or error}.") from error
    if policy.hosted:
        shutil.rmtree(written, ignore_errors=True)
    prune_exports(root, policy, keep=(archive.name,))
    return archive


def export_bytes(pair: ModelPair) -> int:
    """About how many bytes an export of the pair writes: the post-trained model's weights (a hybrid
    has the same tensors, in the same dtype) plus FILES_ALLOWANCE for tokenizer and sidecars."""
    return weight_bytes(pair.post) + FILES_ALLOWANCE


def check_free_disk(root: Path, needed: int) -> None:
    """An ExportError saying both sizes when the disk under `root` has less than `needed` bytes free."""
    free = shutil.disk_usage(root).free
    if free < needed:
        raise ExportError(
            f"Not enough free disk for this export: it needs about {_gb(needed)} (the model folder and its "
            f"zip), and the export folder's disk has {_gb(free)} free. Try again later, or export locally."
        )


def prune_exports(
    root: str | Path, policy: HostedPolicy, incoming: int = 0, keep: tuple[str, ...] = ()
) -> list[Path]:
    """Remove exports older than the policy's expiry, then the oldest ones until `incoming` more bytes
    fit the quota, never one younger than MIN_EXPORT_SECONDS (its visitor may not have downloaded it
    yet); `keep` names are never removed. The removed paths; an ExportError if it cannot fit."""
    root = Path(root)
    quota, ttl = policy.export_quota_bytes, policy.export_ttl_seconds
    if quota is not None and incoming > quota:
        raise ExportError(
            f"This export needs about {_gb(incoming)}, more than the whole export quota of {_gb(quota)} "
            "(SLR_EXPORT_QUOTA_GB): export a smaller model, or export locally with the CLI."
        )
    entries = sorted(_entries(root, keep), key=lambda entry: entry[1])  # oldest first
    now, removed = time.time(), []
    used = sum(size for _, _, size in entries)
    for path, modified, size in entries:
        expired = ttl is not None and now - modified > ttl
        crowded = quota is not None and used + incoming > quota and now - modified >= MIN_EXPORT_SECONDS
        if expired or crowded:
            _remove(path)
            removed.append(path)
            used -= size
    if quota is not None and used + incoming > quota:
        raise ExportError(
            f"The export folder is full of recent exports ({_gb(used)} of the {_gb(quota)} quota, "
            f"SLR_EXPORT_QUOTA_GB), each kept at least {MIN_EXPORT_SECONDS // 60} minutes so its visitor "
            "can download it: try again in a few minutes, or export locally with the CLI."
        )
    return removed


def _entries(root: Path, keep: tuple[str, ...]) -> list[tuple[Path, float, int]]:
    # (path, modified, bytes) of each export, zip and leftover staging folder in the export folder.
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name in keep:
            continue
        try:
            found.append((path, path.lstat().st_mtime, _size(path)))
        except OSError:
            continue  # removed meanwhile
    return found


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _gb(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:.2f} GiB"
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size} bytes"
