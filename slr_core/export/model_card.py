"""What an exported hybrid says about itself: its Hub model card (README.md); mergekit_config.py has the
mergekit config.

The card is a `huggingface_hub.ModelCard`: front matter from `ModelCardData`, then the pair, the
interval, the CRC scores beside both selection rules' picks, and how to rebuild the weights.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

from slr_core.export.mergekit_config import MERGEKIT_FILE
from slr_core.models.loading import ModelPair
from slr_core.models.settings import DEFAULT_Q_FRACTION
from slr_core.models.sources import Source
from slr_core.report.summary import summary_markdown
from slr_core.slr.hybrid import Restoration, interval_restoration
from slr_core.slr.landscape import Landscape, Point

CARD_FILE, LANDSCAPE_FILE, PROVENANCE_FILE = "README.md", "landscape.csv", "slr_export.json"
CLI_PREFIX = "python -m slr_core"
CARD_TAGS = ["slr", "selective-layer-restoration", "merge", "mergekit", "slr-explorer"]
# The demo pair is built from a GGUF of Gemma 3 270M (base); its post side is this repo's own LoRA.
DEMO_METADATA = {"base_model": "google/gemma-3-270m", "license": "gemma"}
CARRIED_KEYS = ("license", "license_name", "license_link")


# ---------------------------------------------------------------- front matter


def source_metadata(source: Source) -> dict:
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
        card = Path(source.location) / CARD_FILE
    elif source.kind == "hub":
        cached = try_to_load_from_cache(source.location, CARD_FILE, revision=source.revision)
        card = Path(cached) if isinstance(cached, str) else None
    try:
        return (metadata_load(card) if card is not None and card.is_file() else None) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}  # an unreadable source card only costs the carried-over license


def card_data(pair: ModelPair, metadata: list[dict]) -> ModelCardData:
    """The card's front matter: base models, license where known, tags."""
    bases = []
    for entry in metadata:
        base = entry.get("base_model")
        if isinstance(base, str) and base not in bases:
            bases.append(base)
    extra = {"base_model_relation": "merge"} if len(bases) > 1 else {}
    return ModelCardData(
        base_model=(bases if len(bases) > 1 else bases[0]) if bases else None,
        **_license(metadata),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=CARD_TAGS + [pair.post.config.model_type],
        **extra,
    )


def _license(metadata: list[dict]) -> dict:
    licenses = {entry["license"] for entry in metadata if isinstance(entry.get("license"), str)}
    if not licenses:
        return {}
    found = {"license": licenses.pop() if len(licenses) == 1 else "other"}
    if found["license"] == "other":  # a named custom license keeps its name and link
        for key in ("license_name", "license_link"):
            values = [entry[key] for entry in metadata if isinstance(entry.get(key), str)]
            if values:
                found[key] = values[-1]  # the post-trained model's, when both name one
    return found


# ---------------------------------------------------------------- the card


def model_card(
    pair: ModelPair,
    start: int,
    end: int,
    landscape: Landscape | None,
    command: str,
    metadata: list[dict] | None = None,
    cli_command: str | None = None,
    fraction: float = DEFAULT_Q_FRACTION,
    restoration: Restoration | None = None,
) -> ModelCard:
    """README.md of an export: Hub front matter, the pair, the restoration, CRC scores, how to rebuild."""
    metadata = metadata if metadata is not None else [{}, {}]
    restoration = restoration or interval_restoration(start, end)
    whole = restoration.mode == "layer" and restoration.fraction == 1 and restoration.interval
    sections = [
        f"# SLR hybrid {restoration.label} of {pair.label}\n",
        _intro(pair, start, end) if whole else _partial_intro(pair, restoration),
        _pair_section(pair),
        _licence_note(metadata),
        _crc_section(landscape, restoration, fraction),
        _reproduce_section(command, cli_command or command),
        _files_section(landscape is not None),
    ]
    body = "\n".join(part for part in sections if part)
    return ModelCard(f"---\n{card_data(pair, metadata).to_yaml()}\n---\n\n{body}")


def _intro(pair: ModelPair, start: int, end: int) -> str:
    return (
        f"This model is the Selective Layer Restoration hybrid M_{{{start}:{end}}} (Zhang, Wang and Soh, "
        f"arXiv 2602.06665, Section 3.1): the post-trained model with decoder layers {start} to {end} "
        f"(0-based, inclusive; {end - start + 1} of {pair.num_layers}) replaced by the pre-trained "
        "model's. The embeddings, every other decoder layer, the final norm and the LM head are the "
        "post-trained model's. No weight was trained or changed; each tensor is copied from one of the "
        "two models.\n"
    )


def _partial_intro(pair: ModelPair, restoration: Restoration) -> str:
    part = {
        "layer": "the whole of",
        "attention": "the attention block of",
        "mlp": "the MLP (or MoE) block of",
    }
    amount = (
        "replaced by the pre-trained model's"
        if restoration.fraction == 1
        else f"set to (1 - λ) x post + λ x pre with λ = {restoration.fraction:g} (a linear merge)"
    )
    norms = (
        ""
        if restoration.mode == "layer"
        else " Every norm, including norms inside that block, is post-trained."
    )
    return (
        "This model is a Selective Layer Restoration hybrid (Zhang, Wang and Soh, arXiv 2602.06665) "
        f"beyond whole intervals: {part[restoration.mode]} decoder layers {restoration.span} (0-based; "
        f"{len(restoration.layers)} of {pair.num_layers}) {amount}.{norms} The embeddings, everything "
        "else in the decoder layers, the final norm and the LM head are the post-trained model's.\n"
    )


def _pair_section(pair: ModelPair) -> str:
    lines = [
        "## The pair\n",
        f"- Pair: {pair.label}",
        f"- Pre-trained model (the restored layers): `{pair.pre_source.spec}` "
        f"(fingerprint `{pair.pre_fingerprint}`)",
        f"- Post-trained model (everything else): `{pair.post_source.spec}` "
        f"(fingerprint `{pair.post_fingerprint}`)",
        f"- Architecture: {type(pair.post).__name__}, {pair.num_layers} decoder layers; weights saved "
        f"in {str(pair.weights_dtype).replace('torch.', '')}",
    ]
    if pair.post_source.kind == "demo" and pair.post_source.location == "dpo":
        from slr_core.models.demo import STAGE_LABELS

        lines.append(
            f"\nThis is one of SLR Explorer's demo pairs: {STAGE_LABELS[pair.pre_source.location]} "
            f"(pre-trained) and {STAGE_LABELS['dpo']} (post-trained). The base is Gemma 3 270M, dequantized "
            "from a Q4_K_M GGUF; the SFT and DPO stages are SLR Explorer's own LoRAs trained on synthetic "
            "data; it is not Google's instruction-tuned Gemma 3 270M."
        )
    elif pair.post_source.kind == "demo":
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


# ---------------------------------------------------------------- CRC scores and the two picks


def crc_points(landscape: Landscape | None, restoration: Restoration) -> dict[str, Point]:
    """The scored points an export reports: post-trained, the hybrid (if the landscape has it), pre-trained."""
    if landscape is None:
        return {}
    # A landscape scores whole intervals at fraction 1, under the one mode it was swept with.
    same_mode = landscape.meta.get("restore", "layer") == restoration.mode
    scored = restoration.interval if same_mode and restoration.fraction == 1 else None
    hybrid = landscape.intervals.get(scored) if scored else None
    points = {"post": landscape.post, "hybrid": hybrid, "pre": landscape.pre}
    return {name: point for name, point in points.items() if point is not None}


def rule_picks(landscape: Landscape, fraction: float) -> dict[str, dict]:
    """Per selection rule: its threshold and pick ([i, j] or None); {} when nothing can be selected."""
    if landscape.post is None or not landscape.intervals:
        return {}
    # Landscape.summary leaves out the strict rule when the landscape has no strict numbers.
    rules = landscape.summary(fraction)["rules"]
    return {
        rule: {"q_min": found["q_min"], "interval": found["best"]["interval"] if found["best"] else None}
        for rule, found in rules.items()
    }


def _crc_section(landscape: Landscape | None, restoration: Restoration, fraction: float) -> str:
    points = crc_points(landscape, restoration)
    start, end = (restoration.interval if restoration.fraction == 1 else None) or (None, None)
    if not points:
        return "## CRC proxy scores\n\nNo CRC scores were given with this export.\n"
    picks = rule_picks(landscape, fraction)
    lines = [
        "## CRC proxy scores\n",
        "| model | Q_CRC (first token) | strict Q_CRC | stop rate | D_CRC (diversity) |",
        "|---|---|---|---|---|",
        _row("post-trained", points.get("post")),
        _row(f"**hybrid {restoration.label} (this export)**", points.get("hybrid")),
        _row("pre-trained", points.get("pre")),
        "\nQ_CRC is the first token's probability of a valid answer; strict Q_CRC also requires the "
        "reply to end right after it; the stop rate is the share of valid answers that end the reply.",
        _prompts_line(landscape.meta),
        _selection_section(landscape, picks, start, end, fraction),
    ]
    return "\n".join(line for line in lines if line) + "\n"


def _cell(value: float | None) -> str:
    return "not computed" if value is None else f"{value:.4f}"


def _row(name: str, point: Point | None) -> str:
    numbers = ("quality", "strict_quality", "stop", "diversity")  # the table's column order
    values = [None if point is None else getattr(point, number) for number in numbers]
    return f"| {name} | " + " | ".join(_cell(value) for value in values) + " |"


def _prompts_line(meta: dict) -> str:
    if not meta.get("num_prompts"):
        return ""
    return (
        f"\nCRC over {meta['num_prompts']} prompts (prompt set `{str(meta.get('prompt_set', ''))[:12]}`), "
        f"run in {meta.get('dtype', '?')} on {meta.get('device', '?')}{_precision_note(meta)}."
    )


def _precision_note(meta: dict) -> str:
    weights = meta.get("weights_dtype")
    note = f" (weights kept in {weights})" if weights and weights != meta.get("dtype") else ""
    if meta.get("dtype") in ("bfloat16", "float16"):
        note += "; a half-precision landscape: its numbers carry that dtype's rounding"
    return note


def _selection_section(landscape: Landscape, picks: dict, start: int, end: int, fraction: float) -> str:
    if landscape.post is None:
        return ""
    # summary_markdown is the one selection formatter (page, CLI, card): both rules' picks side by side.
    lines = [f"\n### Selection at q-fraction {fraction:g}\n", summary_markdown(landscape, fraction), ""]
    # Then a line per rule, so a reader sees at once whether each rule agrees with this export.
    lines += [
        f"- {rule.capitalize()} rule: {_verdict(found['interval'], start, end)}"
        for rule, found in picks.items()
    ]
    if "strict" not in picks:
        lines.append("- Strict rule: not computed (this landscape has no strict CRC numbers).")
    return "\n".join(lines)


def _verdict(pick: list[int] | None, start: int, end: int) -> str:
    if pick is None:
        return "no interval in the landscape meets it."
    if tuple(pick) == (start, end):
        return f"[{start}, {end}] is this rule's selection, this export."
    return f"the selection is [{pick[0]}, {pick[1]}]; this export is a different interval."


# ---------------------------------------------------------------- reproduce and files


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
        f"- `{PROVENANCE_FILE}`: the interval, sources, fingerprints, CRC scores and picks as JSON",
    ]
    if with_landscape:
        lines.append(f"- `{LANDSCAPE_FILE}`: the CRC landscape this interval was chosen from")
    return "\n".join(lines) + "\n"
