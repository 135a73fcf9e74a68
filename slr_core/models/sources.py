"""Where a model comes from: parse a user's model string, fingerprint its content, check the hub is reachable."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from slr_core.errors import SourceError

# The demo's stages (models/demo.py): base, base + SFT, base + SFT + DPO.
DEMO_SPECS = ("demo:pre", "demo:post", "demo:dpo")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Source:
    """Where a model comes from: 'demo', 'hub', 'folder' or 'gguf'."""

    spec: str
    kind: str
    location: str
    revision: str | None = None
    # Hub only. The commit `revision` resolved to, pinned before loading (pin), so the weights loaded
    # and the fingerprint name the same commit even if a branch moves in between.
    commit: str | None = None
    # A visitor's choice on a hosted server: loaded without the operator's Hub token (hosting.py).
    anonymous: bool = False
    # Chosen on a hosted server: a Hub id only (a same-named local folder never shadows it), pinned by
    # the Hub's API, loaded from a snapshot downloaded first, every weight required (hosting.py).
    hub_only: bool = False

    @property
    def token(self) -> bool | None:
        """The `token` argument for Hub calls: False (send none) when anonymous, else the default login."""
        return False if self.anonymous else None

    @property
    def pinned_revision(self) -> str | None:
        """The revision to download: the pinned commit, else what the user gave."""
        return self.commit or self.revision


def parse_source(spec: str) -> Source:
    """Classify a user's model string: demo:pre|post|dpo, a .gguf file, a folder, or hub id[@rev]."""
    spec = spec.strip()
    if not spec:
        raise SourceError("A model source is empty: give a hub id, a local folder or a .gguf file.")
    if spec.startswith("demo:"):
        if spec not in DEMO_SPECS:
            raise SourceError(
                f"Unknown demo model '{spec}': use demo:pre (base), demo:post (SFT) or demo:dpo (DPO on SFT)."
            )
        return Source(spec, "demo", spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise SourceError(
                f"GGUF file not found: {path}. Check the path, or give a hub id or model folder."
            )
        return Source(spec, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SourceError(
                f"{path} is a folder but has no config.json, so it is not a model folder: "
                "give the folder that holds config.json and the weights."
            )
        return Source(spec, "folder", str(path.resolve()))
    if spec.startswith((".", "/", "~")) or path.exists():
        raise SourceError(f"Model folder not found: {path}. Check the path, or give a hub id (org/name).")
    repo, _, revision = spec.partition("@")
    if not HUB_ID.match(repo):
        raise SourceError(
            f"'{spec}' is neither an existing path nor a valid hub id: give org/name[@revision], "
            "a local model folder or a .gguf file."
        )
    return Source(spec, "hub", repo, revision or None)


def fingerprint(source: Source) -> str:
    """A content identity: hub commit, or sha256 of the weight files, or the demo's own."""
    if source.kind == "demo":
        from slr_core.models.demo import demo_fingerprint

        return demo_fingerprint(source.location)
    if source.kind == "hub":
        return f"hub:{source.location}@{source.commit or _hub_commit(source)}"
    from slr_core.cache import file_digest

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

    resolved = cached_file(source.location, "config.json", revision=source.revision, token=source.token)
    # The hub cache lays files out as .../snapshots/<commit>/config.json.
    return Path(resolved).parent.name


def pin(source: Source) -> Source:
    """A Hub source with its revision resolved to a commit (fetching config.json only); others as is."""
    if source.kind != "hub" or source.commit:
        return source
    return replace(source, commit=hub_commit(source) if source.hub_only else _hub_commit(source))


# What a hosted snapshot downloads: configs, safetensors weights and tokenizer files; never pickled
# weights (*.bin), .gguf files or code (*.py), which hosted mode never reads.
SNAPSHOT_FILES = ("*.json", "*.safetensors", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja")


def _hub_kwargs(source: Source) -> dict:
    # Read at each call (not at import), and passed explicitly, so no call falls back to a default
    # endpoint, cache or token: the token is exactly what the source says (False: none at all).
    from huggingface_hub import constants

    return {"endpoint": constants.ENDPOINT, "token": source.token}


def hub_commit(source: Source) -> str:
    """The commit a Hub source's revision names now, from the Hub's API (a local folder is never read)."""
    from huggingface_hub import HfApi

    kwargs = _hub_kwargs(source)
    api = HfApi(endpoint=kwargs["endpoint"])
    return api.model_info(source.location, revision=source.revision, token=kwargs["token"]).sha


def hub_file(source: Source, filename: str) -> Path:
    """One file of a pinned Hub source, downloaded into the Hub cache with the source's token only."""
    from huggingface_hub import constants, hf_hub_download

    path = hf_hub_download(
        source.location, filename, revision=source.pinned_revision, cache_dir=constants.HF_HUB_CACHE,
        **_hub_kwargs(source),
    )  # fmt: skip
    return Path(path)


def snapshot(source: Source) -> Path:
    """The pinned Hub source's files (SNAPSHOT_FILES) in a local folder, downloaded with its token only;
    loading then reads that folder with local_files_only, so no library call can reach the Hub again."""
    from huggingface_hub import constants, snapshot_download

    folder = snapshot_download(
        source.location, revision=source.pinned_revision, allow_patterns=list(SNAPSHOT_FILES),
        cache_dir=constants.HF_HUB_CACHE, **_hub_kwargs(source),
    )  # fmt: skip
    return Path(folder)


def parameter_count(source: Source) -> int:
    """A Hub model's parameter count from its safetensors metadata (file headers only, no weights)."""
    import huggingface_hub

    metadata = huggingface_hub.get_safetensors_metadata(
        source.location, revision=source.pinned_revision, token=source.token
    )
    return sum(metadata.parameter_count.values())


def config_parameter_count(source: Source) -> int:
    """Parameters of the model a Hub source's config.json describes, built on the meta device (no memory,
    no weights): what loading would allocate, however few tensors the checkpoint holds."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(hub_file(source, "config.json").parent), trust_remote_code=False)
    from slr_core.models.building import BUILDING

    with BUILDING, torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    return sum(parameter.numel() for parameter in model.parameters())


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
