"""Comparing a replay of the stream with the view bucket, without I/O: what ``asyncgate ops
replay --verify`` reports and what ``asyncgate ops replay`` writes."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgspec

from contracts.view import OperationView, decode_view, encode_view

if TYPE_CHECKING:
    from services.projector.replay import Replay

# The bucket as read: key -> (stored bytes, None for a removed key; revision).
StoredViews = dict[str, tuple[bytes | None, int]]


class DifferenceKind(StrEnum):
    """How the bucket's view of a key differs from the replay's."""

    MISSING = "missing"  # the stream holds the operation, the bucket has no view of it
    EXTRA = "extra"  # the bucket holds a view the stream does not yield
    CHANGED = "changed"  # both hold a view, and they differ
    UNREADABLE = "unreadable"  # the bucket holds something that is not a view


class FieldDifference(msgspec.Struct, frozen=True, kw_only=True):
    """One field of a view, as the bucket has it and as the replay has it."""

    field: str
    stored: Any
    replayed: Any


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """One key whose view in the bucket is not what replaying the stream gives.

    ``revision`` is the key's revision as compared (None: never written), for compare-and-set.
    """

    key: str
    kind: DifferenceKind
    revision: int | None = None
    fields: list[FieldDifference] = msgspec.field(default_factory=list)


def field_differences(stored: OperationView, replayed: OperationView) -> list[FieldDifference]:
    """The fields in which two views of one operation differ, in the view's field order."""
    stored_fields = msgspec.to_builtins(stored)
    replayed_fields = msgspec.to_builtins(replayed)
    return [
        FieldDifference(
            field=name, stored=stored_fields.get(name), replayed=replayed_fields.get(name)
        )
        for name in OperationView.__struct_fields__
        if stored_fields.get(name) != replayed_fields.get(name)
    ]


def compare(replay: Replay, stored: StoredViews, *, ignore: set[str]) -> list[Difference]:
    """Every key in which ``stored`` (the bucket) differs from ``replay``, keys in ``ignore``
    left out. A stored view newer than the replay (a projector folded events stored after the
    replay read their stream) is not a difference."""
    differences: list[Difference] = []
    for key, view in replay.views.items():
        if key in ignore:
            continue
        data, revision = stored.get(key, (None, None))
        if data is None:
            differences.append(Difference(key=key, kind=DifferenceKind.MISSING, revision=revision))
            continue
        if data == encode_view(view):
            continue  # the common case, told without decoding
        try:
            found = decode_view(data)
        except msgspec.DecodeError:  # a ValidationError too
            differences.append(
                Difference(key=key, kind=DifferenceKind.UNREADABLE, revision=revision)
            )
            continue
        if _newer(found, replay):
            continue
        changed = field_differences(found, view)
        if changed:
            differences.append(
                Difference(key=key, kind=DifferenceKind.CHANGED, revision=revision, fields=changed)
            )
    for key, (data, revision) in stored.items():
        if data is None or key in replay.views or key in ignore:
            continue
        if _newer_than(data, replay):
            continue
        differences.append(Difference(key=key, kind=DifferenceKind.EXTRA, revision=revision))
    return differences


def _newer(view: OperationView, replay: Replay) -> bool:
    """True if ``view`` holds an event stored after the replay read its stream."""
    return (
        view.last_sequence > replay.last_sequence
        or (view.request_sequence or 0) > replay.requests_through
    )


def _newer_than(data: bytes, replay: Replay) -> bool:
    """True if ``data`` is a view holding an event stored after the replay read its stream."""
    try:
        return _newer(decode_view(data), replay)
    except msgspec.DecodeError:  # a ValidationError too
        return False
