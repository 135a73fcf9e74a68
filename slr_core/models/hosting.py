"""Hosted mode (SLR_HOSTED=1): the rules a public server enforces, read from the environment in one place.

Hosted mode turns on the source allow-list, the no-operator-token rule and quick-only evaluation, and
gives every limit its hosted default; a limit set explicitly applies in either mode. Locally, with
nothing set, everything stays open. SETTINGS is the table docs/hosting.md repeats (a test checks it).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from slr_core.errors import InputError, SourceError
from slr_core.models.presets import PRESETS
from slr_core.models.sources import (
    DEMO_SPECS,
    HUB_ID,
    Source,
    config_parameter_count,
    parameter_count,
    parse_source,
)

GIB = 2**30


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default when open (local) and when hosted, and what it does."""

    variable: str
    open_default: str
    hosted_default: str
    meaning: str


SETTINGS = (
    Setting("SLR_HOSTED", "0", "1 (Dockerfile)", "turn on hosted mode's rules"),
    Setting(
        "SLR_ALLOWED_SOURCES",
        "(any source)",
        "(presets only)",
        "comma-separated Hub ids visitors may load besides the presets; * and ? globs allowed",
    ),
    Setting("SLR_MAX_PARAMS", "none", "2B", "most parameters per model, read from the Hub before download"),
    Setting("SLR_MAX_PAIRS", "2", "2", "most model pairs loaded at once"),
    Setting("SLR_PAIR_MEMORY_GB", "none", "10", "most memory (GiB) the loaded pairs' weights may take"),
    Setting("SLR_EXPORT_QUOTA_GB", "none", "20", "most disk (GiB) the export folder may take"),
    Setting("SLR_EXPORT_TTL_HOURS", "none", "24", "hours an export is kept"),
    Setting("SLR_QUEUE_MAX", "none", "16", "most model computations waiting in the queue, all visitors"),
    Setting("SLR_PROMPT_CHARS", "none", "2000", "longest prompt (characters) a visitor may sample"),
)
# Gradio concurrency per kind of event (concurrency_id -> how many run at once); not settings, but
# stated here once: sampling and sweeps share one device lock, so more would only queue behind it.
# The evaluation has a slot of its own, so a long evaluation never holds back a pair's sweep.
# A new visitor's first load of the page ("start") is kept apart from the Load button ("load"), so the
# queue's bounds on heavy events (serve/admission.py) never keep a new visitor out.
CONCURRENCY = {"view": 8, "start": 4, "sample": 2, "load": 4, "sweep": 1, "evaluate": 1, "export": 1}
DEFAULT_CONCURRENCY = 2  # the queue's default_concurrency_limit, for events without a kind
SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}
# Local paths, .gguf files and dot segments (a Hub-shaped "org/.." is a folder to transformers).
PATH_LIKE = re.compile(r"^[./~]|\\|\.gguf$|(^|/)\.\.?(/|@|$)", re.IGNORECASE)
# A revision: a branch, tag or commit name, in segments separated by single slashes (refs/pr/7), none
# of them empty, "." or ".." (checked apart: segment_ok), and no second "@".
REVISION = re.compile(r"^[A-Za-z0-9_][\w.+-]*(/[\w.+-]+)*$", re.ASCII)
MAX_SOURCE_CHARS = 200  # Hub ids are at most 96 characters; a revision name adds a few dozen


class HostedModeError(SourceError):
    """A request hosted mode refuses: an unlisted or local source, a too large model, a full evaluation."""


@dataclass(frozen=True)
class HostedPolicy:
    """What this server allows; the default is the open local policy (no rules, no caps)."""

    hosted: bool = False
    allowed: tuple[str, ...] = ()
    operator_sources: tuple[str, ...] = ()  # $SLR_PRE/$SLR_POST: the operator's own choice, always allowed
    max_params: int | None = None
    max_pairs: int | None = 2
    pair_memory_bytes: int | None = None
    export_quota_bytes: int | None = None
    export_ttl_seconds: float | None = None
    queue_max_size: int | None = None
    prompt_max_chars: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostedPolicy:
        """The policy the environment asks for; a bad value is an InputError naming its variable."""
        env = os.environ if environ is None else environ
        hosted = _flag(env, "SLR_HOSTED")
        defaults = {s.variable: s.hosted_default if hosted else s.open_default for s in SETTINGS}

        def value(name: str) -> str:
            return env.get(name, "").strip() or defaults[name]

        operator = (env.get("SLR_PRE", ""), env.get("SLR_POST", ""))
        return cls(
            hosted=hosted,
            allowed=tuple(p.strip() for p in env.get("SLR_ALLOWED_SOURCES", "").split(",") if p.strip()),
            operator_sources=tuple(s.strip() for s in operator if s.strip()) if all(operator) else (),
            max_params=_count(value("SLR_MAX_PARAMS"), "SLR_MAX_PARAMS"),
            max_pairs=_count(value("SLR_MAX_PAIRS"), "SLR_MAX_PAIRS"),
            pair_memory_bytes=_scaled(value("SLR_PAIR_MEMORY_GB"), "SLR_PAIR_MEMORY_GB", GIB),
            export_quota_bytes=_scaled(value("SLR_EXPORT_QUOTA_GB"), "SLR_EXPORT_QUOTA_GB", GIB),
            export_ttl_seconds=_scaled(value("SLR_EXPORT_TTL_HOURS"), "SLR_EXPORT_TTL_HOURS", 3600),
            queue_max_size=_count(value("SLR_QUEUE_MAX"), "SLR_QUEUE_MAX"),
            prompt_max_chars=_count(value("SLR_PROMPT_CHARS"), "SLR_PROMPT_CHARS"),
        )

    # ------------------------------------------------------------ sources

    def source(self, spec: str) -> Source:
        """The Source a visitor's model string may load, or a HostedModeError naming hosted mode.

        Decided on the text alone, before the filesystem is looked at, so a refusal never tells
        whether a path exists; an allowed id is always a Hub id (a same-named local folder is ignored)."""
        spec = (spec or "").strip()
        if not self.hosted or not spec:
            return parse_source(spec)  # open, or empty (which parse_source refuses with its own words)
        if spec in self.operator_sources or spec in DEMO_SPECS:
            return parse_source(spec)  # the operator's own pair (any kind), or the bundled demo
        if len(spec) > MAX_SOURCE_CHARS:
            raise HostedModeError(
                f"A model source is at most {MAX_SOURCE_CHARS} characters long; this one has {len(spec)}."
            )
        if PATH_LIKE.search(spec):
            raise HostedModeError(
                f"Hosted mode does not load local files, folders or .gguf files ('{spec}'). "
                f"{self._choices()} To load your own files, run SLR Explorer locally."
            )
        repo, at, revision = spec.partition("@")
        if at and not revision_ok(revision):
            raise HostedModeError(
                f"'{revision}' is not a revision name: give a branch, tag or commit after a single @ "
                "(e.g. org/name@main), without empty, '.' or '..' parts."
            )
        if not (HUB_ID.match(repo) and self._allowed(repo, revision if at else None)):
            raise HostedModeError(
                f"Hosted mode loads only the presets and the Hub models this server allows; '{spec}' is "
                f"not among them. {self._choices()} Run SLR Explorer locally to load any model."
            )
        anonymous = not self._trusted(spec)
        return Source(spec, "hub", repo, revision or None, anonymous=anonymous, hub_only=True)

    def _allowed(self, repo: str, revision: str | None) -> bool:
        # Name and revision are matched apart, so a glob in the name never reaches past the "@". A
        # revision must be allowed by name ("org/*@v1"): "org/*" alone would let a visitor pick
        # "refs/pr/1", a branch anyone may open on a public repo.
        spec = repo if revision is None else f"{repo}@{revision}"
        if self._trusted(spec):
            return True
        for pattern in self.allowed:
            name, at, revisions = pattern.partition("@")
            if not fnmatch.fnmatchcase(repo, name):
                continue
            if (revision is None and not at) or (
                revision is not None and at and fnmatch.fnmatchcase(revision, revisions)
            ):
                return True
        return False

    def _trusted(self, spec: str) -> bool:
        # The operator named these exactly (a preset, or a glob-free allow-list entry): their token may
        # load them. A glob lets visitors pick, so what it matches loads without the operator's token.
        exact = {p for p in self.allowed if not any(c in p for c in "*?[")}
        presets = {s for preset in PRESETS.values() for s in (preset.pre, preset.post)}
        return spec in presets | exact | set(self.operator_sources)

    def _choices(self) -> str:
        extra = f", and Hub ids matching {', '.join(self.allowed)}" if self.allowed else ""
        return f"Choose a preset{extra}."

    def check_size(self, source: Source) -> int | None:
        """Refuse a Hub model over max_params before any weights download, counted both from the Hub's
        safetensors metadata and from its config.json (the model built on the meta device: what loading
        allocates, however few tensors the files hold); the larger count, or None when no cap applies.
        Pin the source first, so the files counted are the files loaded. Hub errors pass through."""
        from huggingface_hub.errors import NotASafetensorsRepoError

        if self.max_params is None or source.kind != "hub":
            return None
        try:
            counts = {"its safetensors metadata": parameter_count(source)}
        except NotASafetensorsRepoError as error:
            raise HostedModeError(
                f"'{source.spec}' has no safetensors weights on the Hub, so its size cannot be checked "
                "before downloading (SLR_MAX_PARAMS): choose a model published as safetensors."
            ) from error
        if counts["its safetensors metadata"] <= self.max_params:
            counts["its config.json"] = config_parameter_count(source)
        by, count = max(counts.items(), key=lambda item: item[1])
        if count > self.max_params:
            mode = "Hosted mode" if self.hosted else "This server"
            raise HostedModeError(
                f"'{source.spec}' has {format_count(count)} parameters (by {by}); "
                f"{mode} loads models of at most {format_count(self.max_params)} (SLR_MAX_PARAMS). "
                "Choose a smaller model, or run SLR Explorer locally."
            )
        return count

    # ------------------------------------------------------------ requests

    def check_evaluation(self, quick: bool) -> None:
        """Hosted mode runs the quick evaluation only."""
        if self.hosted and not quick:
            raise HostedModeError(
                "Hosted mode runs the quick evaluation only: tick Quick. The full evaluation runs "
                "locally: `python -m slr_core evaluate --task qa`."
            )

    def concurrency(self, kind: str) -> dict:
        """Gradio event keywords for a kind of event in CONCURRENCY: its id and its limit."""
        return {"concurrency_id": kind, "concurrency_limit": CONCURRENCY[kind]}


def revision_ok(revision: str) -> bool:
    """Whether `revision` names a branch, tag or commit: REVISION's form, no "." or ".." part, no "@"."""
    parts = revision.split("/")
    return bool(REVISION.match(revision)) and not any(part in (".", "..") for part in parts)


def format_count(count: int) -> str:
    """A parameter count for people: 1.24 B, 135 M."""
    if count >= 10**9:
        return f"{count / 10**9:.2f} B"
    return f"{count / 10**6:.0f} M" if count >= 10**6 else str(count)


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InputError(f"{name} must be 1 or 0 (true or false), got {text!r}.")


def _count(text: str, name: str) -> int | None:
    """A whole count with an optional K, M or B suffix (2B, 1.5e9, 16); 'none' means no limit."""
    if text.lower() == "none":
        return None
    match = re.fullmatch(r"([0-9.eE+]+)\s*([KMB]?)", text.upper())
    try:
        number = float(match.group(1)) * SUFFIXES[match.group(2)] if match else -1.0
    except ValueError:
        number = -1.0
    if number < 1 or not number.is_integer():
        raise InputError(
            f"{name} must be a positive whole number (e.g. 16, 2B, 1.5e9) or none, got {text!r}."
        )
    return int(number)


def _scaled(text: str, name: str, unit: float) -> int | None:
    """A positive number of `unit`s (GiB, hours) in bytes or seconds; 'none' means no limit."""
    if text.lower() == "none":
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not number > 0 or number == float("inf"):
        raise InputError(f"{name} must be a positive number or none, got {text!r}.")
    return int(number * unit)
