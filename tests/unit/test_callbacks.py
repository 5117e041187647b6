"""The pure parts of callbacks: signing by the Standard Webhooks spec, the allowed hosts and
addresses, the retry decision, and the fold of callback events into the view."""

import ipaddress
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from contracts.events import (
    CallbackAbandoned,
    CallbackAttempted,
    CallbackDelivered,
    CallbackEvent,
    Correlation,
    OperationCompleted,
    OperationEvent,
    OperationRequested,
    ResultReference,
    what_ran,
)
from contracts.lifecycle import fold
from contracts.view import CallbackState, CallbackStatus
from services.callbacks.payload import callback_body
from services.callbacks.schedule import Answer, Delivered, GiveUp, RetryAt, judge
from services.callbacks.sender import AddressNotAllowedError, checked_address, pinned_url
from services.callbacks.signing import (
    SigningKeyError,
    master_key,
    master_keys,
    secret_from_text,
    secret_text,
    signature,
    signed_headers,
    tenant_secret,
)
from services.common.callback_urls import (
    AllowedHosts,
    CallbackTarget,
    CallbackUrlError,
    check_callback_url,
    is_public,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENVELOPE: Correlation = {"operation_id": "op", "tenant": "t", "principal": "u", "trace_id": "tr"}
BACKOFF = (5.0, 300.0, 1800.0)


def no_jitter(low: float, high: float) -> float:
    """The middle of the jitter range: the pause exactly as configured."""
    return (low + high) / 2


# The example of the Standard Webhooks specification's reference implementations' tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_matches_the_specifications_example() -> None:
    secret = secret_from_text(SPEC_SECRET)

    assert signature(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_signature_verifies_with_the_standardwebhooks_package_and_a_changed_body_does_not() -> (
    None
):
    secret = tenant_secret(master_key("m" * 32), "acme")
    now = int(datetime.now(UTC).timestamp())
    body = b'{"type":"operation.completed"}'
    headers = signed_headers([secret], "evt-1", now, body)
    receiver = Webhook(secret_text(secret))

    assert receiver.verify(body, headers) == {"type": "operation.completed"}
    with pytest.raises(Exception, match="No matching signature"):
        receiver.verify(body.replace(b"completed", b"failed"), headers)


def test_while_the_master_key_is_rotated_a_receiver_with_either_secret_accepts() -> None:
    current, previous = master_keys("n" * 32, " " + "p" * 32 + " ,")
    now = int(datetime.now(UTC).timestamp())
    body = b'{"type":"operation.failed"}'
    secrets = [tenant_secret(key, "acme") for key in (current, previous)]
    headers = signed_headers(secrets, "evt-2", now, body)
    stranger = tenant_secret(master_key("q" * 32), "acme")

    for secret in secrets:
        assert Webhook(secret_text(secret)).verify(body, headers) == {"type": "operation.failed"}
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret_text(stranger)).verify(body, headers)
    assert len(headers["webhook-signature"].split()) == 2
    with pytest.raises(SigningKeyError, match="PREVIOUS"):
        master_keys("n" * 32, "short")


def test_each_tenant_has_its_own_secret_and_short_master_keys_are_refused() -> None:
    key = master_key("k" * 32)

    assert tenant_secret(key, "acme") != tenant_secret(key, "globex")
    assert tenant_secret(key, "acme") == tenant_secret(master_key("k" * 32), "acme")
    assert secret_text(tenant_secret(key, "acme")).startswith("whsec_")
    with pytest.raises(SigningKeyError):
        master_key("short")


HOSTS = AllowedHosts.parse("hooks.example.com, *.example.org, 127.0.0.1:8123, [::1]:9000")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in",
        "http://hooks.example.com:8080/in?x=1",
        "https://a.example.org/in",
        "https://deep.a.example.org/in",
        "http://127.0.0.1:8123/hook",
        "http://[::1]:9000/hook",
        "HTTPS://HOOKS.EXAMPLE.COM./in",
    ],
)
def test_listed_hosts_are_allowed(url: str) -> None:
    assert check_callback_url(url, HOSTS).url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example.net/in", "not allowed"),
        ("https://example.org/in", "not allowed"),  # a wildcard is for names below it
        ("http://127.0.0.1:8124/hook", "not allowed"),  # another port of a listed address
        ("http://127.0.0.2:8123/hook", "not allowed"),
        ("ftp://hooks.example.com/in", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https://user:pw@hooks.example.com/in", "credentials"),
        ("https://hooks.example.com/in#part", "fragment"),
        ("https://hooks.example.com:99999/in", "not a valid URL"),
        ("https:///in", "no host"),
        ("https://hooks.example.com/" + "a" * 2100, "longer"),
        ("https://hooks.example.com/a b", "spaces"),
    ],
)
def test_other_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(CallbackUrlError, match=reason):
        check_callback_url(url, HOSTS)


def test_nothing_is_allowed_by_default() -> None:
    with pytest.raises(CallbackUrlError, match="not allowed"):
        check_callback_url("https://hooks.example.com/in", AllowedHosts.parse(""))


def test_a_private_address_is_reached_only_through_an_exactly_listed_host() -> None:
    listed = check_callback_url("https://hooks.example.com/in", HOSTS)
    wildcard = check_callback_url("https://a.example.org/in", HOSTS)
    private = ipaddress.ip_address("10.1.2.3")
    public = ipaddress.ip_address("93.184.216.34")

    assert listed.address_allowed(private)
    assert not wildcard.address_allowed(private)
    assert wildcard.address_allowed(public)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::",
    ],
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("entry", ["*.", "a:b", "*.10.0.0.1", "host/path", "[::1]x"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=entry.replace("*", r"\*").replace("[", r"\[")):
        AllowedHosts.parse(entry)


@pytest.mark.parametrize(
    ("answer", "attempt", "verdict"),
    [
        (Answer(status=200), 1, Delivered()),
        (Answer(status=204), 4, Delivered()),
        (Answer(status=500), 1, RetryAt(T0 + timedelta(seconds=5))),
        (Answer(status=503), 3, RetryAt(T0 + timedelta(seconds=1800))),
        (Answer(status=503), 4, GiveUp()),  # three pauses: four attempts
        (Answer(status=429), 2, RetryAt(T0 + timedelta(seconds=300))),
        (Answer(status=408), 1, RetryAt(T0 + timedelta(seconds=5))),
        (Answer(error="the receiver did not answer"), 1, RetryAt(T0 + timedelta(seconds=5))),
        (Answer(status=400), 1, RetryAt(T0 + timedelta(seconds=5))),
        (Answer(status=404), 2, RetryAt(T0 + timedelta(seconds=300))),
        (Answer(status=404), 3, GiveUp()),  # refusals: three attempts in all
        (Answer(status=302), 3, GiveUp()),
        (Answer(error="resolves to 10.0.0.1", refused=True), 3, GiveUp()),
        (Answer(status=410), 1, GiveUp()),
    ],
)
def test_what_follows_an_attempt(answer: Answer, attempt: int, verdict: object) -> None:
    assert judge(answer, attempt=attempt, backoff_s=BACKOFF, now=T0, jitter=no_jitter) == verdict


def test_pauses_are_jittered_within_a_tenth() -> None:
    when = judge(Answer(status=500), attempt=2, backoff_s=BACKOFF, now=T0)

    assert isinstance(when, RetryAt)
    assert 270 <= (when.when - T0).total_seconds() <= 330


def test_a_redirect_is_described_as_not_followed() -> None:
    assert "not followed" in Answer(status=301).describe()


REQUEST = OperationRequested(
    **ENVELOPE, query="{a}", occurred_at=T0, callback_url="https://hooks.example.com/in"
)
COMPLETED = OperationCompleted(
    **ENVELOPE, **what_ran(REQUEST), response={"data": {"a": 1}}, occurred_at=T0
)


def failed_attempt(attempt: int) -> CallbackAttempted:
    """Attempt ``attempt`` failed with a 500 and will be retried."""
    return CallbackAttempted(
        **ENVELOPE, attempt=attempt, error=f"500 on {attempt}", status=500, retry_at=T0
    )


def test_the_terminal_event_says_a_callback_was_asked_for() -> None:
    plain = OperationRequested(**ENVELOPE, query="{a}")

    assert what_ran(REQUEST)["callback"] is True
    assert what_ran(plain)["callback"] is False


def test_a_request_without_a_callback_has_none_in_its_view() -> None:
    plain = OperationRequested(**ENVELOPE, query="{a}")

    assert fold([(1, plain)])["op"].callback is None
    assert fold([(1, REQUEST)])["op"].callback == CallbackStatus()


def test_a_callback_for_a_result_kept_apart_names_where_to_download_it() -> None:
    reference = ResultReference(name="op.e", size=300_000, digest="SHA-256=x")
    ended = OperationCompleted(**ENVELOPE, response=None, response_ref=reference)
    view = fold([(1, REQUEST), (2, ended)])["op"]

    state = json.loads(callback_body(view, ended))["data"]

    assert (state["status"], state["data"], state["dataUrl"]) == ("SUCCESS", "null", "/results/op")


HISTORY: list[CallbackEvent] = [
    failed_attempt(1),
    failed_attempt(2),
    CallbackDelivered(**ENVELOPE, attempt=3, status=200),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(HISTORY)))))
def test_the_fold_of_callback_events_is_order_free(order: tuple[int, ...]) -> None:
    events: list[tuple[int, OperationEvent]] = [(1, REQUEST), (2, COMPLETED)]
    events += [(3 + index, HISTORY[index]) for index in order]

    callback = fold(events)["op"].callback

    assert callback == CallbackStatus(
        state=CallbackState.DELIVERED, attempts=3, last_error="500 on 2", last_error_attempt=2
    )


def test_an_abandoned_callback_is_failed_with_its_last_error_and_delivered_wins() -> None:
    abandoned = CallbackAbandoned(**ENVELOPE, attempt=2, error="404 for good", status=404)
    events: list[tuple[int, OperationEvent]] = [
        (1, REQUEST),
        (2, COMPLETED),
        (3, failed_attempt(1)),
        (4, abandoned),
    ]
    # A delivery recorded by a replica that raced with the one giving up still counts.
    raced = [*events, (5, CallbackDelivered(**ENVELOPE, attempt=2, status=200))]

    assert fold(events)["op"].callback == CallbackStatus(
        state=CallbackState.FAILED, attempts=2, last_error="404 for good", last_error_attempt=2
    )
    raced_callback = fold(raced)["op"].callback
    assert raced_callback is not None
    assert raced_callback.state is CallbackState.DELIVERED


def test_callback_events_change_no_status() -> None:
    view = fold([(1, REQUEST), (2, COMPLETED), (3, failed_attempt(1))])["op"]

    assert (view.status, view.terminal_sequence) == ("SUCCESS", 2)


def target(url: str, *, trusted: bool) -> CallbackTarget:
    """``url`` as a checked target, listed exactly (``trusted``) or through a wildcard."""
    hosts = AllowedHosts.parse("localhost" if trusted else "*.localhost, localhost:1")
    parsed = check_callback_url(url, hosts)
    return CallbackTarget(
        url=url, scheme=parsed.scheme, host=parsed.host, port=parsed.port, trusted=trusted
    )


async def test_a_name_resolving_to_loopback_is_refused_at_delivery_unless_listed_exactly() -> None:
    # localhost really is resolved here: a wildcard-allowed name that resolves inside (DNS
    # rebinding) is refused when it is called, whatever it was when it was submitted.
    with pytest.raises(AddressNotAllowedError, match=r"non-public address 127\.0\.0\.1"):
        await checked_address(target("http://localhost:1/in", trusted=False))

    address = await checked_address(target("http://localhost/in", trusted=True))

    assert address == ipaddress.ip_address("127.0.0.1")


def test_the_request_goes_to_the_checked_address_itself() -> None:
    hook = target("http://localhost:8080/in?x=1", trusted=True)

    assert (
        str(pinned_url(hook, ipaddress.ip_address("127.0.0.1"))) == "http://127.0.0.1:8080/in?x=1"
    )
    assert str(pinned_url(hook, ipaddress.ip_address("::1"))) == "http://[::1]:8080/in?x=1"
