"""Idempotency keys: the same principal submitting twice with one key gets one operation.

A key is claimed with a KV create (compare-and-set on "no such key") in the idempotency bucket
before anything else of the submit happens, so of two edges racing with one key exactly one
queues; the record names the operation and a digest of the document. The other reads the record:
another document is refused (IDEMPOTENCY_KEY_REUSED); the same one gets the winner's operation
once its request is stored.

The winner may fail to queue after claiming (over a limit, NATS away): it releases the claim
(deleting it at the revision it wrote) once it has seen that its request is not stored, so the
client may retry with the same key. Should that fail too, the record names an operation that
may never have been stored; it is taken over (by compare-and-set) once it is older than any
submit can take and its request is still not in the stream, and until then a submit with that
key is told to try again.
"""

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import msgspec.structs
import nats.errors
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.errors import ErrorCode
from contracts.events import OperationRequested
from contracts.lifecycle import evolve
from contracts.names import idempotency_key
from contracts.view import OperationView
from services.common.event_log import EventLog
from services.edge.context import EdgeContext
from services.edge.errors import coded_error, unavailable_without_nats
from services.edge.submit import RIDE_THROUGH_S, submit

HEADER: Final = "Idempotency-Key"
MAX_KEY_CHARS: Final = 255
# A claim whose operation was never stored is taken over after this: longer than a submit can
# take (three steps riding through RIDE_THROUGH_S each, and the client's own time-out).
STALE_CLAIM_S: Final = 4 * RIDE_THROUGH_S + 20
# How long a second submit waits for the first one's request to be stored (or its claim
# released) before it is told to try again.
WAIT_FOR_WINNER_S: Final = RIDE_THROUGH_S
_POLL_S: Final = 0.05


class _Record(msgspec.Struct, frozen=True):
    """What a claimed key holds; ``claimed_at`` in seconds since the epoch."""

    operation_id: str
    digest: str
    claimed_at: float


_decode_record = msgspec.json.Decoder(_Record).decode


def document_digest(document: Mapping[str, Any]) -> str:
    """The SHA-256 of ``document`` as canonical JSON (keys sorted): what "the same request" is."""
    return hashlib.sha256(msgspec.json.encode(document, order="sorted")).hexdigest()


def key_of(context: EdgeContext, argument: str | None) -> str | None:
    """The request's idempotency key: the argument, else the header; None if neither is given.

    An empty or overlong key is refused with BAD_USER_INPUT.
    """
    key = argument if argument is not None else context.client_headers.get(HEADER)
    if key is not None and not 1 <= len(key) <= MAX_KEY_CHARS:
        raise coded_error(
            f"an idempotency key has 1 to {MAX_KEY_CHARS} characters", ErrorCode.BAD_USER_INPUT
        )
    return key


@dataclass(frozen=True)
class Submitted:
    """The operation a submit stands for: ``view`` is its state as the client is told it."""

    operation_id: str
    view: OperationView


async def submit_once(
    context: EdgeContext,
    requested: OperationRequested,
    *,
    key: str | None,
    asked: Mapping[str, Any],
) -> Submitted:
    """Queue ``requested`` (as ``submit``), unless ``key`` already queued an operation for the
    caller: then that one, and nothing new is queued. ``asked`` is what the client asked for;
    its digest tells a repeated request from another one under the same key (hashed only when
    a key is given)."""
    if key is None:
        sequence = await submit(context, requested)
        return Submitted(requested.operation_id, evolve(None, requested, sequence))
    principal = context.principal
    kv_key = idempotency_key(
        principal.tenant, principal.user, hashlib.sha256(key.encode()).hexdigest()
    )
    claims = context.idempotency
    with unavailable_without_nats("queueing operations", connected=context.nats_connected):
        mine = _Record(requested.operation_id, document_digest(asked), 0)
        claimed = await _claim_or_find(context, kv_key, mine)
    if isinstance(claimed, Submitted):
        return claimed
    revision = claimed
    try:
        sequence = await submit(context, requested)
    except BaseException:
        # Free the key for the client's retry only if the request is surely not stored (a lost
        # acknowledgement may hide a stored one): a claim kept by mistake costs a wait, a claim
        # freed by mistake a second operation.
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            if await _stored(context.events, principal.tenant, requested.operation_id) is None:
                await claims.delete(kv_key, last=revision)
        raise
    return Submitted(requested.operation_id, evolve(None, requested, sequence))


async def _claim_or_find(context: EdgeContext, kv_key: str, mine: _Record) -> int | Submitted:
    """The revision of our claim on the key, or the operation its holder queued (once stored).

    Raises IDEMPOTENCY_KEY_REUSED if the holder asked for something else, and
    SERVICE_UNAVAILABLE if the holder neither stores its operation nor lets go in time.
    """
    claims = context.idempotency
    deadline = time.monotonic() + WAIT_FOR_WINNER_S
    while True:
        record = msgspec.json.encode(msgspec.structs.replace(mine, claimed_at=time.time()))
        try:
            return await claims.create(kv_key, record)
        except KeyWrongLastSequenceError:
            pass  # held: by whom, for what?
        held, revision = await _holder(claims, kv_key)
        if held is not None and revision is not None:
            if held.digest != mine.digest:
                raise coded_error(
                    "this idempotency key was used for another request",
                    ErrorCode.IDEMPOTENCY_KEY_REUSED,
                )
            view = await _stored(context.events, context.principal.tenant, held.operation_id)
            if view is not None:
                return Submitted(held.operation_id, view)
            if time.time() - held.claimed_at > STALE_CLAIM_S:
                # Its operation was never stored and never will be: take the key over.
                with contextlib.suppress(KeyWrongLastSequenceError):
                    return await claims.update(kv_key, record, last=revision)
        if time.monotonic() > deadline:
            raise coded_error(
                "an operation with this idempotency key is still being queued; try again",
                ErrorCode.SERVICE_UNAVAILABLE,
                retryAfter=1,
            )
        await asyncio.sleep(_POLL_S)


async def _holder(claims: KeyValue, kv_key: str) -> tuple[_Record | None, int | None]:
    """The key's record and revision; (None, None) if it was released meanwhile."""
    try:
        entry = await claims.get(kv_key)
    except (KeyNotFoundError, KeyDeletedError):
        return None, None
    if entry.value is None:
        return None, None
    return _decode_record(entry.value), entry.revision


async def _stored(events: EventLog, tenant: str, operation_id: str) -> OperationView | None:
    """The operation's state if its request is stored."""
    facts = await events.facts(tenant, operation_id)
    return None if facts.requested is None else facts.view()
