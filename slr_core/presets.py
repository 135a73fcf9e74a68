"""Named model pairs: the offline demo pair and real hub pairs for users who are online."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SourceError


@dataclass(frozen=True)
class Preset:
    """A pre-trained model and its post-trained counterpart."""

    name: str
    pre: str
    post: str
    offline: bool = False


PRESETS = {
    preset.name: preset
    for preset in (
        Preset("demo (Gemma-3-270m base + demo SFT, offline)", "demo:pre", "demo:post", offline=True),
        Preset("Gemma-3-270m", "google/gemma-3-270m", "google/gemma-3-270m-it"),
        Preset("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct"),
        Preset("SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        Preset("Llama-3.2-1B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"),
        Preset("Llama-3.1-8B (paper)", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"),
        Preset("Qwen2.5-7B (paper)", "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct"),
        Preset("gemma-2-9b (paper)", "google/gemma-2-9b", "google/gemma-2-9b-it"),
    )
}
DEFAULT_PRESET = next(iter(PRESETS))


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a SourceError listing the known ones."""
    if name not in PRESETS:
        raise SourceError(f"Unknown preset '{name}'. Known presets: {', '.join(PRESETS)}.")
    return PRESETS[name]
