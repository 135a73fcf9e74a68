"""Pushing an exported hybrid to the Hugging Face Hub, with every failure told as one clear ExportError."""

from __future__ import annotations

import re
from pathlib import Path

from slr_core.errors import ExportError

HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMMIT_MESSAGE = "Upload SLR hybrid"


def push_to_hub(folder: str | Path, repo_id: str, token: str | None = None) -> str:
    """Upload an exported folder to a Hub model repo (created if missing); returns the repo's URL."""
    from huggingface_hub import HfApi

    folder = Path(folder).expanduser()
    token = _check_push(folder, repo_id, token)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=COMMIT_MESSAGE)
    except Exception as error:
        explained = hub_error(error, repo_id)
        if explained is None:
            raise  # not a network or Hub answer: a bug to see in full
        raise explained from error
    return str(url)


def _check_push(folder: Path, repo_id: str, token: str | None) -> str:
    # Everything that can be known before the network: fail on it without a request.
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder} is not an exported model folder (no config.json): export first.")
    return check_push_access(repo_id, token)


def check_push_access(repo_id: str, token: str | None = None) -> str:
    """The token to push to `repo_id` with, or an ExportError (bad id, offline, not logged in); no request."""
    from huggingface_hub import constants, get_token

    if not HUB_REPO.match(repo_id or ""):
        raise ExportError(f"'{repo_id}' is not a Hub repo id: write it as owner/name.")
    if constants.is_offline_mode():
        raise ExportError("Cannot push: Hugging Face offline mode is on (HF_HUB_OFFLINE); unset it first.")
    token = token or get_token()
    if not token:
        raise ExportError(
            "Cannot push: not logged in to the Hugging Face Hub. Set HF_TOKEN or run `hf auth login`."
        )
    return token


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


def hub_error(error: Exception, repo_id: str) -> ExportError | None:
    """The ExportError a failed push means to a user, or None when `error` is not the Hub's or network's."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        return _http_error(error, repo_id)
    if isinstance(error, _transport_errors()):
        return ExportError(f"Cannot push to {repo_id}: the Hugging Face Hub is unreachable (offline?).")
    return None


def _http_error(error, repo_id: str) -> ExportError:
    status = getattr(error.response, "status_code", None)
    if status == 401:
        return ExportError("Cannot push: the Hub refused the token (401). Check HF_TOKEN or `hf auth login`.")
    if status == 403:
        return ExportError(f"Cannot push: the token may not write to {repo_id} (403). Use a write token.")
    return ExportError(f"Cannot push to {repo_id}: the Hub answered {status} ({str(error).splitlines()[0]}).")
