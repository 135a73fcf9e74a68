"""Named model pairs: the offline demo pair and real hub pairs for users who are online.

Hub revisions are not pinned: no commit hash could be checked from where this table was written
(the hub was unreachable), and a wrong pin fails every load. SLR Explorer records the commit each
load resolved to (the fingerprint, and `id@commit` in an export's mergekit.yaml), so a result still
names exactly the weights it came from; pin one yourself with `--pre org/name@commit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from slr_core.errors import SourceError


@dataclass(frozen=True)
class Preset:
    """A pre-trained model and its post-trained counterpart."""

    name: str
    pre: str
    post: str
    offline: bool = False
    note: str = ""  # where the pair comes from: the paper, a training stage, a model family


def _olmo2(size: str, release: str) -> list[Preset]:
    # OLMo 2's released stages: base -> SFT -> DPO -> Instruct (RLVR); each step, and all of them.
    repo = f"allenai/OLMo-2-{release}-{size}"
    stages = {"base": repo, "SFT": f"{repo}-SFT", "DPO": f"{repo}-DPO", "Instruct": f"{repo}-Instruct"}
    pairs = [("base", "SFT"), ("SFT", "DPO"), ("DPO", "Instruct"), ("base", "Instruct")]
    return [
        Preset(f"OLMo-2-{size} {a} / {b}", stages[a], stages[b], note=f"OLMo 2 {size}: {a} vs {b}")
        for a, b in pairs
    ]


# The demo's post-training stages, built offline in this repo (models/demo.py): each step and both.
DEMO_PRESETS = (
    Preset(
        "demo (Gemma-3-270m base + demo SFT, offline)",
        "demo:pre",
        "demo:post",
        offline=True,
        note="demo stage: base vs base + SFT",
    ),
    Preset(
        "demo (Gemma-3-270m base + demo SFT + demo DPO, offline)",
        "demo:pre",
        "demo:dpo",
        offline=True,
        note="demo stages: base vs base + SFT + DPO",
    ),
    Preset(
        "demo (demo SFT vs demo SFT + DPO, offline)",
        "demo:post",
        "demo:dpo",
        offline=True,
        note="demo stage: SFT layers restored into the DPO model, so only what DPO changed differs",
    ),
)

PRESETS = {
    preset.name: preset
    for preset in (
        *DEMO_PRESETS,
        Preset("Gemma-3-270m", "google/gemma-3-270m", "google/gemma-3-270m-it"),
        Preset("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct"),
        Preset("SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        Preset("Llama-3.2-1B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"),
        Preset(
            "Llama-3.1-8B (paper)",
            "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-8B-Instruct",
            note="the SLR paper's pair",
        ),
        Preset(
            "Qwen2.5-7B (paper)", "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", note="the SLR paper's pair"
        ),
        Preset(
            "gemma-2-9b (paper)", "google/gemma-2-9b", "google/gemma-2-9b-it", note="the SLR paper's pair"
        ),
        *_olmo2("1B", "0425"),
        *_olmo2("7B", "1124"),
        Preset("Gemma-3-1B", "google/gemma-3-1b-pt", "google/gemma-3-1b-it", note="Gemma 3 text-only"),
        Preset(
            "Gemma-3-4B",
            "google/gemma-3-4b-pt",
            "google/gemma-3-4b-it",
            note="Gemma 3 multimodal: the text stack's layers are restored, the vision tower stays",
        ),
        Preset(
            "SmolLM2-1.7B",
            "HuggingFaceTB/SmolLM2-1.7B",
            "HuggingFaceTB/SmolLM2-1.7B-Instruct",
            note="SmolLM2 base vs instruct",
        ),
        Preset(
            "SmolLM3-3B",
            "HuggingFaceTB/SmolLM3-3B-Base",
            "HuggingFaceTB/SmolLM3-3B",
            note="SmolLM3 base vs instruct (NoPE every 4th layer)",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a SourceError listing the known ones."""
    if name not in PRESETS:
        raise SourceError(f"Unknown preset '{name}'. Known presets: {', '.join(PRESETS)}.")
    return PRESETS[name]
