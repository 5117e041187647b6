"""Comparing a replay with the view bucket: what ``ops replay --verify`` reports and
``ops replay`` writes, decided without NATS."""

import pytest

from contracts.view import OperationView, TaskStatus, encode_view
from services.projector.compare import DifferenceKind, StoredViews, compare
from services.projector.replay import EXPIRY_MARGIN_S, Replay

DONE = OperationView(
    operation_id="op-1",
    tenant="t",
    principal="u",
    status=TaskStatus.SUCCESS,
    attempts=1,
    last_sequence=3,
    terminal_sequence=3,
)
KEY = "t.u.op-1"


def replay_of(*views: OperationView, last_sequence: int = 3) -> Replay:
    """A replay that yielded ``views``, having read up to ``last_sequence``."""
    keyed = {f"{view.tenant}.{view.principal}.{view.operation_id}": view for view in views}
    return Replay(views=keyed, last_sequence=last_sequence, events=last_sequence)


def stored(*entries: tuple[str, bytes | None, int]) -> StoredViews:
    """The bucket as read: (key, value, revision) each."""
    return {key: (value, revision) for key, value, revision in entries}


def test_an_equal_bucket_has_no_difference() -> None:
    assert compare(replay_of(DONE), stored((KEY, encode_view(DONE), 7)), ignore=set()) == []


@pytest.mark.parametrize(
    ("bucket", "kind", "revision"),
    [
        (stored(), DifferenceKind.MISSING, None),
        (stored((KEY, None, 9)), DifferenceKind.MISSING, 9),  # deleted: its marker's revision
        (stored((KEY, b"{not a view", 4)), DifferenceKind.UNREADABLE, 4),
    ],
)
def test_a_view_the_bucket_lacks_or_cannot_read_is_a_difference(
    bucket: StoredViews, kind: DifferenceKind, revision: int | None
) -> None:
    [difference] = compare(replay_of(DONE), bucket, ignore=set())

    assert (difference.key, difference.kind, difference.revision) == (KEY, kind, revision)


def test_a_changed_view_names_each_field_that_differs() -> None:
    altered = OperationView(
        operation_id="op-1",
        tenant="t",
        principal="u",
        status=TaskStatus.ERROR,
        code="BY_HAND",
        attempts=1,
        last_sequence=3,
        terminal_sequence=3,
    )

    [difference] = compare(replay_of(DONE), stored((KEY, encode_view(altered), 5)), ignore=set())

    assert difference.kind == DifferenceKind.CHANGED
    assert difference.revision == 5
    assert [(f.field, f.stored, f.replayed) for f in difference.fields] == [
        ("status", "ERROR", "SUCCESS"),
        ("code", "BY_HAND", None),
    ]


def test_a_view_the_stream_does_not_yield_is_extra_unless_newer_than_the_replay() -> None:
    stray = OperationView(operation_id="op-2", tenant="t", principal="u", last_sequence=2)
    newer = OperationView(operation_id="op-3", tenant="t", principal="u", last_sequence=4)
    bucket = stored(
        (KEY, encode_view(DONE), 1),
        ("t.u.op-2", encode_view(stray), 2),
        ("t.u.op-3", encode_view(newer), 3),
        ("t.u.op-4", None, 4),  # removed already
    )

    [difference] = compare(replay_of(DONE), bucket, ignore=set())

    assert (difference.key, difference.kind) == ("t.u.op-2", DifferenceKind.EXTRA)


def test_a_stored_view_a_projector_moved_past_the_replay_is_no_difference() -> None:
    ahead = OperationView(operation_id="op-1", tenant="t", principal="u", last_sequence=5)

    assert compare(replay_of(DONE), stored((KEY, encode_view(ahead), 8)), ignore=set()) == []


def test_ignored_keys_are_not_compared_either_way() -> None:
    stray = OperationView(operation_id="op-2", tenant="t", principal="u", last_sequence=2)
    bucket = stored(("t.u.op-2", encode_view(stray), 2))

    assert compare(replay_of(DONE), bucket, ignore={KEY, "t.u.op-2"}) == []


def test_views_whose_newest_event_is_older_than_the_ttl_count_as_expired() -> None:
    replay = replay_of(DONE)
    replay.newest = {KEY: 1_000.0, "t.u.op-2": 5_000.0}
    ttl = 3_000.0

    assert replay.expired(ttl, now=1_000.0 + ttl + EXPIRY_MARGIN_S) == {KEY}
    assert replay.expired(ttl, now=1_000.0 + ttl - EXPIRY_MARGIN_S - 1) == set()
    assert replay.expired(0.0, now=1e12) == set(), "a bucket without a TTL keeps everything"
