"""Device maps as a user gives them (--device-map): a strategy accelerate resolves, or a JSON file.

No torch here: the CLI checks --device-map before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from slr_core.errors import InputError

# Strategies accelerate resolves itself; an explicit dict map (or a JSON file of one) is used as given.
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
# Devices a map's entries may name: a GPU index, or one of these (cuda:N too).
MAP_DEVICES = ("cpu", "disk", "mps", "cuda")
MAP_EXAMPLE = (
    '{"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 1, "model.norm": 1, "lm_head": 1}'
)


def check_device_map(value: str, name: str = "--device-map") -> str:
    """--device-map as typed: a strategy accelerate resolves (auto, balanced, ...) or a JSON map file."""
    text = str(value).strip()
    if text not in STRATEGIES:
        read_device_map(text, name)
    return text


def read_device_map(path: str | Path, name: str = "--device-map") -> dict:
    """The {module name: device} map in a JSON file; InputError saying what is wrong otherwise."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(
            f"{name} {str(path)!r} is neither a placement strategy ({', '.join(STRATEGIES)}) nor a JSON file "
            "that exists: give auto, balanced or the path of a device map file."
        )
    try:
        device_map = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(
            f"{name} cannot read {file} ({error}): write a JSON object such as {MAP_EXAMPLE}."
        ) from error
    if not isinstance(device_map, dict) or not device_map:
        raise InputError(f"{name} {file} must hold a non-empty JSON object such as {MAP_EXAMPLE}.")
    for module, device in device_map.items():
        if not _known_device(device):
            raise InputError(
                f"{name} {file}: module {module!r} is mapped to {device!r}; use a GPU index (0, 1, ...), "
                "'cuda:N', 'cpu', 'mps' or 'disk'."
            )
    return device_map


def _known_device(device) -> bool:
    if isinstance(device, int) and not isinstance(device, bool):
        return device >= 0
    return isinstance(device, str) and (
        device in MAP_DEVICES or re.fullmatch(r"cuda:\d+", device) is not None
    )


def resolved_map(device_map: str | dict | None) -> str | dict | None:
    """A strategy name or dict as it is; a file path read into its dict."""
    if isinstance(device_map, str) and device_map not in STRATEGIES:
        return read_device_map(device_map)
    return device_map


def map_identity(device_map: str | dict | None) -> str:
    """A short stable text naming a device map, for cache keys: '', a strategy, or 'map:' + its hash."""
    device_map = resolved_map(device_map)
    if not device_map or isinstance(device_map, str):
        return device_map or ""
    text = json.dumps(device_map, sort_keys=True)
    return "map:" + hashlib.sha256(text.encode()).hexdigest()[:12]
