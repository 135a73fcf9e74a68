"""Who may queue what: a bound per visitor on the events waiting in the web server's queue.

Gradio's own `max_size` counts every waiting event of every visitor, so one client parking heavy
calls fills it and a new visitor's page load is refused ("Queue is full!"). Here the heavy kinds
(sweeps, samples, slices, evaluations, exports, loads) are bounded per session and per client address,
and in all (the queue's max size), while the light ones (redraws, a page's first load) are bounded
per session only, so a flood from one client never keeps another visitor out. A second sweep from
the same session replaces its first, which is still waiting (the newer one is what the page shows).
Nothing here imports a web UI: `install` wraps the queue object the server hands it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

HEAVY = frozenset({"sweep", "evaluate", "sample", "export", "load"})  # concurrency ids (hosting.CONCURRENCY)
REPLACED = frozenset({"sweep"})  # a session's newer event of these kinds replaces its waiting one


@dataclass(frozen=True)
class Limits:
    """How many events may wait: heavy ones per session, per client address and in all; light ones
    per session (None: no bound in all, as Gradio's max_size None)."""

    heavy_per_session: int = 2
    heavy_per_client: int = 4
    heavy_total: int | None = 16
    light_per_session: int = 16


@dataclass(frozen=True)
class Waiting:
    """One waiting event as admission sees it."""

    event_id: str
    session: str
    client: str
    kind: str | None


def decide(waiting: list[Waiting], new: Waiting, limits: Limits) -> tuple[str | None, list[str]]:
    """(why `new` is refused or None, the waiting event ids it replaces) under `limits`."""
    heavy = new.kind in HEAVY
    replaced = [
        w.event_id
        for w in waiting
        if new.kind in REPLACED and w.kind == new.kind and w.session == new.session
    ]
    others = [w for w in waiting if w.event_id not in replaced]
    mine = [w for w in others if w.session == new.session and (w.kind in HEAVY) == heavy]
    if not heavy:
        if len(mine) >= limits.light_per_session:
            return f"You have {len(mine)} requests waiting already: wait for them to finish.", []
        return None, replaced
    if len(mine) >= limits.heavy_per_session:
        return (
            f"You have {len(mine)} model computations waiting already (at most {limits.heavy_per_session} "
            "per visitor): wait for them to finish, or stop one.",
            [],
        )
    from_client = [w for w in others if w.client == new.client and w.kind in HEAVY]
    if len(from_client) >= limits.heavy_per_client:
        return (
            f"Your address has {len(from_client)} model computations waiting already (at most "
            f"{limits.heavy_per_client}): wait for them to finish.",
            [],
        )
    total = [w for w in others if w.kind in HEAVY]
    if limits.heavy_total is not None and len(total) >= limits.heavy_total:
        return "The server is busy (its queue of model computations is full): try again in a minute.", []
    return None, replaced


def client_address(headers: dict, host: str | None) -> str:
    """The visitor's address: the last X-Forwarded-For entry (the one a Space's proxy appends; earlier
    ones are the client's own word), else the peer's."""
    forwarded = headers.get("x-forwarded-for", "")
    return forwarded.split(",")[-1].strip() or host or "unknown"


def install(queue, limits: Limits) -> None:
    """Admit events into Gradio's `queue` by `limits`: wraps its push, and lifts its own max_size (the
    bound moves here, on heavy events only); `queue.slr_limits` records the limits."""
    original: Callable[..., Awaitable] = queue.push
    queue.max_size, queue.slr_limits = None, limits

    def kind_of(body) -> str | None:
        fn = queue.blocks.fns.get(body.fn_index) if body.fn_index is not None else None
        return getattr(fn, "concurrency_id", None)

    def waiting() -> list[Waiting]:
        events = [event for q in queue.event_queue_per_concurrency_id.values() for event in q.queue]
        return [
            Waiting(e._id, e.session_hash, getattr(e, "slr_client", "unknown"), e.concurrency_id)
            for e in events
        ]

    async def push(body, request, username):
        address = client_address(dict(request.headers), _host(request))
        new = Waiting("", body.session_hash or "", address, kind_of(body))
        refused, replaced = decide(waiting(), new, limits)
        if refused:
            return False, refused, "error"
        for event_id in replaced:
            await queue.remove_from_queue(event_id)
        pushed, event_id, state = await original(body, request, username)
        if pushed and event_id in queue.event_ids_to_events:
            queue.event_ids_to_events[event_id].slr_client = new.client
        return pushed, event_id, state

    queue.push = push


def _host(request) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)
