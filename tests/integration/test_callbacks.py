"""Callbacks end to end: a real nats-server, edge, executor, projector and callbacks service,
and real HTTP receivers. A finished operation is POSTed, correctly signed (checked with the
standardwebhooks package, keyed with a secret derived here as the README says), a receiver
failing twice gets it a third time, and a URL outside the allowed hosts is refused."""

import asyncio
import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.events import (
    CallbackAttempted,
    CallbackDelivered,
    OperationCompleted,
    OperationRequested,
)
from services.callbacks.app import create_app as create_callbacks
from services.common.identity import ANONYMOUS
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.projector.replay import stream_size
from tests.integration.test_cli import run_cli
from tests.integration.test_nats_permissions import SecuredNats, as_service, secured_nats
from tests.stack import (
    eventually,
    graphql,
    running,
    serving,
    serving_edge,
    stored_events,
)

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

__all__ = ["secured_nats"]  # a fixture, used by name

MASTER_KEY = "a-master-key-of-at-least-32-bytes-for-tests"
NEW_MASTER_KEY = "the-master-key-replacing-it-also-32-bytes-long"
SUBMIT = """mutation($q: String!, $url: String) {
  asyncQuery(query: $q, callbackUrl: $url) { operationId callback { state attempts } }
}"""
RESULT = """query($id: String!) {
  asyncResult(id: $id) { status callback { state attempts lastError } }
}"""
QUICK = "{ slowReport(seconds: 0) }"


@dataclass
class Received:
    """One POST a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST; ``/ok`` answers 204, ``/flaky`` 500 twice and then 200, ``/slow``
    200 once ``release`` is set."""

    posts: list[Received] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def answer(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.calls[name] += 1
        self.posts.append(Received(name, dict(request.headers), await request.body()))
        if name == "slow":
            await self.release.wait()
        if name == "flaky" and self.calls[name] <= 2:
            return Response("down", 500)
        return Response(status_code=204 if name == "ok" else 200)

    def app(self) -> Starlette:
        """The receiver as an ASGI app."""
        return Starlette(routes=[Route("/{name}", self.answer, methods=["POST"])])

    def got(self, name: str, count: int) -> list[Received] | None:
        """The POSTs to ``name`` once there are ``count`` of them."""
        posts = [post for post in self.posts if post.path == name]
        return posts if len(posts) >= count else None

    async def received(self, name: str, count: int) -> list[Received] | None:
        """``got``, as a probe for ``eventually``."""
        return self.got(name, count)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A receiver behind a real uvicorn server; its base URL."""
    recorder = Receiver()
    async with serving(recorder.app(), free_port()) as url:
        yield recorder, url


def callback_settings(settings: Settings, receiver_url: str) -> Settings:
    """Callbacks allowed to the receiver only, with short pauses between attempts."""
    return settings.replace(
        callback_allowed_hosts=receiver_url.removeprefix("http://"),
        callback_signing_key=MASTER_KEY,
        callback_backoff_s="0.2,0.2,0.2",
    )


@pytest.fixture
async def stack(
    settings: Settings, receiver: tuple[Receiver, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole stack with callbacks."""
    settings = callback_settings(settings, receiver[1])
    async with (
        running(create_projector(settings)),
        running(create_executor(settings)),
        running(create_callbacks(settings)),
        serving_edge(settings) as client,
    ):
        yield client


def receivers_secret(tenant: str, master: str = MASTER_KEY) -> str:
    """The tenant's whsec_ secret, derived as README says (not through asyncgate's code)."""
    digest = hmac.new(master.encode(), tenant.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode()


async def submitted(client: httpx.AsyncClient, url: str | None) -> str:
    """Queue the quick query with callback ``url``; its operation id."""
    body = await graphql(client, SUBMIT, {"q": QUICK, "url": url})
    assert "errors" not in body, body
    return str(body["data"]["asyncQuery"]["operationId"])


async def callback_state(client: httpx.AsyncClient, operation_id: str, state: str) -> Any:
    """asyncResult once its callback is in ``state``."""

    async def reached() -> dict[str, Any] | None:
        result = (await graphql(client, RESULT, {"id": operation_id}))["data"]["asyncResult"]
        callback = result["callback"]
        return result if callback and callback["state"] == state else None

    return await eventually(reached, what=f"the callback of {operation_id} {state}")


async def test_a_finished_operation_is_posted_signed_to_its_callback(
    stack: httpx.AsyncClient, receiver: tuple[Receiver, str], js: JetStreamContext
) -> None:
    recorder, url = receiver
    queued = await graphql(stack, SUBMIT, {"q": QUICK, "url": f"{url}/ok"})
    operation_id = queued["data"]["asyncQuery"]["operationId"]

    posts = await eventually(lambda: recorder.received("ok", 1), what="a callback")
    result = await callback_state(stack, operation_id, "DELIVERED")
    post = posts[0]
    payload = Webhook(receivers_secret(ANONYMOUS.tenant)).verify(post.body, post.headers)
    terminal = [e for _, e in await stored_events(js) if isinstance(e, OperationCompleted)]

    assert queued["data"]["asyncQuery"]["callback"] == {"state": "PENDING", "attempts": 0}
    assert payload["type"] == "operation.completed"
    assert payload["data"]["operationId"] == operation_id
    assert payload["data"]["status"] == "SUCCESS"
    assert json.loads(payload["data"]["data"]) == {"data": {"slowReport": "report ready after 0 s"}}
    assert payload["data"]["dataUrl"] == f"/results/{operation_id}"
    assert payload["data"]["createdAt"]
    assert payload["data"]["completedAt"]
    assert post.headers["webhook-id"] == terminal[0].event_id
    assert post.headers["content-type"] == "application/json"
    assert result == {
        "status": "SUCCESS",
        "callback": {"state": "DELIVERED", "attempts": 1, "lastError": None},
    }
    assert len(recorder.posts) == 1


async def test_while_the_master_key_is_rotated_receivers_with_the_old_or_new_secret_accept(
    settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    recorder, url = receiver
    rotating = callback_settings(settings, url).replace(
        callback_signing_key=NEW_MASTER_KEY, callback_previous_signing_keys=MASTER_KEY
    )
    async with (
        running(create_projector(rotating)),
        running(create_executor(rotating)),
        running(create_callbacks(rotating)),
        serving_edge(rotating) as client,
    ):
        await submitted(client, f"{url}/rotating")
        [post] = await eventually(lambda: recorder.received("rotating", 1), what="a callback")

    for master in (MASTER_KEY, NEW_MASTER_KEY):
        payload = Webhook(receivers_secret(ANONYMOUS.tenant, master)).verify(
            post.body, post.headers
        )
        assert payload["type"] == "operation.completed"
    stranger = receivers_secret(ANONYMOUS.tenant, "another-master-key-of-32-bytes-or-more")
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(stranger).verify(post.body, post.headers)


async def test_a_receiver_failing_twice_gets_it_a_third_time(
    stack: httpx.AsyncClient, receiver: tuple[Receiver, str], js: JetStreamContext
) -> None:
    recorder, url = receiver
    operation_id = await submitted(stack, f"{url}/flaky")

    result = await callback_state(stack, operation_id, "DELIVERED")
    posts = recorder.got("flaky", 3)
    events = [e for _, e in await stored_events(js) if e.operation_id == operation_id]
    attempted = [e for e in events if isinstance(e, CallbackAttempted)]
    delivered = [e for e in events if isinstance(e, CallbackDelivered)]

    assert result["callback"] == {
        "state": "DELIVERED",
        "attempts": 3,
        "lastError": "the receiver answered 500",
    }
    assert posts is not None
    assert len(posts) == 3
    # One message, retried: the same webhook-id, each attempt signed afresh.
    assert len({post.headers["webhook-id"] for post in posts}) == 1
    secret = Webhook(receivers_secret(ANONYMOUS.tenant))
    assert all(secret.verify(post.body, post.headers) for post in posts)
    assert [(e.attempt, e.status) for e in attempted] == [(1, 500), (2, 500)]
    assert [(e.attempt, e.status) for e in delivered] == [(3, 200)]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/elsewhere",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "https://user:secret@127.0.0.1/x",
    ],
)
async def test_a_callback_url_outside_the_allowed_hosts_is_refused_and_nothing_is_queued(
    stack: httpx.AsyncClient, js: JetStreamContext, url: str
) -> None:
    body = await graphql(stack, SUBMIT, {"q": QUICK, "url": url})

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "CALLBACK_URL_NOT_ALLOWED"
    assert "Traceback" not in json.dumps(body)
    assert await stream_size(js) == 0


async def test_an_operation_without_a_callback_has_none_and_nothing_is_posted(
    stack: httpx.AsyncClient, receiver: tuple[Receiver, str], js: JetStreamContext
) -> None:
    operation_id = await submitted(stack, None)

    async def ended() -> dict[str, Any] | None:
        result = (await graphql(stack, RESULT, {"id": operation_id}))["data"]["asyncResult"]
        return result if result["status"] == "SUCCESS" else None

    result = await eventually(ended, what="the operation ending")
    requests = [e for _, e in await stored_events(js) if isinstance(e, OperationRequested)]

    assert result["callback"] is None
    assert requests[0].callback_url is None
    assert receiver[0].posts == []


async def test_a_slow_receiver_holds_up_no_other_callback(
    stack: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    recorder, url = receiver
    slow = await submitted(stack, f"{url}/slow")
    await eventually(lambda: recorder.received("slow", 1), what="the slow receiver called")

    quick = await callback_state(stack, await submitted(stack, f"{url}/ok"), "DELIVERED")
    waiting = (await graphql(stack, RESULT, {"id": slow}))["data"]["asyncResult"]
    recorder.release.set()
    released = await callback_state(stack, slow, "DELIVERED")

    assert quick["callback"]["attempts"] == 1
    assert waiting["callback"] == {"state": "PENDING", "attempts": 0, "lastError": None}
    assert released["callback"]["attempts"] == 1


async def test_the_callbacks_service_does_its_job_as_its_own_nats_user(
    settings: Settings, secured_nats: SecuredNats, receiver: tuple[Receiver, str]
) -> None:
    recorder, url = receiver
    settings = callback_settings(settings.replace(nats_url=secured_nats.url), url)
    async with (
        running(create_projector(as_service(settings, "projector"))),
        running(create_executor(as_service(settings, "executor"))),
        running(create_callbacks(as_service(settings, "callbacks"))),
        serving_edge(as_service(settings, "edge")) as client,
    ):
        operation_id = await submitted(client, f"{url}/flaky")
        result = await callback_state(client, operation_id, "DELIVERED")

    assert result["callback"]["attempts"] == 3
    assert recorder.calls["flaky"] == 3
    assert "Violation" not in secured_nats.log.read_text()


def test_callback_secret_prints_the_secret_callbacks_are_signed_with() -> None:
    printed = run_cli(
        "callback-secret", "--tenant", "default", env={"ASYNCGATE_CALLBACK_SIGNING_KEY": MASTER_KEY}
    )
    refused = run_cli("callback-secret", "--tenant", "default", env={})
    service = run_cli("callbacks", env={"ASYNCGATE_CALLBACK_SIGNING_KEY": "short"})

    assert printed.returncode == 0
    assert printed.stdout.strip() == receivers_secret(ANONYMOUS.tenant)
    assert refused.returncode == 2
    assert "ASYNCGATE_CALLBACK_SIGNING_KEY must be at least 32 bytes" in refused.stderr
    assert service.returncode == 2
    assert "Traceback" not in service.stderr
