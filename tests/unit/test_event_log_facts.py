"""Reading an operation's facts from the newest message of each of its subjects."""

from datetime import UTC, datetime, timedelta

from contracts.events import (
    Correlation,
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    encode_event,
    event_type,
)
from contracts.lifecycle import fold
from contracts.names import event_subject
from contracts.view import TaskStatus
from services.common.event_log import facts_from

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENVELOPE: Correlation = {"operation_id": "op", "tenant": "t", "principal": "u", "trace_id": "tr"}


def stored(sequence: int, event: OperationEvent) -> tuple[int, str, bytes]:
    subject = event_subject(event.tenant, event.operation_id, event_type(event))
    return sequence, subject, encode_event(event)


def test_facts_fold_to_the_view_the_projector_builds_from_every_event() -> None:
    requested = OperationRequested(**ENVELOPE, query="{ a }", occurred_at=T0)
    first = OperationStarted(**ENVELOPE, attempt=1, worker="a", occurred_at=T0 + timedelta(1))
    second = OperationStarted(**ENVELOPE, attempt=2, worker="b", occurred_at=T0 + timedelta(2))
    done = OperationCompleted(**ENVELOPE, response={"data": {}}, occurred_at=T0 + timedelta(3))
    every_event: list[tuple[int, OperationEvent]] = [
        (1, requested),
        (2, first),
        (3, second),
        (4, done),
    ]

    # What a batched "newest of each subject" read returns, plus the first start read apart.
    facts = facts_from([stored(3, second), stored(4, done)], [stored(1, requested)])
    facts = type(facts)(
        requested=facts.requested,
        started=facts.started,
        first_started=(2, first),
        terminal=facts.terminal,
        last_sequence=facts.last_sequence,
    )

    assert facts.view() == fold(every_event)["op"]
    assert facts.last_sequence == 4


def test_a_request_read_from_its_own_stream_does_not_count_as_the_history_position() -> None:
    requested = OperationRequested(**ENVELOPE, query="{ a }", occurred_at=T0)
    started = OperationStarted(**ENVELOPE, attempt=1, worker="a", occurred_at=T0 + timedelta(1))

    # The two streams number their messages apart: the request is 9 of its stream.
    facts = facts_from([stored(2, started)], [stored(9, requested)])

    assert facts.requested == (9, requested)
    assert facts.last_sequence == 2  # what a guarded append to the history must name
    assert facts.events() == [(9, requested), (2, started)]
    view = facts.view()
    assert view is not None
    assert (view.request_sequence, view.last_sequence) == (9, 2)
    assert facts_from([], [stored(9, requested)]).last_sequence == 0


def test_a_request_stored_in_the_history_before_the_split_has_no_place_in_the_requests() -> None:
    requested = OperationRequested(**ENVELOPE, query="{ a }", occurred_at=T0)
    done = OperationCompleted(**ENVELOPE, response={"data": {}}, occurred_at=T0 + timedelta(1))

    # A store from before requests were kept apart: the request is 5 of the history stream.
    facts = facts_from([stored(5, requested), stored(6, done)])

    assert facts.requested == (0, requested)
    assert facts.last_sequence == 6
    view = facts.view()
    assert view is not None
    # As the views written then have it: never compared with the requests stream's numbers.
    assert (view.status, view.request_sequence, view.last_sequence) == (
        TaskStatus.SUCCESS,
        None,
        6,
    )
    # A request in the requests stream is the one, wherever else one is found.
    assert facts_from([stored(5, requested)], [stored(2, requested)]).requested == (2, requested)


def test_the_first_usable_request_counts_whatever_is_stored_on_its_subject_after_it() -> None:
    requested = OperationRequested(**ENVELOPE, query="{ a }", occurred_at=T0)
    subject = event_subject("t", "op", "requested")
    forged = OperationRequested(**(ENVELOPE | {"principal": "bad key*"}), query="{ b }")

    for after in ((6, subject, b"garbage"), (6, subject, encode_event(forged))):
        assert facts_from([], [stored(5, requested), after]).requested == (5, requested)
        assert facts_from([], [after, stored(5, requested)]).requested == (5, requested)
    assert facts_from([], [(4, subject, b"garbage"), stored(5, requested)]).requested == (
        5,
        requested,
    )


def test_the_lowest_sequence_terminal_event_decides() -> None:
    failed = OperationFailed(**ENVELOPE, code="X", error="broke")
    completed = OperationCompleted(**ENVELOPE, response={"data": {}})

    facts = facts_from([stored(5, completed), stored(3, failed)])

    assert facts.terminal == (3, failed)


def test_unreadable_or_misplaced_messages_only_move_the_last_sequence() -> None:
    requested = OperationRequested(**ENVELOPE, query="{ a }")
    elsewhere = OperationCompleted(**(ENVELOPE | {"operation_id": "other"}), response={})

    facts = facts_from(
        [
            (7, "ops.events.t.op.completed", b"\x00garbage"),
            (8, "ops.events.t.op.failed", encode_event(elsewhere)),
        ],
        [stored(1, requested)],
    )

    assert facts.terminal is None
    assert facts.requested == (1, requested)
    assert facts.last_sequence == 8


def test_no_messages_no_facts() -> None:
    facts = facts_from([])

    assert facts.view() is None
    assert facts.last_sequence == 0


def test_facts_carry_the_cancel_request_and_fold_it_as_the_projector_does() -> None:
    requested = OperationRequested(**ENVELOPE, query="{ a }", occurred_at=T0)
    started = OperationStarted(**ENVELOPE, attempt=1, worker="a", occurred_at=T0 + timedelta(1))
    asked = OperationCancelRequested(**ENVELOPE, occurred_at=T0 + timedelta(2))
    every_event: list[tuple[int, OperationEvent]] = [(1, requested), (2, started), (5, asked)]

    facts = facts_from(
        [stored(sequence, event) for sequence, event in every_event[1:]], [stored(1, requested)]
    )

    assert facts.cancel_requested == (5, asked)
    assert facts.terminal is None
    assert facts.last_sequence == 5
    assert facts.view() == fold(every_event)["op"]
