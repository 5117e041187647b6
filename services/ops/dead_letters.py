"""The operator's side of dead letters (format in ``contracts/dead_letters.py``): list and show
them, requeue one (its original, read back from its stream, stored again on its own subject, so
the services take it up as new), or purge them."""

from datetime import datetime
from typing import Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from contracts.dead_letters import (
    DELIVERIES_HEADER,
    EXCERPT_BYTES,
    REASON_HEADER,
    SEQUENCE_HEADER,
    SERVICE_HEADER,
    SIZE_HEADER,
    STREAM_HEADER,
    SUBJECT_HEADER,
)
from contracts.names import (
    DEAD_LETTER_ROOT,
    DEAD_LETTER_STREAM,
    EVENT_STREAMS,
    parse_event_subject,
)
from services.common.event_log import REQUEST_TIMEOUT_S
from services.common.stream_reads import read_stream
from services.ops.connection import EXIT_FOUND, OpsError

# Headers JetStream sets or acts on: never copied onto a requeued message (a dedup id or an
# expected-sequence guard of the original would make the store refuse or drop the copy).
_JETSTREAM_HEADER_PREFIX: Final = "Nats-"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message a service set aside, and where its original is."""

    sequence: int
    stored_at: datetime | None
    service: str
    reason: str
    original_stream: str
    original_sequence: int | None
    original_subject: str
    original_size: int | None
    deliveries: int | None
    excerpt: str


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def dead_letter_from(
    sequence: int, stored_at: datetime | None, headers: dict[str, str], body: bytes
) -> DeadLetter:
    """A dead letter from its stored headers and body (missing headers read as empty)."""
    return DeadLetter(
        sequence=sequence,
        stored_at=stored_at,
        service=headers.get(SERVICE_HEADER, ""),
        reason=headers.get(REASON_HEADER, ""),
        original_stream=headers.get(STREAM_HEADER, ""),
        original_sequence=_number(headers.get(SEQUENCE_HEADER)),
        original_subject=headers.get(SUBJECT_HEADER, ""),
        original_size=_number(headers.get(SIZE_HEADER)),
        deliveries=_number(headers.get(DELIVERIES_HEADER)),
        excerpt=body.decode(errors="replace"),
    )


async def list_dead_letters(js: JetStreamContext, service: str | None = None) -> list[DeadLetter]:
    """Every dead letter (of one service, if named), oldest first."""
    letters: list[DeadLetter] = []

    def keep(msg: Msg) -> None:
        metadata = msg.metadata
        letters.append(
            dead_letter_from(
                metadata.sequence.stream, metadata.timestamp, dict(msg.headers or {}), msg.data
            )
        )

    subjects = f"{DEAD_LETTER_ROOT}.{service}" if service else f"{DEAD_LETTER_ROOT}.>"
    await read_stream(js, DEAD_LETTER_STREAM, subjects, keep)
    return letters


async def _stored(js: JetStreamContext, stream: str, sequence: int) -> RawStreamMsg | None:
    try:
        return await js.get_msg(stream, sequence)
    except NotFoundError:
        return None


async def show_dead_letter(js: JetStreamContext, sequence: int) -> tuple[DeadLetter, bytes]:
    """One dead letter and its raw body (exit 1 if there is none at ``sequence``)."""
    stored = await _stored(js, DEAD_LETTER_STREAM, sequence)
    if stored is None:
        raise OpsError(f"no dead letter {sequence}", EXIT_FOUND)
    body = stored.data or b""
    return dead_letter_from(sequence, stored.time, dict(stored.headers or {}), body), body


async def requeue(js: JetStreamContext, sequence: int) -> int:
    """Store the original of dead letter ``sequence`` again on its subject, then remove the dead
    letter; return the new message's sequence.

    Only events go back, and only onto the event subject they were stored on. The original is
    read back from its stream; once that has dropped it, the dead letter's body serves if it
    holds the whole original (at most EXCERPT_BYTES), and nothing is requeued otherwise.
    """
    letter, body = await show_dead_letter(js, sequence)
    subject = letter.original_subject
    stream = letter.original_stream
    if stream not in EVENT_STREAMS or parse_event_subject(subject) is None:
        raise OpsError(
            f"dead letter {sequence} refers to {letter.original_stream or '?'} {subject!r}, "
            "not to an event; only events are requeued"
        )
    original = None
    if letter.original_sequence is not None:
        original = await _stored(js, stream, letter.original_sequence)
    if original is not None and original.subject == subject:
        payload = original.data or b""
        headers = {
            name: value
            for name, value in (original.headers or {}).items()
            if not name.startswith(_JETSTREAM_HEADER_PREFIX)
        }
    elif letter.original_size is not None and letter.original_size <= EXCERPT_BYTES:
        payload, headers = body, {}
    else:
        raise OpsError(
            f"dead letter {sequence}: the original (message {letter.original_sequence}) is no "
            f"longer in {stream}, and the dead letter holds only its first {EXCERPT_BYTES} bytes"
        )
    # The same requeue tried twice (a time-out, say) is stored once.
    headers["Nats-Msg-Id"] = f"requeue.{DEAD_LETTER_STREAM}.{sequence}"
    ack = await js.publish(subject, payload, timeout=REQUEST_TIMEOUT_S, headers=headers)
    await js.delete_msg(DEAD_LETTER_STREAM, sequence)
    return ack.seq


async def purge(js: JetStreamContext, sequence: int | None) -> int:
    """Remove dead letter ``sequence``, or every one (None); return how many were removed."""
    if sequence is None:
        count = (await js.stream_info(DEAD_LETTER_STREAM)).state.messages
        await js.purge_stream(DEAD_LETTER_STREAM)
        return count
    await show_dead_letter(js, sequence)
    await js.delete_msg(DEAD_LETTER_STREAM, sequence)
    return 1
