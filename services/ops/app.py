"""The ``asyncgate ops`` commands. Each connects, does one thing, and ends with a status: 0 done,
1 found something wrong (a difference, nothing there), 2 could not look (NATS unreachable, a
bad argument), as grep and diff do."""

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final, TypeVar

import nats.errors
import typer
import uvloop
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from contracts.names import (
    EVENT_STREAMS,
    SUBJECT_ROOT,
    UnsafeTokenError,
    encode_id,
    require_id_token,
    stream_of,
)
from contracts.view import TaskStatus
from services.common.jetstream import close_connection
from services.common.listing import Listing
from services.common.settings import ConfigurationError, Settings
from services.ops import render
from services.ops.connection import (
    EXIT_FOUND,
    EXIT_TROUBLE,
    OpsError,
    connect_operator,
    locate,
)
from services.ops.dead_letters import list_dead_letters, purge, requeue, show_dead_letter
from services.ops.operations import (
    OperationFilter,
    list_operations,
    show_operation,
    timeline_entry,
)
from services.ops.render import ReplaySummary
from services.projector.replay import Rebuilt, Verified, rebuild, stream_size, verify

T = TypeVar("T")

app = typer.Typer(
    name="asyncgate ops",
    help="Inspect operations, follow events, replay the stream into the view, handle dead "
    "letters. Finds the local stack's NATS by itself (what asyncgate up recorded), or uses "
    "ASYNCGATE_NATS_URL and the ASYNCGATE_NATS_* login.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dead_letters_app = typer.Typer(
    help="Messages the services set aside: list, show, requeue, purge.", no_args_is_help=True
)
app.add_typer(dead_letters_app, name="dead-letters")

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _run(work: Callable[[NatsClient], Awaitable[T]]) -> T:
    """Connect, run ``work``, disconnect; any trouble becomes one line and an exit status."""
    try:
        settings = Settings.from_env()
        return uvloop.run(_connected(settings, work))
    except OpsError as error:
        render.fail(str(error))
        raise typer.Exit(error.exit_code) from None
    except ConfigurationError as error:
        render.fail(str(error))
        raise typer.Exit(EXIT_TROUBLE) from None
    except (TimeoutError, nats.errors.Error) as error:
        render.fail(f"NATS: {str(error) or type(error).__name__}")
        raise typer.Exit(EXIT_TROUBLE) from None


async def _connected(settings: Settings, work: Callable[[NatsClient], Awaitable[T]]) -> T:
    nc = await connect_operator(settings, locate(settings))
    try:
        return await work(nc)
    finally:
        await close_connection(nc)


_AGO: Final = re.compile(r"(\d+)([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time (UTC unless it says), or a duration back from now
    (``90s``, ``30m``, ``2h``, ``7d``)."""
    if value is None:
        return None
    ago = _AGO.fullmatch(value.strip())
    if ago is not None:
        return datetime.now(UTC) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("expected an ISO time or a duration such as 30m, 2h, 7d") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("list")
def list_command(
    *,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    user: Annotated[str | None, typer.Option(help="only this user's")] = None,
    status: Annotated[
        TaskStatus | None, typer.Option(case_sensitive=False, help="only in this status")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="queued since: an ISO time, or 30m, 2h, 7d back")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 50,
    after: Annotated[
        str | None, typer.Option(help="the page after this operation id (the last one shown)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """List operations from the view, newest first, a page at a time."""
    wanted = OperationFilter(
        tenant=tenant,
        user=user,
        status=status,
        since=parse_since(since),
        limit=limit,
        after=after,
    )
    views = _run(lambda nc: list_operations(nc.jetstream(), wanted))
    if json_output:
        render.emit_json(views)
        return
    out = render.console()
    out.print(render.operations_table(views))
    if len(views) == limit:
        out.print(f"next page: --after {views[-1].operation_id}", markup=False)


@app.command("show")
def show_command(
    operation_id: Annotated[str, typer.Argument(help="the operation id")],
    json_output: JsonOption = False,
) -> None:
    """Show one operation's view and its events as a timeline."""
    try:
        require_id_token(operation_id, "operation id")
    except UnsafeTokenError as error:
        raise typer.BadParameter(str(error), param_hint="OPERATION_ID") from None
    detail = _run(lambda nc: show_operation(nc.jetstream(), operation_id))
    if json_output:
        render.emit_json(detail)
    else:
        render.show_operation(render.console(), detail)


class EventKind(StrEnum):
    """The event types ``ops tail --type`` takes."""

    REQUESTED = "requested"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"


@app.command("tail")
def tail_command(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's events")] = None,
    event_type: Annotated[
        EventKind | None, typer.Option("--type", help="only events of this type")
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=1, help="stop after this many (default: until Ctrl-C)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Follow events as they are stored (Ctrl-C stops)."""
    try:
        tenant_token = "*" if tenant is None else encode_id(tenant, "tenant")
    except UnsafeTokenError as error:
        raise typer.BadParameter(str(error), param_hint="--tenant") from None
    subjects = f"{SUBJECT_ROOT}.{tenant_token}.*.{event_type or '*'}"
    out = render.console()

    # The requests are in a stream of their own (contracts/names.py): one consumer on each
    # stream that holds the events asked for.
    streams = EVENT_STREAMS if event_type is None else (stream_of(event_type),)

    async def follow(nc: NatsClient) -> None:
        arrived: asyncio.Queue[Msg] = asyncio.Queue()
        subscriptions = [
            await nc.jetstream().subscribe(
                subjects,
                stream=stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
                cb=arrived.put,
            )
            for stream in streams
        ]
        render.console(stderr=True).print(f"following {subjects} (Ctrl-C stops)", markup=False)
        try:
            shown = 0
            while count is None or shown < count:
                entry = timeline_entry(await arrived.get())
                if json_output:
                    render.emit_json(entry)
                else:
                    table = render.timeline_table([entry], with_operation=True)
                    table.show_header = shown == 0
                    out.print(table)
                shown += 1
        finally:
            for subscription in subscriptions:
                await subscription.unsubscribe()

    try:
        _run(follow)
    except KeyboardInterrupt:
        return


@app.command("replay")
def replay_command(
    check: Annotated[
        bool,
        typer.Option("--verify", help="compare with the bucket, write nothing; exit 1 on any"),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Rebuild the view bucket (and the listing's index) from the event streams."""
    if check:
        _verify(json_output)
    else:
        _rebuild(json_output)


def _summary(verified: Verified, started: float, **done: int) -> ReplaySummary:
    """What a replay read and found, and (``done``) what it then did."""
    replay = verified.replay
    return ReplaySummary(
        events=replay.events,
        skipped=replay.skipped,
        views=len(replay.views),
        seconds=round(time.perf_counter() - started, 3),
        differences=verified.differences,
        **done,
    )


def _verify(json_output: bool) -> None:
    started = time.perf_counter()
    with render.progress_bar() as progress:

        async def compare(nc: NatsClient) -> Verified:
            js = nc.jetstream()
            reading = progress.add_task("reading events", total=await stream_size(js))
            return await verify(js, render.advancing(progress, reading))

        verified = _run(compare)
    differences = verified.differences
    summary = _summary(verified, started, in_flight=verified.in_flight)
    if json_output:
        render.emit_json(summary)
    else:
        out = render.console()
        for difference in differences:
            out.print(render.difference_line(difference))
        out.print(render.replay_summary(summary), markup=False)
    if differences:
        raise typer.Exit(EXIT_FOUND)


def _rebuild(json_output: bool) -> None:
    started = time.perf_counter()
    with render.progress_bar() as progress:

        async def write(nc: NatsClient) -> Rebuilt:
            js = nc.jetstream()
            reading = progress.add_task("reading events", total=await stream_size(js))
            phase = [reading]
            listing = Listing.over(nc)

            def advance(done: int) -> None:
                progress.advance(phase[0], done)

            def writes_follow(count: int) -> None:
                progress.update(reading, completed=progress.tasks[reading].total)
                phase[0] = progress.add_task("writing", total=count)

            try:
                return await rebuild(nc, listing, progress=advance, on_writes=writes_follow)
            finally:
                await listing.reads.close()

        rebuilt = _run(write)
    summary = _summary(
        rebuilt.verified,
        started,
        written=rebuilt.written,
        removed=rebuilt.removed,
        overtaken=rebuilt.overtaken,
        indexed=rebuilt.indexed,
    )
    if json_output:
        render.emit_json(summary)
    else:
        render.console().print(render.replay_summary(summary), markup=False)


@dead_letters_app.command("list")
def dead_letters_list(
    service: Annotated[
        str | None, typer.Option(help="only those this service set aside (executor, projector)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """List the dead letters, oldest first."""
    letters = _run(lambda nc: list_dead_letters(nc.jetstream(), service))
    if json_output:
        render.emit_json(letters)
    else:
        render.console().print(render.dead_letters_table(letters))


@dead_letters_app.command("show")
def dead_letters_show(
    sequence: Annotated[int, typer.Argument(help="the dead letter's number (seq in the list)")],
    json_output: JsonOption = False,
) -> None:
    """Show one dead letter: why, where its original is, and the start of it."""
    letter, _ = _run(lambda nc: show_dead_letter(nc.jetstream(), sequence))
    if json_output:
        render.emit_json(letter)
    else:
        render.show_dead_letter(render.console(), letter)


@dead_letters_app.command("requeue")
def dead_letters_requeue(
    sequence: Annotated[int, typer.Argument(help="the dead letter's number (seq in the list)")],
) -> None:
    """Store the original again on its subject (the services take it up anew), then remove
    the dead letter."""
    stored = _run(lambda nc: requeue(nc.jetstream(), sequence))
    render.console().print(f"dead letter {sequence} requeued as message {stored}", markup=False)


@dead_letters_app.command("purge")
def dead_letters_purge(
    sequence: Annotated[
        int | None, typer.Argument(help="the dead letter's number (seq in the list)")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="remove every dead letter")] = False,
) -> None:
    """Remove one dead letter, or every one with --all."""
    if (sequence is None) == (not everything):
        raise typer.BadParameter("name one dead letter's number, or --all (not both)")
    removed = _run(lambda nc: purge(nc.jetstream(), None if everything else sequence))
    render.console().print(f"{removed} dead letter(s) removed", markup=False)
