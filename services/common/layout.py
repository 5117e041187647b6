"""What asyncgate keeps in JetStream, and the check every service makes of it at start.

Only provisioning (``asyncgate provision``, which ``asyncgate up`` runs) creates or changes the
streams and buckets; the services may not (NATS permissions), and they refuse to start unless
what they find is what they expect. A service that could update a stream could also add a
subject transform and write around every subject permission, or shorten the retention.
"""

from dataclasses import dataclass
from typing import Final

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    PersistMode,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from contracts.names import (
    DEAD_LETTER_ROOT,
    DEAD_LETTER_STREAM,
    HISTORY_EVENTS,
    IDEMPOTENCY_BUCKET,
    LIMITS_BUCKET,
    LISTING_BUCKET,
    LISTING_COUNTER_ROOT,
    LISTING_COUNTER_STREAM,
    REQUESTED_EVENTS,
    REQUESTS_STREAM,
    RESULTS_BUCKET,
    STREAM,
    VIEW_BUCKET,
)
from services.common.retry import riding_through
from services.common.settings import Settings

# JetStream's duplicate window: a request re-published with the same operation id inside it is
# stored once. Two minutes is the server default, stated so nobody has to look it up.
DUPLICATE_WINDOW_S: Final = 120.0
LIMITS_TTL_S: Final = 24 * 3600.0
# Checking is read-only; a service started during a cluster's leader election waits it out.
CHECK_RIDE_THROUGH_S: Final = 30.0
# Ages are stored in nanoseconds and read back as floats.
_AGE_TOLERANCE_S: Final = 1.0


def event_stream_configs(settings: Settings) -> tuple[StreamConfig, StreamConfig]:
    """The event streams: the history (every event after an operation's request), then the
    requests, each with limits retention (replayable), file storage, kept longer than the view.
    Provisioning makes them in this order, so that a history stream made before requests were
    stored apart (with every event subject) gives up the request subjects before the requests
    stream takes them."""
    return (
        _event_stream_config(settings, STREAM, list(HISTORY_EVENTS)),
        _event_stream_config(settings, REQUESTS_STREAM, [REQUESTED_EVENTS]),
    )


def _event_stream_config(settings: Settings, name: str, subjects: list[str]) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.stream_max_age_s,
        num_replicas=settings.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
    )


def dead_letter_stream_config(settings: Settings) -> StreamConfig:
    """Messages the services could not use, kept as long as the events for an operator."""
    return StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[f"{DEAD_LETTER_ROOT}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.stream_max_age_s,
        num_replicas=settings.replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def _bucket_config(settings: Settings, bucket: str, description: str, ttl: float) -> KeyValueConfig:
    """A one-value-per-key bucket on file, read by direct get (as the permissions allow, and one
    hop cheaper on a cluster)."""
    return KeyValueConfig(
        bucket=bucket,
        description=description,
        history=1,
        ttl=ttl,
        storage=StorageType.FILE,
        replicas=settings.replicas,
        direct=True,
    )


def view_bucket_config(settings: Settings) -> KeyValueConfig:
    """The status view: one value per operation, expiring ``result_ttl`` after its last write."""
    return _bucket_config(
        settings,
        VIEW_BUCKET,
        "asyncgate operation status view (rebuildable from the event stream)",
        settings.result_ttl_s,
    )


def view_persist_mode(settings: Settings) -> PersistMode | None:
    """How the view bucket is written: NATS's async persistence where settings ask for it and
    the bucket has one replica (NATS forces it on R1 streams only); None: NATS's default."""
    if settings.view_persist_mode == "async" and settings.replicas == 1:
        return PersistMode.ASYNC
    return None


def kv_stream_config(config: KeyValueConfig, persist_mode: PersistMode) -> StreamConfig:
    """The stream nats-py's ``create_key_value`` makes for ``config`` (it takes no persist mode),
    written with ``persist_mode``."""
    duplicate_window = min(config.ttl, DUPLICATE_WINDOW_S) if config.ttl else DUPLICATE_WINDOW_S
    return StreamConfig(
        name=f"KV_{config.bucket}",
        description=config.description,
        subjects=[f"$KV.{config.bucket}.>"],
        allow_direct=config.direct,
        allow_rollup_hdrs=True,
        allow_msg_ttl=True,
        deny_delete=True,
        discard=DiscardPolicy.NEW,
        duplicate_window=duplicate_window,
        max_age=config.ttl,
        max_bytes=config.max_bytes,
        max_consumers=-1,
        max_msg_size=config.max_value_size,
        max_msgs=-1,
        max_msgs_per_subject=config.history,
        num_replicas=config.replicas,
        storage=config.storage,
        persist_mode=persist_mode,
    )


def limits_bucket_config(settings: Settings) -> KeyValueConfig:
    """The per-user limit state; an idle user's entry expires after a day."""
    return _bucket_config(
        settings,
        LIMITS_BUCKET,
        "asyncgate per-user limits (active operations, last start)",
        LIMITS_TTL_S,
    )


def idempotency_bucket_config(settings: Settings) -> KeyValueConfig:
    """Idempotency keys and the operations they queued, kept as long as the views."""
    return _bucket_config(
        settings,
        IDEMPOTENCY_BUCKET,
        "asyncgate idempotency keys per principal (the operation each queued)",
        settings.result_ttl_s,
    )


def listing_bucket_config(settings: Settings) -> KeyValueConfig:
    """Each principal's operations by ordinal and back; expiring as the views do, counted from
    when the operation was queued (never after its view)."""
    return _bucket_config(
        settings,
        LISTING_BUCKET,
        "asyncgate operations per principal, in the order they were queued",
        settings.result_ttl_s,
    )


def listing_counter_stream_config(settings: Settings) -> StreamConfig:
    """One counter per principal handing out listing ordinals. Never expires: an ordinal handed
    out again would overwrite a retained entry."""
    return StreamConfig(
        name=LISTING_COUNTER_STREAM,
        subjects=[f"{LISTING_COUNTER_ROOT}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_msgs_per_subject=1,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        allow_msg_counter=True,
    )


def results_bucket_config(settings: Settings) -> StreamConfig:
    """The results too large for their events: a JetStream Object Store (the stream nats-py's
    ``create_object_store`` makes: chunks and metadata subjects, rollups, direct gets), kept as
    long as the views, so an object expires with the view that refers to it."""
    return StreamConfig(
        name=f"OBJ_{RESULTS_BUCKET}",
        description="asyncgate results too large for their terminal events",
        subjects=[f"$O.{RESULTS_BUCKET}.C.>", f"$O.{RESULTS_BUCKET}.M.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.result_ttl_s,
        num_replicas=settings.replicas,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


def bucket_stream(config: KeyValueConfig) -> StreamConfig:
    """The stream a bucket lives in, as far as asyncgate relies on it."""
    return StreamConfig(
        name=f"KV_{config.bucket}",
        subjects=[f"$KV.{config.bucket}.>"],
        storage=config.storage,
        max_age=config.ttl,
        num_replicas=config.replicas,
        max_msgs_per_subject=config.history,
        allow_direct=config.direct,
    )


@dataclass(frozen=True)
class Layout:
    """The streams one service relies on, as they must be."""

    streams: tuple[StreamConfig, ...]


def layout_for(
    settings: Settings,
    *,
    limits: bool = False,
    listing: bool = False,
    idempotency: bool = False,
    results: bool = False,
) -> Layout:
    """Everything a service relies on: the event streams, the dead letters, the view bucket, and
    for the edge the limits bucket, the listing (its bucket and counters) and the idempotency
    keys; for the executor and the edge the results bucket."""
    streams = [
        *event_stream_configs(settings),
        dead_letter_stream_config(settings),
        bucket_stream(view_bucket_config(settings)),
    ]
    if limits:
        streams.append(bucket_stream(limits_bucket_config(settings)))
    if listing:
        streams.append(bucket_stream(listing_bucket_config(settings)))
        streams.append(listing_counter_stream_config(settings))
    if idempotency:
        streams.append(bucket_stream(idempotency_bucket_config(settings)))
    if results:
        streams.append(results_bucket_config(settings))
    return Layout(streams=tuple(streams))


def config_problems(expected: StreamConfig, found: StreamConfig) -> list[str]:
    """How ``found`` differs from ``expected`` in what asyncgate relies on (empty: not at all)."""
    name = expected.name
    problems = []
    if sorted(found.subjects or []) != sorted(expected.subjects or []):
        problems.append(f"{name} takes subjects {found.subjects}, not {expected.subjects}")
    for field in (
        "retention",
        "storage",
        "max_msgs_per_subject",
        "allow_direct",
        "allow_msg_counter",
    ):
        wanted = getattr(expected, field)
        if wanted is not None and getattr(found, field) != wanted:
            problems.append(f"{name} has {field} {getattr(found, field)}, not {wanted}")
    if (found.num_replicas or 1) != (expected.num_replicas or 1):
        problems.append(f"{name} has {found.num_replicas} replicas, not {expected.num_replicas}")
    for field in ("max_age", "duplicate_window"):
        wanted_s = getattr(expected, field)
        # 0 is StreamConfig's default: the expectation does not set it.
        if wanted_s and abs((getattr(found, field) or 0) - wanted_s) > _AGE_TOLERANCE_S:
            problems.append(f"{name} has {field} {getattr(found, field)} s, not {wanted_s} s")
    # Anything that moves or copies messages elsewhere goes around the subject permissions.
    for field in ("subject_transform", "republish", "mirror", "sources"):
        if getattr(found, field, None):
            problems.append(f"{name} has a {field}, which asyncgate never sets")
    if getattr(found, "sealed", False):
        problems.append(f"{name} is sealed")
    return problems


class NotProvisionedError(RuntimeError):
    """JetStream does not hold what the service relies on, as it must be."""


async def check_provisioned(js: JetStreamContext, layout: Layout) -> None:
    """Raise NotProvisionedError, naming every difference, unless ``layout`` is in place."""

    async def differences() -> list[str]:
        problems = []
        for expected in layout.streams:
            try:
                info = await js.stream_info(expected.name or "")
            except NotFoundError:
                problems.append(f"{expected.name} does not exist")
                continue
            problems += config_problems(expected, info.config)
        return problems

    problems = await riding_through(
        differences, what="checking the streams and buckets", budget_s=CHECK_RIDE_THROUGH_S
    )
    if problems:
        raise NotProvisionedError(
            "JetStream is not as asyncgate needs it ("
            + "; ".join(problems)
            + "): run `asyncgate provision` with credentials allowed to create streams"
        )


async def is_ready(js: JetStreamContext) -> bool:
    """True when the event streams and the view bucket exist."""
    try:
        await js.stream_info(STREAM)
        await js.stream_info(REQUESTS_STREAM)
        await js.stream_info(f"KV_{VIEW_BUCKET}")
    except (NotFoundError, TimeoutError, nats.errors.Error):
        return False
    return True
