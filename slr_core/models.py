"""Model sources, loading, device/dtype resolution, and where each architecture keeps its layers."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from .errors import IncompatibleModelsError, SourceError, UnsupportedArchitectureError

# The one place that knows where each family keeps its decoder layers and final norm.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "LlamaForCausalLM": ("model.layers", "model.norm"),
    "MistralForCausalLM": ("model.layers", "model.norm"),
    "Qwen2ForCausalLM": ("model.layers", "model.norm"),
    "Qwen3ForCausalLM": ("model.layers", "model.norm"),
    "Gemma2ForCausalLM": ("model.layers", "model.norm"),
    "Gemma3ForCausalLM": ("model.layers", "model.norm"),
    "Phi3ForCausalLM": ("model.layers", "model.norm"),
    "GPTNeoXForCausalLM": ("gpt_neox.layers", "gpt_neox.final_layer_norm"),
}

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _architecture(model: nn.Module) -> tuple[str, str]:
    name = type(model).__name__
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedArchitectureError(
            f"SLR Explorer does not know where {name} keeps its decoder layers. Supported: {known}."
        )
    return ARCHITECTURES[name]


def layers_path(model: nn.Module) -> str:
    """Dotted path of the model's decoder-layer ModuleList, e.g. 'model.layers'."""
    return _architecture(model)[0]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's own decoder layers, in order."""
    return model.get_submodule(layers_path(model))


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied after the last decoder layer."""
    return model.get_submodule(_architecture(model)[1])


# ---------------------------------------------------------------- device and dtype


@dataclass(frozen=True)
class Settings:
    """How to load and run models; the one validator that resolves device and dtype."""

    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | dict | None = None

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise SourceError(f"Unknown device '{self.device}': use auto, cpu, cuda or mps.")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise SourceError(f"Unknown dtype '{self.dtype}': use auto, float32, bfloat16 or float16.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SourceError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here.")
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise SourceError("device 'mps' was asked for, but PyTorch sees no Apple GPU here.")

    @property
    def torch_device(self) -> torch.device:
        """auto: cuda, then mps, then cpu."""
        if self.device != "auto":
            return torch.device(self.device)
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    @property
    def torch_dtype(self) -> torch.dtype:
        """auto: bfloat16 on a GPU, float32 on the CPU."""
        if self.dtype == "auto":
            return torch.float32 if self.torch_device.type == "cpu" else torch.bfloat16
        return getattr(torch, self.dtype)


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Where a model comes from: 'demo', 'hub', 'folder' or 'gguf'."""

    spec: str
    kind: str
    location: str
    revision: str | None = None


def parse_source(spec: str) -> Source:
    """Classify a user's model string: demo:pre|post, a .gguf file, a folder, or hub id[@rev]."""
    spec = spec.strip()
    if not spec:
        raise SourceError("A model source is empty: give a hub id, a local folder or a .gguf file.")
    if spec.startswith("demo:"):
        if spec not in ("demo:pre", "demo:post"):
            raise SourceError(f"Unknown demo model '{spec}': use demo:pre or demo:post.")
        return Source(spec, "demo", spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise SourceError(f"GGUF file not found: {path}")
        return Source(spec, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SourceError(f"{path} is a folder but has no config.json: not a model folder.")
        return Source(spec, "folder", str(path.resolve()))
    if spec.startswith((".", "/", "~")) or path.exists():
        raise SourceError(f"Model folder not found: {path}")
    repo, _, revision = spec.partition("@")
    if not HUB_ID.match(repo):
        raise SourceError(f"'{spec}' is neither an existing path nor a valid hub id (org/name).")
    return Source(spec, "hub", repo, revision or None)


def fingerprint(source: Source) -> str:
    """A content identity: hub commit, or sha256 of the weight files, or the demo's own."""
    if source.kind == "demo":
        from .demo import demo_fingerprint

        return demo_fingerprint(source.location)
    if source.kind == "hub":
        return f"hub:{source.location}@{_hub_commit(source)}"
    from .cache import file_digest

    path = Path(source.location)
    files = [path] if path.is_file() else sorted(_weight_files(path))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + file_digest(file).encode())
    return f"{source.kind}:{digest.hexdigest()[:16]}"


def _weight_files(folder: Path) -> list[Path]:
    patterns = ("*.safetensors", "*.bin", "*.gguf", "config.json")
    return [file for pattern in patterns for file in folder.glob(pattern)]


def _hub_commit(source: Source) -> str:
    from transformers.utils import cached_file

    resolved = cached_file(source.location, "config.json", revision=source.revision)
    # The hub cache lays files out as .../snapshots/<commit>/config.json.
    return Path(resolved).parent.name


def check_reachable(source: Source, timeout: float = 3.0) -> None:
    """Fail fast, with an offline hint, when a hub model is neither cached nor reachable."""
    if source.kind != "hub":
        return
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(source.location, "config.json", revision=source.revision)
    if isinstance(cached, str):
        return
    problem = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else None
    if problem is None:
        endpoint = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
        except OSError:
            problem = f"cannot connect to {endpoint.hostname}"
    if problem:
        # Without this check, transformers retries for about a minute before failing.
        raise SourceError(
            f"'{source.spec}' is a Hugging Face Hub model that is not in the local cache, and the hub "
            f"is unreachable ({problem}). Hub models and presets need internet access: choose the "
            "offline demo pair, or give a local model folder or .gguf file."
        )


def load_model(source: Source, settings: Settings, placement: dict | None = None):
    """Load a causal LM and its tokenizer; `placement` (device_map, max_memory) overrides the settings'."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype, device = settings.torch_dtype, settings.torch_device
    if source.kind == "demo":
        from .demo import load_demo_model

        return load_demo_model(source.location, dtype, device)
    location, extra = source.location, {"trust_remote_code": settings.trust_remote_code}
    if source.kind == "gguf":
        location, extra["gguf_file"] = str(Path(location).parent), Path(location).name
    if source.revision:
        extra["revision"] = source.revision
    if placement is None:
        placement = {"device_map": settings.device_map} if settings.device_map else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **extra)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **extra, **placement)
    except (OSError, ValueError) as error:
        raise SourceError(_load_message(source, error)) from error
    if "device_map" not in placement:
        model.to(device)
    model.eval()
    return model, tokenizer


def _load_message(source: Source, error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if source.kind == "hub":
        return (
            f"Could not load '{source.spec}' from the Hugging Face Hub ({text}). The hub may be "
            "unreachable (offline?), the id or revision wrong, or the repo gated: give a local "
            "folder or .gguf file instead, or log in with `huggingface-cli login`."
        )
    return f"Could not load '{source.spec}' ({text})."


# ---------------------------------------------------------------- pairs


@dataclass
class ModelPair:
    """A pre-trained model, its post-trained counterpart, and the post-trained tokenizer."""

    pre: nn.Module
    post: nn.Module
    tokenizer: object
    pre_source: Source
    post_source: Source
    settings: Settings
    pre_fingerprint: str = ""
    post_fingerprint: str = ""
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        """N, the number of decoder layers."""
        return len(decoder_layers(self.post))

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the post-trained input embeddings (never 'meta')."""
        return self.post.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the pair runs in."""
        return next(self.post.parameters()).dtype

    @property
    def identity(self) -> str:
        """Everything that determines the pair's numbers: fingerprints, dtype, device type."""
        return f"{self.pre_fingerprint}|{self.post_fingerprint}|{self.dtype}|{self.device.type}"

    def provenance(self) -> dict:
        """What identifies the pair's numbers, for sidecar files: sources, fingerprints, dtype."""
        return {
            "pair": self.label,
            "pre": self.pre_source.spec,
            "post": self.post_source.spec,
            "pre_fingerprint": self.pre_fingerprint,
            "post_fingerprint": self.post_fingerprint,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": self.device.type,
        }


def check_compatible(pre: nn.Module, post: nn.Module) -> None:
    """Raise IncompatibleModelsError saying exactly what differs between the two models."""
    if type(pre) is not type(post):
        raise IncompatibleModelsError(
            f"Different architectures: pre-trained is {type(pre).__name__}, "
            f"post-trained is {type(post).__name__}."
        )
    pre_layers, post_layers = decoder_layers(pre), decoder_layers(post)
    if len(pre_layers) != len(post_layers):
        raise IncompatibleModelsError(
            f"Different depth: pre-trained has {len(pre_layers)} decoder layers, "
            f"post-trained has {len(post_layers)}."
        )
    problems = []
    for layer_idx, (pre_layer, post_layer) in enumerate(zip(pre_layers, post_layers)):
        pre_shapes = {n: tuple(p.shape) for n, p in pre_layer.named_parameters()}
        post_shapes = {n: tuple(p.shape) for n, p in post_layer.named_parameters()}
        for name in sorted(pre_shapes.keys() ^ post_shapes.keys()):
            side = "pre-trained" if name in pre_shapes else "post-trained"
            problems.append(f"layer {layer_idx}: '{name}' exists only in the {side} model")
        for name in sorted(pre_shapes.keys() & post_shapes.keys()):
            if pre_shapes[name] != post_shapes[name]:
                problems.append(
                    f"layer {layer_idx}: '{name}' has shape {pre_shapes[name]} (pre-trained) "
                    f"vs {post_shapes[name]} (post-trained)"
                )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise IncompatibleModelsError(f"The models' decoder layers differ: {shown}.")


def load_pair(pre: str, post: str, settings: Settings | None = None) -> ModelPair:
    """Load and check a pre/post pair; the tokenizer comes from the post-trained source."""
    settings = settings or Settings()
    pre_source, post_source = parse_source(pre), parse_source(post)
    for source in (post_source, pre_source):
        check_reachable(source)
    from .placement import post_placement, pre_placement

    post_model, tokenizer = load_model(post_source, settings, post_placement(settings))
    _architecture(post_model)  # fail early, before loading the second model
    # Module for module where the post-trained model is, so a restored layer sits where it replaces.
    pre_model, _ = load_model(pre_source, settings, pre_placement(post_model, settings))
    check_compatible(pre_model, post_model)
    from .chat import ensure_chat_template

    ensure_chat_template(tokenizer, post_model.config.model_type)
    pair = ModelPair(pre_model, post_model, tokenizer, pre_source, post_source, settings)
    pair.pre_fingerprint, pair.post_fingerprint = fingerprint(pre_source), fingerprint(post_source)
    pair.label = _label(pre_source, post_source)
    return pair


def _label(pre: Source, post: Source) -> str:
    if pre.kind == post.kind == "demo":
        from .demo import DEMO_LABEL

        return DEMO_LABEL
    return f"{pre.spec} (pre-trained) / {post.spec} (post-trained)"


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    """The tokenizer of a source alone (no weights), with a chat template ensured."""
    from transformers import AutoConfig, AutoTokenizer

    from .chat import ensure_chat_template

    source = parse_source(spec)
    if source.kind == "demo":
        from .demo import demo_base_dir

        location, extra = str(demo_base_dir()), {}
    elif source.kind == "gguf":
        location, extra = str(Path(source.location).parent), {"gguf_file": Path(source.location).name}
    else:
        location, extra = source.location, {"revision": source.revision} if source.revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
        config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as error:
        raise SourceError(_load_message(source, error)) from error
    ensure_chat_template(tokenizer, config.model_type)
    return tokenizer
