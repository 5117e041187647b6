"""The executor against a real nats-server: sharing work, ending every operation as an event."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from nats.js import JetStreamContext

from contracts.errors import ErrorCode
from contracts.events import (
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    TerminalEvent,
    correlation_of,
    encode_event,
)
from examples.ledger.schema import schema as ledger_schema
from services.actions.config import Retry
from services.common.event_log import EventLog
from services.common.results import ResultStore
from services.common.settings import Settings
from services.common.target import InProcessTarget
from services.executor.app import create_app as create_executor
from services.executor.handlers import (
    RetryScheduledError,
    SupersededDeliveryError,
    handle_requested,
)
from services.executor.outcome import ResultLimits
from services.executor.retries import NO_RETRY
from services.executor.runner import OperationRunner
from tests.stack import dead_letters, eventually, running, stored_events

pytestmark = pytest.mark.nats

E = TypeVar("E", bound=OperationEvent)


def request(operation_id: str, query: str) -> OperationRequested:
    """A request as the edge would publish it."""
    return OperationRequested(
        operation_id=operation_id, tenant="t1", principal="u1", trace_id="trace", query=query
    )


async def submit(log: EventLog, *requests: OperationRequested) -> None:
    """Publish requests the way the edge does (deduplicated by operation id)."""
    for item in requests:
        await log.append(item, msg_id=item.operation_id)


async def terminal_events(js: JetStreamContext, count: int) -> list[OperationEvent]:
    """Wait until ``count`` operations have ended; return every stored event."""

    async def ended() -> list[OperationEvent] | None:
        events = [event for _, event in await stored_events(js)]
        done = [e for e in events if isinstance(e, OperationCompleted | OperationFailed)]
        return events if len(done) >= count else None

    return await eventually(ended, what=f"{count} operations ending")


def of_type(events: list[OperationEvent], kind: type[E]) -> list[E]:
    """The events of one type."""
    return [event for event in events if isinstance(event, kind)]


async def test_two_executors_share_the_work_and_run_each_operation_once(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    settings = settings.replace(executor_concurrency=4)
    requests = [request(f"op-{n}", "{ slowReport(seconds: 0.05) }") for n in range(40)]
    async with (
        running(create_executor(settings, worker="executor-a")),
        running(create_executor(settings, worker="executor-b")),
    ):
        await submit(event_log, *requests)
        events = await terminal_events(js, len(requests))

    started = of_type(events, OperationStarted)
    completed = of_type(events, OperationCompleted)
    assert Counter(e.operation_id for e in started) == Counter(r.operation_id for r in requests)
    assert Counter(e.operation_id for e in completed) == Counter(r.operation_id for r in requests)
    by_worker = Counter(e.worker for e in started)
    assert set(by_worker) == {"executor-a", "executor-b"}, by_worker
    assert all(
        e.response == {"data": {"slowReport": "report ready after 0.05 s"}} for e in completed
    )


async def test_many_slow_operations_run_at_once_in_one_process(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    settings = settings.replace(executor_concurrency=20)
    requests = [request(f"slow-{n}", "{ slowReport(seconds: 1.5) }") for n in range(20)]
    async with running(create_executor(settings)):
        await submit(event_log, *requests)

        async def all_started() -> bool | None:
            events = [event for _, event in await stored_events(js)]
            started = of_type(events, OperationStarted)
            ended = of_type(events, OperationCompleted)
            # All twenty are running before the first one could have finished.
            return True if len(started) == 20 and not ended else None

        await eventually(all_started, timeout_s=1.4, what="twenty operations running at once")
        await terminal_events(js, len(requests))


async def test_an_operation_over_its_time_limit_fails_with_timeout(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    settings = settings.replace(operation_timeout_s=0.2)
    async with running(create_executor(settings)):
        await submit(event_log, request("too-slow", "{ slowReport(seconds: 30) }"))
        events = await terminal_events(js, 1)

    [failed] = of_type(events, OperationFailed)
    assert failed.code == "TIMEOUT"
    assert "0.2 s" in failed.error


async def test_a_failing_operation_is_recorded_once_and_not_redelivered(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    async with running(create_executor(settings)):
        await submit(event_log, request("broken", "{ useCompany(no: -1) { no } }"))
        events = await terminal_events(js, 1)
        await asyncio.sleep(0.5)
        consumer = await js.consumer_info("ASYNCGATE_REQUESTS", "asyncgate-executor")

    [failed] = of_type(events, OperationFailed)
    assert failed.code == "NOT_FOUND"
    assert failed.response is not None
    assert failed.response["data"] is None
    assert consumer.num_ack_pending == 0
    assert consumer.num_redelivered == 0
    # It failed at once: its start rides on its ending, not stored as an event of its own.
    assert of_type(events, OperationStarted) == []
    assert failed.start is not None
    assert (failed.start.attempt, failed.start.delivery) == (1, 1)


async def test_stopping_mid_operation_hands_it_back_to_another_executor(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    settings = settings.replace(shutdown_grace_s=0.3)
    handed_back = request("handed-back", "{ slowReport(seconds: 2) }")
    async with running(create_executor(settings, worker="leaving")):
        await submit(event_log, handed_back)

        async def started() -> bool | None:
            events = [event for _, event in await stored_events(js)]
            return True if of_type(events, OperationStarted) else None

        await eventually(started, what="the first attempt starting")

    async with running(create_executor(settings, worker="staying")):
        events = await terminal_events(js, 1)

    attempts = [(e.worker, e.attempt) for e in of_type(events, OperationStarted)]
    assert attempts == [("leaving", 1), ("staying", 2)]
    assert len(of_type(events, OperationCompleted)) == 1


async def test_a_redelivered_request_that_already_ended_is_not_run_again(
    js: JetStreamContext, event_log: EventLog
) -> None:
    done = request("done-before", "{ useCompany(no: 1) { no } }")
    await submit(event_log, done)
    first = await handle(event_log, done, delivery=1)
    assert isinstance(first, OperationCompleted)
    before = len(await stored_events(js))

    again = await handle(event_log, done, delivery=2)

    assert again is None
    assert len(await stored_events(js)) == before


@pytest.mark.parametrize("fresh", [True, False], ids=["just-stored", "waited"])
async def test_a_first_delivery_cancelled_meanwhile_is_never_begun(
    js: JetStreamContext, event_log: EventLog, fresh: bool
) -> None:
    waited = request(f"waited-{fresh}", "{ slowReport(seconds: 0) }")
    await submit(event_log, waited)
    # Cancelled while it waited: its owner's request, stored, and no ending yet.
    cancel = OperationCancelRequested(**correlation_of(waited))
    await event_log.append(cancel, msg_id=f"{waited.operation_id}.cancel_requested")
    runs: list[int] = []

    async def run(delivered: OperationRequested, attempt: int) -> TerminalEvent:
        runs.append(attempt)
        await asyncio.sleep(10)  # cancelled long before, when its start is refused
        return OperationCompleted(**correlation_of(delivered), response={})

    outcome = await handle(event_log, waited, delivery=1, run=run, fresh=fresh)

    assert isinstance(outcome, OperationFailed)
    assert outcome.code == ErrorCode.CANCELLED
    events = [event for _, event in await stored_events(js)]
    assert of_type(events, OperationStarted) == []
    # Begun while its start was stored only when it was fresh, and then cancelled unfinished.
    assert runs == ([1] if fresh else [])


async def test_a_first_delivery_that_waited_runs_once_without_reading_first(
    js: JetStreamContext, event_log: EventLog
) -> None:
    waited = request("waited-long", "{ slowReport(seconds: 0) }")
    await submit(event_log, waited)

    outcome = await handle(event_log, waited, delivery=1, fresh=False)

    assert isinstance(outcome, OperationCompleted)
    events = [event for _, event in await stored_events(js)]
    assert [type(event) for event in events] == [
        OperationRequested,
        OperationStarted,
        OperationCompleted,
    ]


async def test_the_delivery_after_the_last_lost_attempt_ends_the_operation(
    js: JetStreamContext, event_log: EventLog
) -> None:
    lost = request("lost", "{ slowReport(seconds: 0) }")
    await submit(event_log, lost)
    # Four attempts started by executors that were lost before they finished.
    for attempt, delivery in ((1, 1), (2, 2), (3, 4), (4, 7)):
        lost_start = OperationStarted(
            **correlation_of(lost), attempt=attempt, worker="gone", delivery=delivery
        )
        await event_log.append(lost_start, msg_id=f"lost.started.{attempt}")

    outcome = await handle(event_log, lost, delivery=8)

    assert isinstance(outcome, OperationFailed)
    assert outcome.code == ErrorCode.ATTEMPTS_EXHAUSTED
    assert "lost 4 times" in outcome.error
    events = [event for _, event in await stored_events(js)]
    assert len(of_type(events, OperationStarted)) == 4


async def test_deliveries_handed_back_for_nats_trouble_use_up_no_attempt(
    event_log: EventLog,
) -> None:
    delayed = request("delayed", "{ slowReport(seconds: 0) }")
    await submit(event_log, delayed)

    # Delivery 9: the eight before it were handed back before anything was started.
    outcome = await handle(event_log, delayed, delivery=9)

    assert isinstance(outcome, OperationCompleted)


async def handle(
    log: EventLog,
    delivered: OperationRequested,
    *,
    delivery: int,
    run: Callable[[OperationRequested, int], Awaitable[TerminalEvent]] | None = None,
    fresh: bool = True,
    retry: Retry = NO_RETRY,
) -> TerminalEvent | None:
    """One delivery of ``delivered`` to an executor that allows four attempts (by default,
    running the ledger schema); ``fresh``: the request was stored just now, not long ago."""
    stored = (await log.facts(delivered.tenant, delivered.operation_id)).requested
    assert stored is not None
    return await handle_requested(
        delivered,
        delivery=delivery,
        requested_at=stored[0],
        max_attempts=4,
        events=log,
        run=run or OperationRunner(target=InProcessTarget(ledger_schema), timeout_s=10),
        worker=f"w{delivery}",
        limits=ResultLimits(max_payload=1 << 20),
        results=ResultStore(log.js, log.inbox),
        fresh=fresh,
        retries=lambda _: retry,
    )


async def test_unreadable_requests_are_set_aside_and_the_next_one_still_runs(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    await js.publish("ops.events.t1.bad.requested", b"[]")
    stray = OperationStarted(
        operation_id="stray", tenant="t1", principal="u1", trace_id="t", attempt=1, worker="w"
    )
    await js.publish("ops.events.t1.stray.requested", encode_event(stray))
    async with running(create_executor(settings)):
        await submit(event_log, request("fine", "{ slowReport(seconds: 0) }"))
        await terminal_events(js, 1)
        consumer = await js.consumer_info("ASYNCGATE_REQUESTS", "asyncgate-executor")

    # Set aside by concurrent workers, so in either order.
    reasons = {
        headers["Asyncgate-Original-Subject"]: headers["Asyncgate-Reason"]
        for _, headers in await dead_letters(js)
    }
    assert len(reasons) == 2
    assert "not a readable operation event" in reasons["ops.events.t1.bad.requested"]
    assert (
        "a started event stored on a requested subject" in reasons["ops.events.t1.stray.requested"]
    )
    assert consumer.num_ack_pending == 0
    assert consumer.num_redelivered == 0


async def test_a_delivery_superseded_by_a_newer_attempt_stands_back(
    js: JetStreamContext, event_log: EventLog
) -> None:
    overtaken = request("overtaken", "{ slowReport(seconds: 0) }")
    await submit(event_log, overtaken)
    newer = OperationStarted(**correlation_of(overtaken), attempt=1, worker="elsewhere", delivery=2)
    await event_log.append(newer, msg_id="overtaken.started.2")
    before = len(await stored_events(js))

    with pytest.raises(SupersededDeliveryError):
        await handle(event_log, overtaken, delivery=1)

    assert len(await stored_events(js)) == before


async def test_garbage_on_an_operations_terminal_subject_does_not_keep_it_from_ending(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    waiting = request("waiting", "{ slowReport(seconds: 0) }")
    await submit(event_log, waiting)
    # Stored before any executor looked at the request: readers must skip it, not fail on it.
    await js.publish("ops.events.t1.waiting.completed", b"\x00garbage")

    async with running(create_executor(settings)):
        events = await terminal_events(js, 1)

    [completed] = of_type(events, OperationCompleted)
    assert completed.operation_id == "waiting"


async def test_two_deliveries_racing_on_one_operation_store_one_terminal_event(
    event_log: EventLog, js: JetStreamContext
) -> None:
    contested = request("contested", "{ slowReport(seconds: 0) }")
    await submit(event_log, contested)
    first_running = asyncio.Event()

    async def slow_first(delivered: OperationRequested, attempt: int) -> TerminalEvent:
        if attempt == 1:
            first_running.set()
            await asyncio.sleep(0.5)
        return OperationCompleted(**correlation_of(delivered), response={"data": {"by": attempt}})

    async def first_start_stored() -> bool | None:
        events = [event for _, event in await stored_events(js)]
        return True if of_type(events, OperationStarted) else None

    async def deliver(delivery: int) -> TerminalEvent | None:
        if delivery == 2:
            # Redelivered while attempt 1 still runs (its executor looked lost).
            await first_running.wait()
            await eventually(first_start_stored, what="the first attempt's start stored")
        return await handle(event_log, contested, delivery=delivery, run=slow_first)

    outcomes = await asyncio.gather(deliver(1), deliver(2))

    events = [event for _, event in await stored_events(js)]
    terminals = of_type(events, OperationCompleted)
    assert len(terminals) == 1
    # The one that stored it says so; the other one learns the operation ended.
    assert sorted(outcome is None for outcome in outcomes) == [False, True]
    assert [e.attempt for e in of_type(events, OperationStarted)] == [1, 2]


async def test_a_quick_attempt_carries_its_start_on_its_ending_and_a_longer_one_stores_it(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    quick = request("quick", "{ slowReport(seconds: 0) }")
    longer = request("longer", "{ slowReport(seconds: 0.3) }")
    async with running(create_executor(settings, worker="w")):
        await submit(event_log, quick, longer)
        events = await terminal_events(js, 2)

    def of(operation_id: str) -> list[OperationEvent]:
        return [event for event in events if event.operation_id == operation_id]

    [quick_ending] = of_type(of("quick"), OperationCompleted)
    assert of_type(of("quick"), OperationStarted) == []
    assert quick_ending.start is not None
    assert (quick_ending.start.attempt, quick_ending.start.worker) == (1, "w")
    assert quick_ending.start.started_at <= quick_ending.occurred_at
    # Running longer than a moment, it shows RUNNING: its start is stored while it runs.
    [longer_start] = of_type(of("longer"), OperationStarted)
    [longer_ending] = of_type(of("longer"), OperationCompleted)
    assert longer_ending.start is None
    assert longer_start.attempt == 1
    assert (longer_ending.occurred_at - longer_start.occurred_at).total_seconds() >= 0.25


async def test_a_quick_attempt_that_fails_for_a_passing_reason_stores_its_start_for_the_count(
    js: JetStreamContext, event_log: EventLog
) -> None:
    flaky = request("flaky", "{ slowReport(seconds: 0) }")
    await submit(event_log, flaky)

    async def unreachable_once(delivered: OperationRequested, attempt: int) -> TerminalEvent:
        if attempt == 1:
            return OperationFailed(
                **correlation_of(delivered), code=ErrorCode.UPSTREAM_UNREACHABLE, error="down"
            )
        return OperationCompleted(**correlation_of(delivered), response={"data": {"a": attempt}})

    with pytest.raises(RetryScheduledError):
        await handle(
            event_log, flaky, delivery=1, run=unreachable_once, retry=Retry(2, backoff_s=0)
        )
    ended = await handle(
        event_log, flaky, delivery=2, run=unreachable_once, retry=Retry(2, backoff_s=0)
    )

    events = [event for _, event in await stored_events(js)]
    # Attempt 1 is on the stream as a start (the retry's count rests on it); attempt 2 ran
    # after a redelivery, which stores its start first.
    assert [start.attempt for start in of_type(events, OperationStarted)] == [1, 2]
    assert isinstance(ended, OperationCompleted)
    assert ended.response == {"data": {"a": 2}}
