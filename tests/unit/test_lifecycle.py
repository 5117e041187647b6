"""The fold from events to a view: order-free, idempotent, never backwards."""

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from contracts.events import (
    AttemptStart,
    Correlation,
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationProgressed,
    OperationRequested,
    OperationStarted,
    ProgressReport,
    cancelled,
)
from contracts.lifecycle import evolve, fold, folded_at
from contracts.names import REQUESTS_STREAM, STREAM
from contracts.view import OperationView, TaskStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENVELOPE: Correlation = {"operation_id": "op", "tenant": "t", "principal": "u", "trace_id": "tr"}


def at(seconds: int) -> datetime:
    """A moment ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def progressed(attempt: int, report: int, *, done: int, total: int = 10) -> OperationProgressed:
    """Report number ``report`` of ``attempt``: ``done`` of ``total``."""
    return OperationProgressed(
        **ENVELOPE, attempt=attempt, report=report, done=done, total=total, occurred_at=at(2)
    )


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, OperationEvent]]:
    """A possible stored history of one operation, with stream sequences, in stream order."""
    events: list[OperationEvent] = [
        OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0), listing_ordinal=7)
    ]
    attempts = draw(st.integers(0, 3))
    for attempt in range(1, attempts + 1):
        events.append(
            OperationStarted(
                **ENVELOPE, attempt=attempt, worker=f"w{attempt}", occurred_at=at(attempt)
            )
        )
        for report in range(1, draw(st.integers(0, 3)) + 1):
            events.append(progressed(attempt, report, done=report))
    if draw(st.booleans()):
        # The owner asked to cancel it (before or after it ended: both can be stored).
        events.insert(
            draw(st.integers(1, len(events))),
            OperationCancelRequested(**ENVELOPE, occurred_at=at(5)),
        )
    for index in range(draw(st.integers(0, 2))):
        # An ending may carry its attempt's last report (any attempt's: two may both end).
        last_report = draw(
            st.none()
            | st.builds(
                ProgressReport,
                attempt=st.integers(1, max(1, attempts)),
                report=st.integers(1, 5),
                done=st.integers(0, 10),
                total=st.just(10),
            )
        )
        # An ending may carry its attempt's start (one that stored none: the next attempt).
        start = draw(
            st.none()
            | st.builds(
                AttemptStart,
                attempt=st.just(attempts + 1),
                worker=st.just("quick"),
                delivery=st.integers(1, 3),
                started_at=st.sampled_from([at(4), at(8)]),
            )
        )
        if draw(st.booleans()):
            events.append(
                OperationCompleted(
                    **ENVELOPE,
                    response={"data": {"i": index}},
                    occurred_at=at(9),
                    progress=last_report,
                    start=start,
                )
            )
        else:
            events.append(
                OperationFailed(
                    **ENVELOPE,
                    code="C",
                    error=f"e{index}",
                    occurred_at=at(9),
                    progress=last_report,
                    start=start,
                )
            )
    return list(enumerate(events, start=1))


@given(histories(), st.randoms(use_true_random=False), st.integers(0, 5))
def test_any_order_with_any_duplicates_folds_to_the_same_view(
    history: list[tuple[int, OperationEvent]], rng: random.Random, duplicates: int
) -> None:
    delivered = history + [rng.choice(history) for _ in range(duplicates)]
    rng.shuffle(delivered)

    assert fold(delivered) == fold(history)


@given(histories())
def test_the_status_never_goes_backwards(history: list[tuple[int, OperationEvent]]) -> None:
    rank = {TaskStatus.QUEUED: 0, TaskStatus.RUNNING: 1, TaskStatus.SUCCESS: 2, TaskStatus.ERROR: 2}
    view: OperationView | None = None
    for sequence, event in history:
        before = view
        view = evolve(view, event, sequence)
        if before is not None:
            assert rank[view.status] >= rank[before.status]
            if before.status.is_terminal:
                assert view.status is before.status


def test_the_view_keeps_the_requests_listing_ordinal_whatever_came_first() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0, listing_ordinal=42)
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))
    older = OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0)

    assert evolve(evolve(None, started, 2), requested, 1).listing_ordinal == 42
    assert evolve(evolve(None, requested, 1), started, 2).listing_ordinal == 42
    assert evolve(None, older, 1).listing_ordinal is None


def test_a_queued_operation_has_no_data_yet() -> None:
    view = evolve(None, OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0), 7)

    assert view.status is TaskStatus.QUEUED
    assert view.created_at == T0
    assert view.response is None
    # The request is in the requests stream: its place is kept apart from the history's.
    assert (view.request_sequence, view.last_sequence) == (7, 0)


def test_the_history_position_moves_only_with_the_history_whatever_the_request_sequence() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0)
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))

    # The request stored at 900 of its stream, the start at 3 of the history stream.
    for view in (
        fold([(900, requested), (3, started)])["op"],
        fold([(3, started), (900, requested)])["op"],
    ):
        assert (view.status, view.last_sequence, view.request_sequence) == (
            TaskStatus.RUNNING,
            3,
            900,
        )


def test_only_a_request_stored_in_the_history_stream_is_folded_at_zero() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0)
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))

    assert folded_at(REQUESTS_STREAM, requested, 7) == 7
    assert folded_at(STREAM, requested, 7) == 0  # stored before requests had a stream
    assert folded_at(STREAM, started, 7) == 7


def test_a_request_folded_at_zero_has_no_request_sequence() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0)
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))

    # 0: stored in the history stream before requests had a stream of their own.
    for view in (
        fold([(0, requested), (3, started)])["op"],
        fold([(3, started), (0, requested)])["op"],
    ):
        assert (view.created_at, view.request_sequence, view.last_sequence) == (T0, None, 3)


def test_the_earliest_request_gives_the_request_sequence() -> None:
    first = OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0)
    retried = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(1))

    assert fold([(5, retried), (8, first)])["op"].request_sequence == 8
    assert fold([(8, first), (5, retried)])["op"].request_sequence == 8


def test_the_first_stored_terminal_event_decides_the_outcome() -> None:
    completed = OperationCompleted(**ENVELOPE, response={"data": {"a": 1}}, occurred_at=at(5))
    failed = OperationFailed(**ENVELOPE, code="TIMEOUT", error="late", occurred_at=at(6))

    view = fold([(4, failed), (3, completed)])["op"]

    assert view.status is TaskStatus.SUCCESS
    assert view.response == {"data": {"a": 1}}
    assert view.error is None
    assert view.terminal_sequence == 3
    assert view.last_sequence == 4


def test_started_after_finished_keeps_the_outcome_and_records_the_attempt() -> None:
    view = fold(
        [
            (1, OperationRequested(**ENVELOPE, query="{a}", occurred_at=T0)),
            (3, OperationFailed(**ENVELOPE, code="X", error="no", occurred_at=at(4))),
            (2, OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))),
        ]
    )["op"]

    assert view.status is TaskStatus.ERROR
    assert view.attempts == 1
    assert view.started_at == at(1)


def test_a_cancel_request_changes_no_status_until_the_cancelled_ending() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))
    asked = OperationCancelRequested(**ENVELOPE, occurred_at=at(2))

    queued = fold([(1, requested), (2, asked)])["op"]
    running = fold([(1, requested), (2, started), (3, asked)])["op"]
    ended = fold([(1, requested), (2, started), (3, asked), (4, cancelled(requested))])["op"]

    assert (queued.status, queued.last_sequence, queued.attempts) == (TaskStatus.QUEUED, 2, 0)
    assert (running.status, running.last_sequence) == (TaskStatus.RUNNING, 3)
    assert (ended.status, ended.code, ended.response) == (TaskStatus.ERROR, "CANCELLED", None)
    assert ended.terminal_sequence == 4


def test_a_cancel_request_after_the_ending_leaves_the_outcome() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    completed = OperationCompleted(**ENVELOPE, response={"data": {"a": 1}}, occurred_at=at(3))
    done = fold([(1, requested), (2, completed)])["op"]

    after = evolve(done, OperationCancelRequested(**ENVELOPE, occurred_at=at(4)), 3)

    assert after == replace(done, last_sequence=3)


def test_progress_keeps_the_newest_report_whatever_order_they_arrive_in() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))
    first, second, third = (progressed(1, n, done=n * 3) for n in (1, 2, 3))

    in_order = fold([(1, requested), (2, started), (3, first), (4, second), (5, third)])["op"]
    late_old = fold([(1, requested), (2, started), (5, third), (3, first), (4, second)])["op"]

    assert in_order.progress is not None
    assert (in_order.progress.done, in_order.progress.total) == (9, 10)
    assert late_old.progress == in_order.progress
    assert late_old.last_sequence == 5
    assert in_order.status is TaskStatus.RUNNING


def test_a_later_attempt_reports_afresh_and_an_earlier_ones_reports_do_not_count() -> None:
    view = fold(
        [
            (3, progressed(1, 7, done=7)),
            (5, progressed(2, 1, done=1)),
            (4, progressed(1, 8, done=8)),
        ]
    )["op"]

    assert view.progress is not None
    assert (view.progress.attempt, view.progress.done) == (2, 1)


def test_progress_stored_after_the_ending_is_ignored_and_the_ending_keeps_the_last_report() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    completed = OperationCompleted(**ENVELOPE, response={"data": {"a": 1}}, occurred_at=at(3))
    ended = fold([(1, requested), (2, progressed(1, 4, done=10)), (3, completed)])["op"]

    after = evolve(ended, progressed(1, 5, done=2), 4)

    assert after == replace(ended, last_sequence=4)
    assert ended.progress is not None
    assert (ended.status, ended.progress.done) == (TaskStatus.SUCCESS, 10)


def test_the_last_report_an_ending_carries_is_the_views_progress_in_any_order() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    started = OperationStarted(**ENVELOPE, attempt=1, worker="w", occurred_at=at(1))
    completed = OperationCompleted(
        **ENVELOPE,
        response={"data": {"a": 1}},
        occurred_at=at(3),
        progress=ProgressReport(attempt=1, report=6, done=10, total=10, message="done"),
    )
    history: list[tuple[int, OperationEvent]] = [
        (1, requested),
        (2, started),
        (3, progressed(1, 5, done=8)),
        (4, completed),
    ]

    view = fold(history)["op"]

    assert view.progress is not None
    assert (view.progress.done, view.progress.message, view.progress.report) == (10, "done", 6)
    assert fold(list(reversed(history)))["op"] == view


def test_an_ending_that_carries_its_start_counts_the_attempt_in_any_order() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    completed = OperationCompleted(
        **ENVELOPE,
        response={"data": {"a": 1}},
        occurred_at=at(3),
        start=AttemptStart(attempt=1, worker="w", delivery=1, started_at=at(2)),
    )
    history: list[tuple[int, OperationEvent]] = [(1, requested), (2, completed)]

    view = fold(history)["op"]

    assert (view.status, view.attempts, view.started_at) == (TaskStatus.SUCCESS, 1, at(2))
    assert fold(list(reversed(history)))["op"] == view


def test_a_losing_ending_still_counts_the_start_it_carries() -> None:
    requested = OperationRequested(**ENVELOPE, query="{a}", occurred_at=at(0))
    winner = OperationCompleted(**ENVELOPE, response={"data": {"a": 1}}, occurred_at=at(3))
    loser = OperationFailed(
        **ENVELOPE,
        code="C",
        error="late",
        occurred_at=at(4),
        start=AttemptStart(attempt=2, worker="w2", delivery=2, started_at=at(1)),
    )

    view = fold([(1, requested), (2, winner), (3, loser)])["op"]

    assert (view.status, view.attempts, view.started_at) == (TaskStatus.SUCCESS, 2, at(1))
