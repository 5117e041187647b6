"""Provisioning: creating, or bringing up to date, everything asyncgate keeps in JetStream.

Run once per deployment and after a change of the settings that shape the streams
(``ASYNCGATE_RESULT_TTL_HOURS``, ``ASYNCGATE_STREAM_EXTRA_HOURS``, ``ASYNCGATE_REPLICAS``), with
credentials allowed to create streams: ``asyncgate provision``. ``asyncgate up`` runs it before
the services. The services themselves only check (``services/common/layout.py``).
"""

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, KeyValueConfig, PersistMode, StreamConfig
from nats.js.errors import NotFoundError

from contracts.names import STREAM
from services.common.jetstream import close_connection, connect
from services.common.layout import (
    CHECK_RIDE_THROUGH_S,
    bucket_stream,
    check_provisioned,
    config_problems,
    dead_letter_stream_config,
    idempotency_bucket_config,
    kv_stream_config,
    layout_for,
    limits_bucket_config,
    listing_bucket_config,
    listing_counter_stream_config,
    results_bucket_config,
    stream_config,
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


def service_consumers(settings: Settings) -> list[ConsumerConfig]:
    """The durable consumers of the executors, the projectors and the callbacks service (made
    here too, so that operations ending before it first starts are still called back)."""
    from services.callbacks.app import consumer_config as callbacks_consumer  # noqa: PLC0415 (FastStream only here)
    from services.executor.app import consumer_config as executor_consumer  # noqa: PLC0415
    from services.projector.app import consumer_config as projector_consumer  # noqa: PLC0415

    return [
        executor_consumer(settings),
        projector_consumer(settings),
        callbacks_consumer(settings),
    ]


async def provision(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create or update the streams, buckets and durable consumers; a line per thing done."""

    async def everything() -> list[str]:
        report = [
            await _stream(js, stream_config(settings)),
            await _stream(js, dead_letter_stream_config(settings)),
            await _bucket(js, view_bucket_config(settings), view_persist_mode(settings)),
            await _bucket(js, limits_bucket_config(settings)),
            await _bucket(js, listing_bucket_config(settings)),
            await _stream(js, listing_counter_stream_config(settings)),
            await _bucket(js, idempotency_bucket_config(settings)),
            await _stream(js, results_bucket_config(settings)),
        ]
        for consumer in service_consumers(settings):
            await js.add_consumer(STREAM, consumer)
            report.append(f"consumer {consumer.durable_name}: ready")
        return report

    report = await riding_through(everything, what="provisioning", budget_s=CHECK_RIDE_THROUGH_S)
    await check_provisioned(
        js,
        layout_for(settings, limits=True, listing=True, idempotency=True, results=True),
    )
    return report


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
