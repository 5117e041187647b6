"""Reading the newest message of many subjects at once (services/common/direct_gets.py)."""

from nats.aio.client import Client as NatsClient

from services.common.direct_gets import MAX_SUBJECTS_PER_BATCH, DirectReads

STREAM = "READS"


async def _stream_with(nc: NatsClient, values: dict[str, bytes]) -> None:
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["reads.>"], allow_direct=True)
    for subject, value in values.items():
        await js.publish(subject, b"older " + value)
        await js.publish(subject, value)


async def test_many_subjects_read_in_order_with_gaps_and_deleted_keys_as_none(
    nc: NatsClient,
) -> None:
    count = MAX_SUBJECTS_PER_BATCH + 44  # more than one batch
    values = {f"reads.{n}": f"value {n}".encode() for n in range(count) if n % 7}
    await _stream_with(nc, values)
    await nc.jetstream().publish("reads.3", b"")  # a deleted key's marker is empty
    reads = DirectReads(nc)
    try:
        asked = [f"reads.{n}" for n in reversed(range(count + 5))]
        found = await reads.last(STREAM, asked)
        expected = [None if s == "reads.3" else values.get(s) for s in asked]
        assert found == expected
        assert await reads.last(STREAM, ["reads.8"]) == [b"value 8"]
        assert await reads.last(STREAM, ["reads.7"]) == [None]
        assert await reads.last(STREAM, ["reads.7", "reads.14"]) == [None, None]
    finally:
        await reads.close()


async def test_a_batch_cut_short_by_its_byte_limit_is_completed_by_asking_again(
    nc: NatsClient,
) -> None:
    values = {f"reads.{n}": bytes([65 + n]) * 40_000 for n in range(20)}
    await _stream_with(nc, values)
    reads = DirectReads(nc, max_bytes=100_000)  # two or three values per batch
    try:
        asked = list(values)
        assert await reads.last(STREAM, asked) == [values[s] for s in asked]
    finally:
        await reads.close()
