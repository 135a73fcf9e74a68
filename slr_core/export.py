"""Everything SLR Explorer writes for users: landscape CSV/JSON files and exported hybrids."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from safetensors import SafetensorError

from .errors import ExportError
from .hybrid import build_hybrid, check_interval
from .landscape import CSV_COLUMNS, Landscape
from .models import ModelPair, Source, layers_path


def _publish(path: Path) -> None:
    """Give `path` (and all inside it) the modes open() and mkdir() would have: 0666/0777 less umask."""
    # mkstemp and mkdtemp stage privately (0600/0700); a model folder is meant to be shared or served.
    mask = os.umask(0)  # the only way to read the umask; set back at once
    os.umask(mask)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def _atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "w", newline="") as stream:
        stream.write(text)
    _publish(Path(staging))
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


# ---------------------------------------------------------------- exported hybrids

SHARD_SIZE = "5GB"  # the Hub's customary shard size; one file for anything smaller
CARD_FILE, MERGEKIT_FILE, LANDSCAPE_FILE, PROVENANCE_FILE = (
    "README.md",
    "mergekit.yaml",
    "landscape.csv",
    "slr_export.json",
)
CARD_TAGS = ["slr", "selective-layer-restoration", "merge", "mergekit", "slr-explorer"]
# The demo pair is built from a GGUF of Gemma 3 270M (base); its post side is this repo's own LoRA.
DEMO_METADATA = {"base_model": "google/gemma-3-270m", "license": "gemma"}
CLI_PREFIX = "python -m slr_core"
CARRIED_KEYS = ("license", "license_name", "license_link")
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def export_hybrid(
    pair: ModelPair,
    start: int,
    end: int,
    out_dir: str | Path,
    landscape: Landscape | None = None,
    overwrite: bool = False,
    command: str = "",
    max_shard_size: str | int = SHARD_SIZE,
) -> Path:
    """Write hybrid [start, end] as a Hugging Face model folder, all at once or not at all."""
    check_interval(start, end, pair.num_layers)
    target = _check_target(out_dir, overwrite, pair)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", suffix=".partial", dir=target.parent))
    except OSError as error:
        raise ExportError(f"Cannot write in {target.parent}: {error.strerror or error}.") from error
    try:
        _write_hybrid(staging, pair, start, end, max_shard_size)
        cli_command = _cli_command(pair, start, end, target)
        _write_sidecars(staging, pair, start, end, landscape, command or cli_command, cli_command)
        _publish(staging)
        _move_into_place(staging, target)
    except (OSError, SafetensorError) as error:  # safetensors reports a full disk as its own error
        reason = getattr(error, "strerror", None) or str(error)
        raise ExportError(f"Could not write the export to {target}: {reason}.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return target


def _check_target(out_dir: str | Path, overwrite: bool, pair: ModelPair) -> Path:
    if not str(out_dir).strip():
        raise ExportError("No output folder given: name a new folder for the exported model.")
    target = Path(out_dir).expanduser().resolve()
    if target.parent == target:
        raise ExportError(f"{target} is a filesystem root: name a new folder for the exported model.")
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file, not a folder: name a new folder for the exported model.")
    if target.is_dir() and any(target.iterdir()):
        _check_replaceable(target, overwrite, pair)
    _make_parent(target.parent)
    return target


def _check_replaceable(target: Path, overwrite: bool, pair: ModelPair) -> None:
    if not overwrite:
        raise ExportError(
            f"{target} already exists and is not empty: choose a new folder, or pass overwrite "
            "(--overwrite) to replace it."
        )
    # Overwrite replaces model folders only, so a mistyped path cannot wipe a home or project folder.
    if not (target / "config.json").is_file():
        raise ExportError(f"Refusing to replace {target}: it is not a model folder (no config.json).")
    sources = {Path(s.location).resolve() for s in (pair.pre_source, pair.post_source) if s.kind == "folder"}
    if target in sources:
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


def _move_into_place(staging: Path, target: Path) -> None:
    # Each step is a rename, so the target holds either the old folder or the complete new one.
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(staging, target)
        return
    retired = target.with_name(f".{target.name}-{os.getpid()}-{time.time_ns()}.old")
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def _write_hybrid(folder: Path, pair: ModelPair, start: int, end: int, max_shard_size) -> None:
    # The hybrid shares its tensors with both models; save_pretrained only reads them.
    hybrid = build_hybrid(pair, start, end)
    hybrid.save_pretrained(folder, max_shard_size=max_shard_size)
    pair.tokenizer.save_pretrained(folder)  # with its chat template


def _write_sidecars(folder, pair, start, end, landscape, command: str, cli_command: str) -> None:
    # A command run through the CLI reproduces itself; the app's description gets a CLI equivalent.
    cli_command = command if command.startswith(CLI_PREFIX) else cli_command
    metadata = [_source_metadata(pair.pre_source), _source_metadata(pair.post_source)]
    card = model_card(pair, start, end, landscape, command, metadata, cli_command)
    _atomic_write_text(folder / CARD_FILE, card)
    _atomic_write_text(folder / MERGEKIT_FILE, mergekit_yaml(pair, start, end))
    if landscape is not None:
        _atomic_write_text(folder / LANDSCAPE_FILE, landscape_csv(landscape))
    write_json(_provenance(pair, start, end, landscape, command), folder / PROVENANCE_FILE)


def _cli_command(pair: ModelPair, start: int, end: int, target: Path) -> str:
    sources = ["--pre", pair.pre_source.spec, "--post", pair.post_source.spec]
    interval = ["--interval", str(start), str(end)]
    return shlex.join([*CLI_PREFIX.split(), "export", *sources, *interval, "--out", str(target)])


# ---------------------------------------------------------------- model card


def _crc_points(landscape: Landscape | None, start: int, end: int) -> dict:
    if landscape is None:
        return {}
    points = {"post": landscape.post, "hybrid": landscape.intervals.get((start, end)), "pre": landscape.pre}
    return {name: point for name, point in points.items() if point is not None}


def _source_metadata(source: Source) -> dict:
    """What a source lends the card: its Hub id as a base model, and its own card's license."""
    if source.kind == "demo":
        return dict(DEMO_METADATA)
    # Only the license travels: a source's own base_model or tags describe its ancestry, not ours.
    carried = {key: value for key, value in _card_metadata_on_disk(source).items() if key in CARRIED_KEYS}
    if source.kind == "hub":
        carried["base_model"] = source.location
    return carried


def _card_metadata_on_disk(source: Source) -> dict:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.repocard import metadata_load

    card = None
    if source.kind == "folder":
        card = Path(source.location) / "README.md"
    elif source.kind == "hub":
        cached = try_to_load_from_cache(source.location, "README.md", revision=source.revision)
        card = Path(cached) if isinstance(cached, str) else None
    try:
        return (metadata_load(card) if card is not None and card.is_file() else None) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}  # an unreadable source card only costs the carried-over license


def card_metadata(pair: ModelPair, metadata: list[dict]) -> dict:
    """The card's front matter: base models, license where known, tags."""
    bases = []
    for entry in metadata:
        base = entry.get("base_model")
        if isinstance(base, str) and base not in bases:
            bases.append(base)
    licenses = {entry["license"] for entry in metadata if isinstance(entry.get("license"), str)}
    front: dict = {}
    if bases:
        front["base_model"] = bases if len(bases) > 1 else bases[0]
        if len(bases) > 1:
            front["base_model_relation"] = "merge"
    if licenses:
        front["license"] = licenses.pop() if len(licenses) == 1 else "other"
    if front.get("license") == "other":  # a named custom license keeps its name and link
        for key in ("license_name", "license_link"):
            values = [entry[key] for entry in metadata if isinstance(entry.get(key), str)]
            if values:
                front[key] = values[-1]  # the post-trained model's, when both name one
    front["library_name"] = "transformers"
    front["pipeline_tag"] = "text-generation"
    front["tags"] = CARD_TAGS + [pair.post.config.model_type]
    return front


def model_card(
    pair: ModelPair,
    start: int,
    end: int,
    landscape: Landscape | None,
    command: str,
    metadata: list[dict] | None = None,
    cli_command: str | None = None,
) -> str:
    """README.md of an export: Hub front matter, the pair, the interval, CRC scores, how to rebuild."""
    metadata = metadata if metadata is not None else [{}, {}]
    front = yaml.safe_dump(card_metadata(pair, metadata), sort_keys=False, allow_unicode=True)
    n = pair.num_layers
    sections = [
        f"---\n{front}---\n",
        f"# SLR hybrid [{start}, {end}] of {pair.label}\n",
        f"This model is the Selective Layer Restoration hybrid M_{{{start}:{end}}} (Zhang, Wang and Soh, "
        f"arXiv 2602.06665, Section 3.1): the post-trained model with decoder layers {start} to {end} "
        f"(0-based, inclusive; {end - start + 1} of {n}) replaced by the pre-trained model's. The "
        "embeddings, every other decoder layer, the final norm and the LM head are the post-trained "
        "model's. No weight was trained or changed; each tensor is copied from one of the two models.\n",
        _pair_section(pair),
        _licence_note(metadata),
        _crc_section(landscape, start, end),
        _reproduce_section(command, cli_command or command),
        _files_section(landscape is not None),
    ]
    return "\n".join(part for part in sections if part)


def _pair_section(pair: ModelPair) -> str:
    lines = [
        "## The pair\n",
        f"- Pair: {pair.label}",
        f"- Pre-trained model (the restored layers): `{pair.pre_source.spec}` "
        f"(fingerprint `{pair.pre_fingerprint}`)",
        f"- Post-trained model (everything else): `{pair.post_source.spec}` "
        f"(fingerprint `{pair.post_fingerprint}`)",
        f"- Architecture: {type(pair.post).__name__}, {pair.num_layers} decoder layers; weights saved "
        f"in {str(pair.dtype).replace('torch.', '')}",
    ]
    if pair.post_source.kind == "demo":
        lines.append(
            "\nThis is SLR Explorer's demo pair. The pre-trained model is Gemma 3 270M (base), "
            "dequantized from a Q4_K_M GGUF. The post-trained model is that base after SLR Explorer's "
            "own demo instruction tuning (a LoRA trained on synthetic data); it is not Google's "
            "instruction-tuned Gemma 3 270M."
        )
    return "\n".join(lines) + "\n"


def _licence_note(metadata: list[dict]) -> str:
    known = [
        (side, entry["license"])
        for side, entry in zip(("pre", "post"), metadata, strict=True)
        if entry.get("license")
    ]
    if not known:
        return "The source models' licenses were not found on disk: check them before sharing this model.\n"
    names = "; ".join(f"{side}-trained: {licence}" for side, licence in known)
    return f"Licenses carried over from the source models' cards ({names}); both apply to this model.\n"


def _crc_section(landscape: Landscape | None, start: int, end: int) -> str:
    points = _crc_points(landscape, start, end)
    if not points:
        return "## CRC proxy scores\n\nNo CRC scores were given with this export.\n"
    lines = ["## CRC proxy scores\n", "| model | Q_CRC (quality) | D_CRC (diversity) |", "|---|---|---|"]
    names = {"post": "post-trained", "hybrid": f"hybrid [{start}, {end}]", "pre": "pre-trained"}
    for key, name in names.items():
        point = points.get(key)
        cells = f"{point.quality:.4f} | {point.diversity:.4f}" if point else "not computed | not computed"
        lines.append(f"| {name} | {cells} |")
    meta = landscape.meta
    if meta.get("num_prompts"):
        lines.append(
            f"\nCRC over {meta['num_prompts']} prompts (prompt set `{str(meta.get('prompt_set', ''))[:12]}`), "
            f"run in {meta.get('dtype', '?')} on {meta.get('device', '?')}."
        )
    lines.append(_selection_line(landscape, start, end))
    return "\n".join(line for line in lines if line) + "\n"


def _selection_line(landscape: Landscape, start: int, end: int) -> str:
    if landscape.post is None or not landscape.intervals:
        return ""
    q_min = landscape.q_min(0.9)
    best = landscape.best_interval(q_min)
    rule = f"max D_CRC subject to Q_CRC >= 0.9 x Q_CRC(post) = {q_min:.4f}"
    if best == (start, end):
        return f"\n[{start}, {end}] is the landscape's selection ({rule})."
    if best is None:
        return f"\nNo interval in the landscape meets the selection rule ({rule})."
    return f"\nThe landscape's selection ({rule}) is [{best[0]}, {best[1]}]; this export is a different interval."


def _reproduce_section(command: str, cli_command: str) -> str:
    made_by = "" if command == cli_command else f"Made by: {command}\n\n"
    return (
        f"## Reproduce\n\n{made_by}With SLR Explorer's command line:\n\n"
        f"```bash\n{cli_command}\n```\n\n"
        f"With mergekit, from the two source models (see the paths in `{MERGEKIT_FILE}`):\n\n"
        f"```bash\nmergekit-yaml {MERGEKIT_FILE} ./rebuilt\n```\n"
    )


def _files_section(with_landscape: bool) -> str:
    lines = [
        "## Files\n",
        "- `config.json`, `generation_config.json`, `*.safetensors`: the model",
        "- tokenizer files with the chat template: the post-trained model's tokenizer",
        f"- `{MERGEKIT_FILE}`: a mergekit config that rebuilds these weights",
        f"- `{PROVENANCE_FILE}`: the interval, sources, fingerprints and scores as JSON",
    ]
    if with_landscape:
        lines.append(f"- `{LANDSCAPE_FILE}`: the CRC landscape this interval was chosen from")
    return "\n".join(lines) + "\n"


def _provenance(pair: ModelPair, start: int, end: int, landscape: Landscape | None, command: str) -> dict:
    points = _crc_points(landscape, start, end)
    return {
        "interval": [start, end],
        "num_layers": pair.num_layers,
        **pair.provenance(),
        "crc": {name: {"quality": p.quality, "diversity": p.diversity} for name, p in points.items()},
        "command": command,
        "landscape_meta": landscape.meta if landscape is not None else None,
    }


# ---------------------------------------------------------------- mergekit


def layer_filters(prefix: str, start: int, end: int) -> list[str]:
    """mergekit filters of layers start..end; the trailing dot keeps 'layers.1.' off 'layers.12.'."""
    return [f"{prefix}.{k}." for k in range(start, end + 1)]


def merge_config(post_ref: str, pre_ref: str, prefix: str, start: int, end: int, dtype: str) -> dict:
    """A linear merge whose per-tensor weights pick the pre model inside [start, end], post elsewhere.

    Passthrough slices would take the embeddings from the first slice and the LM head from the last,
    which breaks intervals touching either end; filtered weights of 0 and 1 copy each tensor exactly.
    The first matching filter wins, so the unfiltered default goes last.
    """
    filters = layer_filters(prefix, start, end)

    def weights(inside: int) -> list[dict]:
        return [{"filter": f, "value": inside} for f in filters] + [{"value": 1 - inside}]

    return {
        "merge_method": "linear",
        "base_model": post_ref,
        "dtype": dtype,
        "models": [
            {"model": post_ref, "parameters": {"weight": weights(0)}},
            {"model": pre_ref, "parameters": {"weight": weights(1)}},
        ],
    }


def _mergekit_reference(source: Source, fingerprint: str) -> tuple[str, str]:
    """How mergekit names a source model, and a comment on it."""
    if source.kind == "hub":
        pinned = fingerprint.split(":", 1)[1] if fingerprint.startswith("hub:") else source.spec
        return pinned, f"{source.spec}, pinned to the commit SLR Explorer loaded"
    if source.kind == "folder":
        return source.location, "a local folder"
    if source.kind == "gguf":
        return source.location, "a GGUF file: mergekit reads safetensors, so convert it to a folder first"
    from .demo import ADAPTER_DIR, demo_base_dir

    base = str(demo_base_dir())
    if source.location == "pre":
        return base, "the demo's Gemma 3 270M base, a local snapshot dequantized from its GGUF"
    return f"{base}+{ADAPTER_DIR}", "the demo base plus the demo LoRA adapter (mergekit merges it)"


def mergekit_yaml(pair: ModelPair, start: int, end: int) -> str:
    """mergekit.yaml that rebuilds hybrid [start, end] from the pair's two source models."""
    post_ref, post_note = _mergekit_reference(pair.post_source, pair.post_fingerprint)
    pre_ref, pre_note = _mergekit_reference(pair.pre_source, pair.pre_fingerprint)
    dtype = str(pair.dtype).replace("torch.", "")
    config = merge_config(post_ref, pre_ref, layers_path(pair.post), start, end, dtype)
    label = " ".join(pair.label.split())  # one line, so the YAML comment cannot break
    header = [
        f"# SLR hybrid [{start}, {end}] of {label}",
        f"# Decoder layers {start}..{end} (0-based, inclusive) come from the pre-trained model; the",
        "# embeddings, all other layers, the final norm and the LM head from the post-trained one.",
        "# A linear merge with weights 0/1 per tensor: each output tensor is an exact copy.",
        f"# post-trained: {post_note}",
        f"# pre-trained:  {pre_note}",
        "# Run: mergekit-yaml mergekit.yaml ./rebuilt",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------- the Hub


def push_to_hub(folder: str | Path, repo_id: str, token: str | None = None) -> str:
    """Upload an exported folder to a Hub model repo (created if missing); returns the repo's URL."""
    from huggingface_hub import HfApi, constants, get_token

    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder} is not an exported model folder (no config.json): export first.")
    if not HUB_REPO.match(repo_id or ""):
        raise ExportError(f"'{repo_id}' is not a Hub repo id: write it as owner/name.")
    if constants.is_offline_mode():
        raise ExportError("Cannot push: Hugging Face offline mode is on (HF_HUB_OFFLINE); unset it first.")
    token = token or get_token()
    if not token:
        raise ExportError(
            "Cannot push: not logged in to the Hugging Face Hub. Set HF_TOKEN or run `hf auth login`."
        )
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload SLR hybrid")
    except Exception as error:
        explained = _hub_error(error, repo_id)
        if explained is None:
            raise  # not a network or Hub answer: a bug to see in full
        raise explained from error
    return str(url)


def _transport_errors() -> tuple[type, ...]:
    # huggingface_hub 2.x talks through httpx2, 1.x through httpx; either may be the one installed.
    import importlib

    errors: list[type] = [ConnectionError, TimeoutError]  # OfflineModeIsEnabled is a ConnectionError
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _hub_error(error: Exception, repo_id: str) -> ExportError | None:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, _transport_errors()) and not isinstance(error, HfHubHTTPError):
        return ExportError(f"Cannot push to {repo_id}: the Hugging Face Hub is unreachable (offline?).")
    if isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        if status == 401:
            return ExportError(
                "Cannot push: the Hub refused the token (401). Check HF_TOKEN or `hf auth login`."
            )
        if status == 403:
            return ExportError(f"Cannot push: the token may not write to {repo_id} (403). Use a write token.")
        return ExportError(
            f"Cannot push to {repo_id}: the Hub answered {status} ({str(error).splitlines()[0]})."
        )
    return None
