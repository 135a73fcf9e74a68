"""The lambda slice: CRC of one restoration blended in at fractions lambda from 0 to 1, cached per point."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

from slr_core import cache
from slr_core.crc.branches import make_batch
from slr_core.crc.prompts import EncodedPrompts, crc_means
from slr_core.engine.cached_sweep import context_id
from slr_core.engine.capture import Reference
from slr_core.engine.layouts import checked_scores, widen_layout
from slr_core.models.loading import ModelPair
from slr_core.slr.hybrid import Restoration, build_restored
from slr_core.slr.landscape import METRICS, Point

LAMBDAS = tuple(k / 10 for k in range(11))  # the lambda slice: 0 (post-trained) to 1 (restored)


def lambda_slice(
    pair: ModelPair,
    encoded: EncodedPrompts,
    restoration: Restoration,
    post: Point | None = None,
    lambdas: tuple[float, ...] = LAMBDAS,
    use_cache: bool = True,
) -> dict[float, Point]:
    """CRC of the restoration at each fraction lambda (0 is the post-trained model), cached per point."""
    return dict(lambda_points(pair, encoded, restoration, post, lambdas, use_cache))


def lambda_points(
    pair: ModelPair,
    encoded: EncodedPrompts,
    restoration: Restoration,
    post: Point | None = None,
    lambdas: tuple[float, ...] = LAMBDAS,
    use_cache: bool = True,
    turn: AbstractContextManager | None = None,
) -> Iterator[tuple[float, Point]]:
    """The slice one point at a time, each computed inside its own `turn` (e.g. the app's device lock),
    so others get the device between points and closing the generator (a visitor left) stops it.

    `post` is the post-trained model's point on the same full prompt set, or None to compute it."""
    turn = turn or nullcontext()
    context = context_id(pair, encoded)
    encoded = widen_layout(pair, encoded)  # answers of several tokens: as the sweep lays them out
    batch = make_batch(encoded, pair.tokenizer.pad_token_id, pair.device)
    reference = Reference(pair.post, batch)  # every blend replays the post model's layer calls
    for fraction in lambdas:
        if fraction == 0 and post is not None:
            yield fraction, post
            continue
        key = cache.result_key(context, f"lambda/{restoration.mode}/{restoration.span}/{fraction:.4f}")
        stored = cache.get_result(key) if use_cache else None
        if stored:
            yield fraction, Point(*(stored[metric] for metric in METRICS))
            continue
        with turn:
            model = (
                pair.post
                if fraction == 0
                else build_restored(pair, dataclasses.replace(restoration, fraction=fraction))
            )
            point = Point(*crc_means(checked_scores(pair, model, encoded, batch, reference=reference)))
        if use_cache:
            cache.put_result(key, dataclasses.asdict(point))
        yield fraction, point
