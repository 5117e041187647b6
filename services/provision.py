"""Provisioning: creating, or bringing up to date, everything asyncgate keeps in JetStream.

Run once per deployment and after a change of the settings that shape the streams
(``ASYNCGATE_RESULT_TTL_HOURS``, ``ASYNCGATE_STREAM_EXTRA_HOURS``, ``ASYNCGATE_REPLICAS``), with
credentials allowed to create streams: ``asyncgate provision``. ``asyncgate up`` runs it before
the services. The services themselves only check (``services/common/layout.py``).
"""

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, KeyValueConfig, PersistMode, StreamConfig
from nats.js.errors import NotFoundError

from contracts.names import EXECUTOR_DURABLE, REQUESTS_STREAM, STREAM
from services.common.jetstream import close_connection, connect
from services.common.layout import (
    CHECK_RIDE_THROUGH_S,
    NotProvisionedError,
    bucket_stream,
    check_provisioned,
    config_problems,
    dead_letter_stream_config,
    event_stream_configs,
    idempotency_bucket_config,
    kv_stream_config,
    layout_for,
    limits_bucket_config,
    listing_bucket_config,
    listing_counter_stream_config,
    results_bucket_config,
    view_bucket_config,
    view_persist_mode,
)
from services.common.retry import riding_through
from services.common.settings import Settings


async def provision_nats(settings: Settings) -> list[str]:
    """Connect with the configured login, provision, disconnect; a line per thing done."""
    nc = await connect(settings, "asyncgate-provision")
    try:
        return await provision(nc.jetstream(), settings)
    finally:
        await close_connection(nc)


def service_consumers(settings: Settings) -> list[tuple[str, ConsumerConfig]]:
    """The durable consumers of the executors, the projectors and the callbacks service (made
    here too, so that operations ending before it first starts are still called back), each
    with a stream it reads."""
    from services.callbacks import app as callbacks  # noqa: PLC0415 (FastStream only here)
    from services.executor import app as executor  # noqa: PLC0415
    from services.projector import app as projector  # noqa: PLC0415

    return [
        (stream, service.consumer_config(settings))
        for service in (executor, projector, callbacks)
        for stream in service.CONSUMED_STREAMS
    ]


class RequestsNotTakenError(NotProvisionedError):
    """A store from before requests were stored apart still holds requests no executor took."""


async def provision(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create or update the streams, buckets and durable consumers; a line per thing done.

    Raises RequestsNotTakenError, changing nothing, on a store from before requests were stored
    in a stream of their own while its executors' consumer still has requests to take."""

    async def everything() -> list[str]:
        old_executors = await _executors_on_history(js)
        report = [await _stream(js, events) for events in event_stream_configs(settings)]
        if old_executors:
            await js.delete_consumer(STREAM, EXECUTOR_DURABLE)
            report.append(f"consumer {EXECUTOR_DURABLE} on {STREAM}: removed (it has no requests)")
        report += [
            await _stream(js, dead_letter_stream_config(settings)),
            await _bucket(js, view_bucket_config(settings), view_persist_mode(settings)),
            await _bucket(js, limits_bucket_config(settings)),
            await _bucket(js, listing_bucket_config(settings)),
            await _stream(js, listing_counter_stream_config(settings)),
            await _bucket(js, idempotency_bucket_config(settings)),
            await _stream(js, results_bucket_config(settings)),
        ]
        for stream, consumer in service_consumers(settings):
            await js.add_consumer(stream, consumer)
            report.append(f"consumer {consumer.durable_name} on {stream}: ready")
        return report

    report = await riding_through(everything, what="provisioning", budget_s=CHECK_RIDE_THROUGH_S)
    await check_provisioned(
        js,
        layout_for(settings, limits=True, listing=True, idempotency=True, results=True),
    )
    return report


async def _executors_on_history(js: JetStreamContext) -> bool:
    """Whether the executors' consumer is still on the history stream, as before requests were
    stored apart; RequestsNotTakenError if it still has requests to take: once the stream gives
    up the request subjects, no executor would read them."""
    try:
        info = await js.consumer_info(STREAM, EXECUTOR_DURABLE)
    except NotFoundError:
        return False
    waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
    if waiting:
        raise RequestsNotTakenError(
            f"{STREAM} holds {waiting} requests its executors have not finished; requests are "
            f"stored in {REQUESTS_STREAM} now, and these would be left behind: stop the edges, "
            "let the executors finish them (`asyncgate ops list --status QUEUED` shows "
            "them), then provision again"
        )
    return True


async def _stream(js: JetStreamContext, config: StreamConfig) -> str:
    try:
        found = (await js.stream_info(config.name or "")).config
    except NotFoundError:
        await js.add_stream(config)
        return f"stream {config.name}: created"
    problems = config_problems(config, found)
    if not problems:
        return f"stream {config.name}: as configured"
    # The whole configuration is sent: whatever it does not set (a subject transform someone
    # added, say) is removed.
    await js.update_stream(config)
    return f"stream {config.name}: updated ({'; '.join(problems)})"


async def _bucket(
    js: JetStreamContext, config: KeyValueConfig, persist_mode: PersistMode | None = None
) -> str:
    expected = bucket_stream(config)
    try:
        found = (await js.stream_info(expected.name or "")).config
    except NotFoundError:
        if persist_mode is None:
            await js.create_key_value(config)
        else:
            await js.add_stream(kv_stream_config(config, persist_mode))
        return f"bucket {config.bucket}: created"
    problems = config_problems(expected, found)
    kept = _kept_persist_mode(found, persist_mode)
    if not problems:
        return f"bucket {config.bucket}: as configured{kept}"
    found.max_age = expected.max_age
    found.num_replicas = expected.num_replicas
    found.max_msgs_per_subject = expected.max_msgs_per_subject
    found.allow_direct = expected.allow_direct
    found.subject_transform = found.republish = found.mirror = None
    found.sources = None
    await js.update_stream(found)
    return f"bucket {config.bucket}: updated ({'; '.join(problems)}){kept}"


def _kept_persist_mode(found: StreamConfig, wanted: PersistMode | None) -> str:
    """A note when a bucket's persist mode is not the configured one: NATS cannot change it in
    place (delete the bucket, provision, then ``asyncgate ops replay`` to rebuild the views)."""
    # nats-py hands the server's word back as a plain string.
    have = PersistMode(found.persist_mode or PersistMode.DEFAULT)
    if have == (wanted or PersistMode.DEFAULT):
        return ""
    return f" (persist mode {have.value} kept: NATS cannot change it in place)"
