"""What a failed load means to a user: each failure to read a model's config, tokenizer or weights told
as a SourceError that names the source, the part, the likely cause and what to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from safetensors import SafetensorError

from slr_core.errors import SourceError
from slr_core.models.settings import Settings
from slr_core.models.sources import Source


def missing_message(source: Source, missing: list[str]) -> str:
    """Why a checkpoint whose tensors do not cover its model is refused (hosted mode: never random weights)."""
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return (
        f"The weights of '{source.spec}' do not cover the model its config.json describes: {len(missing)} "
        f"tensors are missing ({shown}). Hosted mode never fills them with random weights: choose a "
        "complete checkpoint."
    )


# What reading a model can raise for a bad, damaged or too large source; anything else is a bug to see whole.
LOAD_ERRORS = (OSError, ValueError, RuntimeError, MemoryError, ImportError, SafetensorError)


@contextmanager
def reading(source: Source, part: str, settings: Settings | None = None) -> Iterator[None]:
    """Turn a failure to read `part` ('config', 'tokenizer' or 'weights') of `source` into a SourceError."""
    try:
        yield
    except LOAD_ERRORS as error:
        raise SourceError(load_message(source, part, error, settings)) from error


def load_message(source: Source, part: str, error: Exception, settings: Settings | None = None) -> str:
    """What a failed load means to a user: the source, the part, the likely cause and what to do."""
    from huggingface_hub import errors as hub

    name, reason = f"'{source.spec}'", _reason(error)
    causes = _causes(error)

    def caused_by(*kinds: type) -> BaseException | None:
        return next((cause for cause in causes if isinstance(cause, kinds)), None)

    if caused_by(torch.cuda.OutOfMemoryError, MemoryError) or _says_out_of_memory(causes):
        where = (
            f" on {settings.torch_device} in {settings.torch_weights_dtype}".replace("torch.", "")
            if settings
            else ""
        )
        return (
            f"Not enough memory to load {name}{where} ({reason}). Free memory, or choose a smaller model, "
            "half-precision weights (--weights-dtype bfloat16, float32 compute kept), a smaller dtype "
            "(--dtype bfloat16) or another device."
        )
    if source.anonymous and caused_by(hub.RepositoryNotFoundError):  # gated repos are a subclass
        return (
            f"{name} is gated or private on the Hugging Face Hub. Hosted mode loads the models a visitor "
            "chooses without the server's Hub token, so only public, ungated repos load here: choose "
            "another model, or run SLR Explorer locally with your own token."
        )
    if caused_by(hub.GatedRepoError):
        return (
            f"{name} is a gated Hub repo: accept its terms at https://huggingface.co/{source.location}, "
            "then log in (`hf auth login` or HF_TOKEN)."
        )
    if caused_by(hub.RevisionNotFoundError):
        return f"{name}: the Hub repo {source.location} has no revision '{source.revision}': give a branch, tag or commit."
    if caused_by(hub.RepositoryNotFoundError):
        return (
            f"{name} is not a model on the Hugging Face Hub (or it is private): check the id (org/name), or "
            "log in (`hf auth login`) for a private repo."
        )
    if http := caused_by(hub.HfHubHTTPError):
        status = getattr(getattr(http, "response", None), "status_code", "an error")
        return f"The Hugging Face Hub answered {status} while loading the {part} of {name} ({reason}): try again later."
    if caused_by(SafetensorError):
        return (
            f"The weights of {name} are damaged or incomplete ({reason}): a download or copy was probably cut "
            "short. Download or save the model again."
        )
    if source.kind == "hub":
        return (
            f"Could not load the {part} of {name} from the Hugging Face Hub ({reason}). The hub may be "
            "unreachable (offline?) or the repo incomplete: give a local folder or .gguf file instead."
        )
    advice = {
        "config": "it needs a readable config.json (JSON with a model_type)",
        "tokenizer": "the tokenizer's files (tokenizer.json or tokenizer.model, tokenizer_config.json) "
        "must sit beside config.json",
        "weights": "the weight files may be missing or damaged; save or download the model again",
    }[part]
    return f"Cannot read the {part} of {name} ({reason}): {advice}."


def _causes(error: BaseException) -> list[BaseException]:
    """The error and every error it was raised from or while handling, innermost last."""
    chain = []
    while error is not None and error not in chain and len(chain) < 16:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _says_out_of_memory(causes: list[BaseException]) -> bool:
    # The CPU allocator and MPS report running out as a plain RuntimeError.
    texts = (str(cause).lower() for cause in causes if isinstance(cause, RuntimeError))
    return any("out of memory" in text or "can't allocate memory" in text for text in texts)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
