"""Storing a message in a stream or a bucket and reading JetStream's acknowledgement, for the
writes every operation makes (its request, its ending, its view).

nats-py's ``js.publish`` parses each acknowledgement twice (``json.loads``, then a dataclass
that filters its fields) on top of its request's own costs; here the reply comes through the
connection's ReplyInbox and msgspec decodes it. Failures are nats-py's own exceptions, so
callers handle both paths alike: an API error as ``APIError.from_error`` makes it, no stream
listening as NoStreamResponseError, a wrong last sequence on a key as KeyWrongLastSequenceError.
"""

from typing import Any, Final

import msgspec
from nats.js.api import Header
from nats.js.errors import APIError, KeyWrongLastSequenceError, NoStreamResponseError

from services.common.reply_inbox import ReplyInbox

# What the server answers when nothing listens on the subject (no stream takes it).
NO_RESPONDERS: Final = "503"
# JetStream's codes for "the subject's last sequence is not the expected one".
WRONG_LAST_SEQUENCE_CODES: Final = (10071, 10164)


class StoredAck(msgspec.Struct):
    """JetStream's acknowledgement of a stored message, or its error."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(StoredAck).decode


async def store(
    inbox: ReplyInbox,
    subject: str,
    payload: bytes,
    *,
    headers: dict[str, str] | None,
    within_s: float,
) -> StoredAck:
    """Publish ``payload`` on ``subject`` and wait until a stream has stored it."""
    reply = await inbox.request(subject, payload, headers=headers, within_s=within_s)
    if reply.headers and reply.headers.get(Header.STATUS) == NO_RESPONDERS:
        raise NoStreamResponseError
    try:
        ack = _decode_ack(reply.data)
    except msgspec.DecodeError:
        ack = StoredAck()
    if ack.error is not None:
        raise APIError.from_error(ack.error)
    if not ack.stream or ack.seq <= 0:
        # Never taken for a store: nats-py refuses such an answer too (PubAck needs both).
        raise APIError(description=f"not an acknowledgement: {reply.data[:200]!r}")
    return ack


async def store_value(
    inbox: ReplyInbox,
    bucket: str,
    key: str,
    value: bytes,
    *,
    last: int,
    within_s: float,
) -> int:
    """Write ``key`` in ``bucket`` if its last revision is ``last`` (0: it has none); its new
    revision. KeyWrongLastSequenceError otherwise, as nats-py's ``KeyValue.update`` raises."""
    try:
        ack = await store(
            inbox,
            f"$KV.{bucket}.{key}",
            value,
            headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)},
            within_s=within_s,
        )
    except APIError as error:
        if error.err_code in WRONG_LAST_SEQUENCE_CODES:
            raise KeyWrongLastSequenceError(description=error.description) from None
        raise
    return ack.seq
