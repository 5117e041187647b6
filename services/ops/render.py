"""How ``asyncgate ops`` shows what it read: rich tables for people, JSON for scripts, progress
bars on standard error (so standard output stays clean for a pipe)."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from contracts.view import OperationView
from services.ops.dead_letters import DeadLetter
from services.ops.operations import OperationDetail, TimelineEntry
from services.projector.compare import Difference, DifferenceKind

# Piped output is not cut to 80 columns: ids and reasons stay whole on one line.
PIPED_WIDTH: Final = 200


def console(*, stderr: bool = False) -> Console:
    """A console on standard output (or error), as wide as the terminal or PIPED_WIDTH."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPED_WIDTH
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def emit_json(value: object) -> None:
    """Write ``value`` as one line of JSON on standard output."""
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    """One line on standard error, no traceback."""
    sys.stderr.write(f"asyncgate ops: {message}\n")


def _cell(value: object) -> Text:
    """A table cell shown as it is (a reason with [brackets] is not rich markup)."""
    if value is None:
        return Text("")
    if isinstance(value, datetime):
        return Text(moment(value))
    return Text(str(value))


def moment(value: datetime) -> str:
    """A time to the millisecond, in UTC as stored."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def operations_table(views: list[OperationView]) -> Table:
    """``ops list``: one row an operation."""
    table = Table("operation", "tenant", "user", "status", "name", "created", "ended", "tries")
    table.add_column("code")
    for view in views:
        name = view.action or view.operation_name
        table.add_row(
            *map(
                _cell,
                (
                    view.operation_id,
                    view.tenant,
                    view.principal,
                    view.status,
                    name,
                    view.created_at,
                    view.completed_at,
                    view.attempts,
                    view.code,
                ),
            )
        )
    return table


def timeline_table(entries: list[TimelineEntry], *, with_operation: bool = False) -> Table:
    """An operation's events (``ops show``), or any events (``ops tail``), one row each."""
    columns = ["time", "seq", *(["tenant", "operation"] if with_operation else [])]
    table = Table(*columns, "type", "attempt", "worker", "code", "error")
    for entry in entries:
        where = [entry.tenant, entry.operation_id] if with_operation else []
        table.add_row(
            *map(
                _cell,
                (
                    entry.occurred_at or entry.stored_at,
                    entry.sequence,
                    *where,
                    entry.type,
                    entry.attempt,
                    entry.worker,
                    entry.code,
                    entry.error,
                ),
            )
        )
    return table


def show_operation(out: Console, detail: OperationDetail) -> None:
    """``ops show``: the view's fields, then the timeline."""
    if detail.view is None:
        out.print(Text(f"{detail.operation_id}: no view (expired, or not folded yet)"))
    else:
        fields = Table.grid(padding=(0, 2))
        for name, value in msgspec.structs.asdict(detail.view).items():
            if name != "response":
                fields.add_row(Text(name), _cell(value))
        out.print(fields)
        if detail.view.response is not None:
            out.print(Text("response:"))
            out.print_json(msgspec.json.encode(detail.view.response).decode())
    out.print(timeline_table(detail.timeline))


def difference_line(difference: Difference) -> Text:
    """One line of ``ops replay --verify``."""
    head = f"{difference.kind:<10} {difference.key}"
    match difference.kind:
        case DifferenceKind.MISSING:
            return Text(f"{head}  the bucket has no view; the stream has events")
        case DifferenceKind.EXTRA:
            return Text(f"{head}  the bucket has a view; the stream has no event")
        case DifferenceKind.UNREADABLE:
            return Text(f"{head}  the bucket holds something that is not a view")
    changes = "; ".join(
        f"{field.field}: stored {field.stored!r}, replayed {field.replayed!r}"
        for field in difference.fields
    )
    return Text(f"{head}  {changes}")


class ReplaySummary(msgspec.Struct, frozen=True, kw_only=True):
    """What ``ops replay`` (with ``--verify`` or not) read, found and did."""

    events: int
    skipped: int
    views: int
    seconds: float
    differences: list[Difference]
    # Verifying: operations the projector is still folding, not compared.
    in_flight: int = 0
    # Rebuilding: views written and removed, writes refused because a projector wrote the key
    # meanwhile (its view is newer), operations added to the listing.
    written: int = 0
    removed: int = 0
    overtaken: int = 0
    indexed: int = 0


def replay_summary(summary: ReplaySummary) -> str:
    """The last line of ``ops replay``."""
    rate = summary.events / summary.seconds if summary.seconds else 0.0
    line = (
        f"{summary.events:,} events read ({summary.skipped:,} unusable, skipped) in "
        f"{summary.seconds:.1f} s ({rate:,.0f} events/s): {summary.views:,} views, "
        f"{len(summary.differences):,} differing from the bucket"
    )
    if summary.in_flight:
        line += f", {summary.in_flight:,} still being folded (not compared)"
    if summary.written or summary.removed or summary.overtaken or summary.indexed:
        line += (
            f"; {summary.written:,} written, {summary.removed:,} removed, "
            f"{summary.overtaken:,} left to a projector that wrote them meanwhile, "
            f"{summary.indexed:,} added to the listing"
        )
    return line


def dead_letters_table(letters: list[DeadLetter]) -> Table:
    """``ops dead-letters list``: one row a dead letter."""
    table = Table("seq", "stored", "service", "original", "subject", "size", "reason")
    for letter in letters:
        original = f"{letter.original_stream} #{letter.original_sequence}"
        table.add_row(
            *map(
                _cell,
                (
                    letter.sequence,
                    letter.stored_at,
                    letter.service,
                    original,
                    letter.original_subject,
                    letter.original_size,
                    letter.reason,
                ),
            )
        )
    return table


def show_dead_letter(out: Console, letter: DeadLetter) -> None:
    """``ops dead-letters show``: every field, the excerpt last."""
    fields = Table.grid(padding=(0, 2))
    for name, value in msgspec.structs.asdict(letter).items():
        if name != "excerpt":
            fields.add_row(Text(name), _cell(value))
    out.print(fields)
    out.print(Text("excerpt:"))
    out.print(Text(letter.excerpt))


class _RateColumn(ProgressColumn):
    """Items a second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A progress bar on standard error, shown only on a terminal."""
    err = console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as progress:
        yield progress


def advancing(progress: Progress, task: TaskID) -> Any:
    """A callback that advances ``task`` by what it is told."""
    return lambda done: progress.advance(task, done)
