"""Load and accounting for fault tests: submit operations as a client does, count what was
acknowledged, and check afterwards that every acknowledged operation ended exactly once, with
views equal to a fresh replay of the stream."""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from nats.js import JetStreamContext

from contracts.events import OperationCompleted, OperationFailed, OperationRequested
from contracts.view import OperationView
from services.common.retry import riding_through
from services.projector.replay import replay_views
from tests.stack import stored_events, stored_views

T = TypeVar("T")

SUBMIT = "mutation($q: String!) { asyncQuery(query: $q) { operationId } }"


@dataclass
class Submissions:
    """What the clients saw: acknowledged operation ids, and refusals by error code."""

    accepted: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """One line for assertion messages."""
        return f"{len(self.accepted)} accepted, refused: {dict(self.refused)}"

    async def at_least(self, count: int) -> bool | None:
        """A probe for ``eventually``: True once ``count`` were acknowledged."""
        return True if len(self.accepted) >= count else None


async def submit_one(http: httpx.AsyncClient, query: str, seen: Submissions) -> None:
    """One asyncQuery; an id in the answer is an acknowledgement, anything else a refusal."""
    try:
        response = await http.post("/graphql", json={"query": SUBMIT, "variables": {"q": query}})
        body: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as error:
        seen.refused[type(error).__name__] += 1
        return
    queued = (body.get("data") or {}).get("asyncQuery")
    if queued is not None:
        seen.accepted.append(queued["operationId"])
        return
    codes = [(e.get("extensions") or {}).get("code", "?") for e in body.get("errors") or [{}]]
    seen.refused[codes[0]] += 1


async def submit_many(
    base_url: str,
    query: str,
    *,
    count: int,
    clients: int,
    seen: Submissions | None = None,
    pause_s: float = 0.0,
) -> Submissions:
    """Submit ``count`` operations from ``clients`` concurrent clients."""
    seen = seen if seen is not None else Submissions()
    remaining = iter(range(count))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in remaining:
            await submit_one(http, query, seen)
            if pause_s:
                await asyncio.sleep(pause_s)

    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return seen


@dataclass
class Audit:
    """How the acknowledged operations ended, from the stream and the view."""

    accepted: int
    lost: list[str]
    stuck: list[str]
    terminal_events: Counter[str]
    views_differing_from_replay: list[str]
    statuses: Counter[str]
    attempts: Counter[int]
    error_codes: Counter[str]

    @property
    def ended(self) -> int:
        """Acknowledged operations with a final view."""
        return self.accepted - len(self.lost) - len(self.stuck)

    def problems(self) -> list[str]:
        """Everything that breaks the promise; empty when it held."""
        doubled = [op for op, count in self.terminal_events.items() if count > 1]
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} lost: {self.lost[:5]}")
        if self.stuck:
            found.append(f"{len(self.stuck)} not final: {self.stuck[:5]}")
        if doubled:
            found.append(f"{len(doubled)} with several terminal events: {doubled[:5]}")
        if self.views_differing_from_replay:
            found.append(f"views differing from a replay: {self.views_differing_from_replay[:5]}")
        return found


async def _riding_through(
    read: Callable[[JetStreamContext], Awaitable[T]], js: JetStreamContext
) -> T:
    # The audit may start while a cluster still elects a leader, as the services' steps may.
    return await riding_through(lambda: read(js), what="auditing", budget_s=30)


def _by_operation(views: dict[str, OperationView]) -> dict[str, OperationView]:
    return {view.operation_id: view for view in views.values()}


async def audit(js: JetStreamContext, accepted: list[str], *, timeout_s: float = 60.0) -> Audit:
    """Wait (bounded) until every acknowledged operation has a final view, then account."""
    deadline = time.monotonic() + timeout_s
    while True:
        views = _by_operation(await _riding_through(stored_views, js))
        open_ones = [op for op in accepted if op not in views or not views[op].status.is_terminal]
        if not open_ones or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    events = await _riding_through(stored_events, js)
    requested = {e.operation_id for _, e in events if isinstance(e, OperationRequested)}
    terminals = Counter(
        event.operation_id
        for _, event in events
        if isinstance(event, OperationCompleted | OperationFailed)
    )
    # Counted from views that agree with a replay: an operation's view can be final before its
    # start is folded in (the projector folds out of order), so the first final views may not.
    differing, settled = await _views_agreeing_with_replay(js, deadline)
    views = _by_operation(settled)
    return Audit(
        accepted=len(accepted),
        lost=[op for op in accepted if op not in requested],
        stuck=[op for op in open_ones if op in requested],
        terminal_events=Counter({op: terminals[op] for op in accepted}),
        views_differing_from_replay=differing,
        statuses=Counter(views[op].status.value for op in accepted if op in views),
        attempts=Counter(views[op].attempts for op in accepted if op in views),
        error_codes=Counter(
            f"{views[op].code}: {views[op].error}"
            for op in accepted
            if op in views and views[op].code
        ),
    )


async def _views_agreeing_with_replay(
    js: JetStreamContext, deadline: float
) -> tuple[list[str], dict[str, OperationView]]:
    """The keys whose view differs from a replay (none, once the projector has caught up), and
    the views as last read. The projector may still be folding the last events; compare again
    until the two agree or time is up."""
    while True:
        stored = await _riding_through(stored_views, js)
        replayed = await _riding_through(replay_views, js)
        differing = sorted(
            key for key in stored.keys() | replayed.keys() if stored.get(key) != replayed.get(key)
        )
        if not differing or time.monotonic() > deadline:
            return differing, stored
        await asyncio.sleep(0.5)
