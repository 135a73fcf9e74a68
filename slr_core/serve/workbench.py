"""The app's model work on shared pairs: sweeps, sample streams, lambda slices and evaluations, each
taking its turn on the device. Calls name a pair by its registry key, so they can run in another
process (a ZeroGPU worker) that loads the pair itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

from slr_core.crc.prompts import CRCPrompt
from slr_core.downstream import evaluation
from slr_core.downstream.sampling import SamplingSettings, stream_samples
from slr_core.engine import cached_sweep
from slr_core.engine.lambda_slice import lambda_points
from slr_core.serve.compare import sampled_model
from slr_core.serve.registry import PairKey, PairRegistry
from slr_core.serve.session import in_turns
from slr_core.slr.hybrid import Restoration
from slr_core.slr.landscape import Landscape, Point


class Workbench:
    """Model work on the registry's pairs; `turn` (a lock, or a null context) serialises device use."""

    def __init__(self, registry: PairRegistry, turn: AbstractContextManager, stream_seconds: float) -> None:
        self.registry, self.turn, self.stream_seconds = registry, turn, stream_seconds

    def sweep_steps(
        self,
        key: PairKey,
        missing: set[tuple[int, int]],
        mode: str = "layer",
        prompts: tuple[CRCPrompt, ...] | None = None,
    ) -> Iterator[Landscape]:
        """Compute what the cache lacks (references, intervals, soup) for the prompt set `prompts` (None:
        the paper's), yielding snapshots as results come."""
        with self.registry.using(key) as entry:  # never evicted while this runs
            # A complete coarse map on a few prompts first, then the full set refines it (cached_sweep.first_look).
            steps = cached_sweep.first_look(
                entry.pair, entry.encoded_for(prompts), intervals=missing, soup=True, mode=mode
            )
            yield from in_turns(steps, self.turn)

    def stream_column(
        self, key: PairKey, which: str, restoration: Restoration, prompt: str, settings: SamplingSettings
    ) -> Iterator[list[str]]:
        """Replies of one compare column (post, pre or this request's hybrid), as they grow."""
        with self.registry.using(key) as entry:
            model = sampled_model(entry.pair, which, restoration)
            yield from stream_samples(
                model, entry.pair.tokenizer, prompt, settings, turn=self.turn, every=self.stream_seconds
            )

    def lambda_points(
        self,
        key: PairKey,
        restoration: Restoration,
        post: Point | None,
        prompts: tuple[CRCPrompt, ...] | None = None,
    ) -> Iterator[dict[float, Point]]:
        """CRC of the restoration at lambda = 0, 0.1, ..., 1 (cached per point): the points so far after
        each, every point a turn of its own; closing the generator (the visitor left) stops the slice."""
        points: dict[float, Point] = {}
        with self.registry.using(key) as entry:
            encoded = entry.encoded_for(prompts)
            steps = lambda_points(entry.pair, encoded, restoration, post, turn=self.turn)
            for fraction, point in steps:
                points[fraction] = point
                yield dict(points)

    def evaluation_steps(
        self, key: PairKey, landscape: Landscape, task: str, quick: bool, temperatures: list[float], seed: int
    ) -> Iterator[dict]:
        """The evaluation's results so far after each (method, temperature), under the registry's policy;
        each step takes its own turn, so samplers are not starved, and closing the generator stops it."""
        with self.registry.using(key) as entry:
            yield from evaluation.evaluation_steps(
                entry.pair,
                landscape,
                task,
                quick,
                temperatures,
                seed,
                turn=self.turn,
                policy=self.registry.policy,
            )
