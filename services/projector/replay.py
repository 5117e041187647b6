"""Rebuilding the status view (and the listing's index) from the event streams: they are the source
of truth.

Replay folds exactly what the projector folds: every event the projector would admit, the
history stream in its order, then the requests stream, through the same order-free ``evolve``.
Messages it would set aside are skipped. Rebuilding then
compares the replay with the bucket (``services/projector/compare.py``) and writes only what
differs, each write a compare-and-set on the revision it compared against, so a projector folding
newer events meanwhile is never overwritten with an older view.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from contracts.lifecycle import evolve, folded_at
from contracts.names import (
    ALL_EVENTS,
    EVENT_STREAMS,
    PROJECTOR_DURABLE,
    REQUESTS_STREAM,
    STREAM,
    VIEW_BUCKET,
    view_key,
)
from contracts.view import OperationView, encode_view
from services.common.bulk_publish import Outgoing, publish_all
from services.common.event_log import WRONG_LAST_SEQUENCE
from services.common.jetstream import stored_at
from services.common.listing import Listing, Unindexed
from services.common.poison import Unusable, admit
from services.common.stream_reads import read_stream
from services.common.views import read_bucket
from services.projector.compare import Difference, StoredViews, compare

log = logging.getLogger(__name__)

# Writes in flight at once while rebuilding (nats-py allows 4,000 unacknowledged at most).
WRITE_WINDOW: Final = 2000
# A view whose newest event is older than the bucket's TTL less this has expired, or is about
# to: it is neither compared nor written back (the stream keeps events longer than the view).
EXPIRY_MARGIN_S: Final = 300.0

# Told how many more messages (or writes) are done.
Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    """The default progress callback: nobody watching."""


@dataclass
class Replay:
    """The views the event streams fold into, as of ``last_sequence`` of the history stream and
    ``requests_through`` of the requests stream, keyed like the bucket."""

    views: dict[str, OperationView] = field(default_factory=dict)
    last_sequence: int = 0
    requests_through: int = 0
    events: int = 0
    skipped: int = 0
    # Stored time (seconds since the epoch) of each view's newest event.
    newest: dict[str, float] = field(default_factory=dict)

    def expired(self, ttl_s: float, now: float) -> set[str]:
        """Keys whose view the bucket has dropped (or soon will): older than ``ttl_s``."""
        if ttl_s <= 0:
            return set()
        cutoff = now - ttl_s + EXPIRY_MARGIN_S
        return {key for key, stored_at in self.newest.items() if stored_at < cutoff}


async def stream_size(js: JetStreamContext) -> int:
    """How many messages a replay reads (for a progress bar)."""
    total = 0
    for stream in EVENT_STREAMS:
        with contextlib.suppress(NotFoundError):
            total += (await js.stream_info(stream)).state.messages
    return total


async def replay_stream(js: JetStreamContext, progress: Progress = _no_progress) -> Replay:
    """Fold both event streams, each from its first event to its last when asked, into views.

    The history is read first: every event read there has its request stored before it, so read
    in the requests stream after it."""
    replay = Replay()
    for stream in (STREAM, REQUESTS_STREAM):
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            continue
        if info.state.messages > 0:
            folding = _Folding(replay, progress, stream)
            await read_stream(js, stream, ALL_EVENTS, folding)
    progress(replay.events % _PROGRESS_EVERY)
    # Events without their request (a deleted operation's late ending) make no view, as in the
    # projector (services/projector/view_writer.py).
    for key in [key for key, view in replay.views.items() if view.created_at is None]:
        del replay.views[key]
        replay.newest.pop(key, None)
    return replay


# Progress is told every this many messages.
_PROGRESS_EVERY: Final = 1000


@dataclass(frozen=True)
class _Folding:
    """Folds each message the replay reads into its view."""

    replay: Replay
    progress: Progress
    stream: str

    def __call__(self, msg: Msg) -> None:
        replay = self.replay
        sequence, stored = stored_at(msg.reply)
        replay.events += 1
        if self.stream == REQUESTS_STREAM:
            replay.requests_through = max(replay.requests_through, sequence)
        else:
            replay.last_sequence = max(replay.last_sequence, sequence)
        event = admit(msg.subject, msg.data)
        if isinstance(event, Unusable):
            replay.skipped += 1
            log.warning("replay: skipped message %d (%s)", sequence, event.reason)
        else:
            key = view_key(event.tenant, event.principal, event.operation_id)
            views = replay.views
            views[key] = evolve(views.get(key), event, folded_at(self.stream, event, sequence))
            # The view's TTL counts from its last write, a moment after its newest event.
            replay.newest[key] = stored
        if replay.events % _PROGRESS_EVERY == 0:
            self.progress(_PROGRESS_EVERY)


async def replay_views(js: JetStreamContext) -> dict[str, OperationView]:
    """Fold the whole stream, from its first event, into views keyed like the bucket."""
    return (await replay_stream(js)).views


@dataclass(frozen=True)
class Settled:
    """The sequences through which the projector has folded every event (its ack floors): of
    the history stream and of the requests stream."""

    history: int
    requests: int

    def passed_by(self, view: OperationView) -> bool:
        """Whether ``view`` holds an event the projector had not folded yet."""
        return view.last_sequence > self.history or (view.request_sequence or 0) > self.requests


async def settled_through(js: JetStreamContext) -> Settled | None:
    """How far the projector has folded each event stream; None when there is no projector
    consumer to ask."""
    try:
        history = await js.consumer_info(STREAM, PROJECTOR_DURABLE)
        requests = await js.consumer_info(REQUESTS_STREAM, PROJECTOR_DURABLE)
    except NotFoundError:
        return None
    return Settled(history=_ack_floor(history), requests=_ack_floor(requests))


def _ack_floor(info: ConsumerInfo) -> int:
    return info.ack_floor.stream_seq if info.ack_floor is not None else 0


async def bucket_ttl_s(js: JetStreamContext) -> float:
    """How long the bucket keeps a view after its last write (0: forever)."""
    return (await js.stream_info(f"KV_{VIEW_BUCKET}")).config.max_age or 0.0


@dataclass(frozen=True)
class Verified:
    """A replay compared with the bucket."""

    replay: Replay
    stored: StoredViews
    differences: list[Difference]
    # Operations whose newest events the projector has not folded yet (not compared).
    in_flight: int


async def verify(js: JetStreamContext, progress: Progress = _no_progress) -> Verified:
    """Replay the stream and compare it with the bucket, writing nothing.

    Views the projector has not caught up with yet (events past its ack floor) are left out, so
    a live stack does not report its own lag as differences.
    """
    settled = await settled_through(js)
    replay = await replay_stream(js, progress)
    stored = await read_bucket(js, ">", within_s=None)
    ignore = replay.expired(await bucket_ttl_s(js), time.time())
    in_flight = set()
    if settled is not None:
        in_flight = {k for k, view in replay.views.items() if settled.passed_by(view)}
    differences = compare(replay, stored, ignore=ignore | in_flight)
    return Verified(replay, stored, differences, len(in_flight))


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild found and did."""

    verified: Verified
    written: int
    removed: int
    # Writes refused because a projector changed the key meanwhile (its view is newer).
    overtaken: int
    indexed: int


async def rebuild(
    nc: NatsClient,
    listing: Listing | None = None,
    *,
    progress: Progress = _no_progress,
    on_writes: Callable[[int], None] = _no_progress,
) -> Rebuilt:
    """Replay the stream, write every view that differs from the bucket's, remove views the
    stream does not hold, and with ``listing`` index every operation it lacks: at the ordinal its
    request carries, or (requests stored before they carried one) at a fresh one, in stream
    order.

    ``progress`` is told of the messages read, then of the writes; ``on_writes`` how many
    writes follow, before they start.
    """
    js = nc.jetstream()
    replay = await replay_stream(js, progress)
    stored = await read_bucket(js, ">", within_s=None)
    ignore = replay.expired(await bucket_ttl_s(js), time.time())
    differences = compare(replay, stored, ignore=ignore)
    unindexed: list[Unindexed] = []
    if listing is not None:
        indexed = await listing.indexed()
        for key, view in replay.views.items():
            tenant, principal, operation_id = view.tenant, view.principal, view.operation_id
            at, carried = indexed.get((tenant, principal, operation_id)), view.listing_ordinal
            # Indexed only at the ordinal its request carries, if it carries one: an entry at
            # another is not listed.
            if key not in ignore and (not at or (carried is not None and carried not in at)):
                # At that ordinal (None: a fresh one, for a request stored before requests
                # carried one).
                unindexed.append(Unindexed(tenant, principal, operation_id, carried))
    on_writes(len(differences) + len(unindexed))
    outcomes = await publish_all(nc, _writes(differences, replay), progress=progress)
    written = removed = overtaken = 0
    for difference, outcome in zip(differences, outcomes, strict=True):
        if outcome is None:
            written += difference.key in replay.views
            removed += difference.key not in replay.views
        elif outcome.err_code == WRONG_LAST_SEQUENCE:
            overtaken += 1  # a projector wrote it meanwhile: its view is newer
        else:
            raise outcome
    if listing is not None and unindexed:
        await listing.record_many(unindexed, progress)
    verified = Verified(replay, stored, differences, 0)
    return Rebuilt(verified, written, removed, overtaken, len(unindexed))


async def rebuild_views(nc: NatsClient, listing: Listing | None = None) -> int:
    """Rebuild the view bucket (see ``rebuild``); return how many views the stream holds.

    With ``listing``, also index every operation the listing lacks, at the ordinal its request
    carries (older requests: a fresh one, in stream order, the order they were queued), so
    ``asyncRequests`` lists what the rebuilt view holds. Operations already indexed keep their
    place.
    """
    rebuilt = await rebuild(nc, listing)
    return len(rebuilt.verified.replay.views)


def _writes(differences: list[Difference], replay: Replay) -> list[Outgoing]:
    """The bucket writes that make each differing key what the replay says, each a
    compare-and-set on the revision compared against (0: the key must not exist)."""
    writes: list[Outgoing] = []
    for difference in differences:
        headers = {_EXPECTED_LAST: str(difference.revision or 0)}
        view = replay.views.get(difference.key)
        if view is None:
            headers[_KV_OPERATION] = "DEL"
        payload = b"" if view is None else encode_view(view)
        writes.append((_KEY_PREFIX + difference.key, payload, headers))
    return writes


_KEY_PREFIX: Final = f"$KV.{VIEW_BUCKET}."
_EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
_KV_OPERATION: Final = "KV-Operation"
