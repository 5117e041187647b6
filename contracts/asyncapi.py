"""Generate contracts/asyncapi.yaml: the AsyncAPI 3.0 document of every subject asyncgate
publishes, with the event types' own JSON Schemas as payloads and the CloudEvents headers.

``python -m contracts.asyncapi`` (or ``./dev asyncapi``) rewrites it; a test fails when the
checked-in file differs from what the types generate, or when it does not validate.

Published: the operation events (``ops.events.<tenant>.<operation>.<type>``) and the dead letters
(``ops.deadletter.<service>``). Not published: the key-value buckets and listing counters
(``$KV.*``, ``listing.count.*``), which are asyncgate's own state and change with it; the view
of an operation is read through GraphQL, and consumers follow the events.
"""

from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from contracts import dead_letters
from contracts.cloudevents import (
    CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    ID_HEADER,
    SOURCE_HEADER,
    SOURCES,
    SPEC_VERSION,
    SPEC_VERSION_HEADER,
    SUBJECT_HEADER,
    TIME_HEADER,
    TYPE_HEADER,
    TYPES,
)
from contracts.events import (
    SCHEMA_VERSION,
    CallbackAbandoned,
    CallbackAttempted,
    CallbackDelivered,
    OperationAttemptFailed,
    OperationCancelRequested,
    OperationCompleted,
    OperationFailed,
    OperationProgressed,
    OperationRequested,
    OperationStarted,
)
from contracts.names import (
    DEAD_LETTER_ROOT,
    REQUESTS_STREAM,
    RESULTS_BUCKET,
    STREAM,
    SUBJECT_ROOT,
)

DOCUMENT_PATH: Final = Path(__file__).parent / "asyncapi.yaml"
_SCHEMAS: Final = "#/components/schemas/"

EVENT_TYPES: Final = (
    OperationRequested,
    OperationStarted,
    OperationCompleted,
    OperationFailed,
    OperationCancelRequested,
    OperationAttemptFailed,
    OperationProgressed,
    CallbackAttempted,
    CallbackDelivered,
    CallbackAbandoned,
)

_WHAT_EACH_SAYS: Final = {
    "requested": "A client asked for an operation; the edge stored it. Executors work on these.",
    "started": "An executor began an attempt (one event per attempt).",
    "completed": "The operation ended with data. Terminal: no other event follows it.",
    "failed": "The operation ended without data, with a code. Terminal: nothing follows it.",
    "cancel_requested": (
        "Its owner asked to cancel it (asyncCancel). Not terminal: a `failed` event with code "
        "CANCELLED follows unless the operation had ended already."
    ),
    "attempt_failed": (
        "An attempt failed for a passing reason (an action handler's 5xx, refused connection or "
        "time-out) and will be retried from `retry_at`. Not terminal: a `started` event for the "
        "next attempt follows."
    ),
    "progressed": (
        "A running attempt reported how far it has got (done of total). Not terminal; throttled "
        "to a few per second per operation, the latest report always last before the ending."
    ),
    "callback_attempted": (
        "An attempt at POSTing the ended operation to its callback URL failed and will be tried "
        "again from `retry_at`. After the terminal event; changes no status."
    ),
    "callback_delivered": (
        "The callback receiver answered 2xx: the callback is delivered. After the terminal event."
    ),
    "callback_abandoned": (
        "The last attempt at the callback failed; no other will be made. After the terminal event."
    ),
}

_DESCRIPTION: Final = f"""\
The events asyncgate publishes on NATS JetStream, for services that consume them.

Every event of an operation is published on `{SUBJECT_ROOT}.<tenant>.<operationId>.<type>`,
exactly once per fact. The `requested` events are stored in the stream `{REQUESTS_STREAM}`,
every other event, in order, in the stream `{STREAM}`: a JetStream consumer of outcomes,
progress or callbacks reads `{STREAM}`, one of requests `{REQUESTS_STREAM}`. An operation
has one `requested` event, one `started` event per attempt and exactly one terminal event:
`completed` or `failed`; an operation queued with a callback URL then has one `callback_*`
event per attempt at calling it back. A consumer of outcomes filters on both terminal subjects
(`{SUBJECT_ROOT}.*.*.completed` and `{SUBJECT_ROOT}.*.*.failed`).

The body is the event as JSON (the payload schemas below, also in contracts/schemas). Each
message also carries the event's CloudEvents 1.0 attributes as headers (binary content mode):
`ce-id` (the event id), `ce-type`, `ce-source`, `ce-time`, `ce-subject` (the operation id).

A result larger than the gateway keeps inline (ASYNCGATE_INLINE_RESULT_BYTES, 256 KiB by
default) is not in its terminal event: `response` is null and `response_ref` gives the `name`,
`size` and `digest` (`SHA-256=` and base64url) of an object in the JetStream Object Store
bucket `{RESULTS_BUCKET}`, written before the event and kept as long as the operation's view.
Read it with any Object Store client (the `consumer` user may read that bucket), e.g. in
Python `await (await js.object_store("{RESULTS_BUCKET}")).get(name)`; its bytes are the JSON
`response` would have held. Events stored before results could be stored apart never carry
`response_ref`.

Delivery from a JetStream consumer is at least once: deduplicate on `ce-id` (the body's
`event_id`). Tenant and user ids that are not plain tokens appear in subjects as `=` and their
unpadded base64url.

Not part of this contract: the key-value buckets (`$KV.*`) and listing counters, which are
asyncgate's own state; read an operation's view through the GraphQL API. The results bucket is
part of it only as far as `response_ref` names its objects.
"""


def _parameter(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **extra}


_PARAMETERS: Final = "#/components/parameters/"
_EVENT_PARAMETERS: Final = {
    "tenant": _parameter("The tenant's id as a subject token."),
    "operationId": _parameter("The operation id (the id asyncQuery returned)."),
}


def _event_headers(tag: str) -> dict[str, Any]:
    """The headers schema of one event type: its CloudEvents attributes and the message id."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes (binary content mode), JetStream's message id.",
        "required": [
            SPEC_VERSION_HEADER,
            ID_HEADER,
            SOURCE_HEADER,
            TYPE_HEADER,
            TIME_HEADER,
            SUBJECT_HEADER,
            CONTENT_TYPE_HEADER,
        ],
        "properties": {
            SPEC_VERSION_HEADER: {"const": SPEC_VERSION},
            ID_HEADER: {
                "type": "string",
                "description": "The event id (the body's event_id): deduplicate on it.",
            },
            SOURCE_HEADER: {"const": SOURCES[tag], "description": "Which service stated it."},
            TYPE_HEADER: {"const": TYPES[tag]},
            TIME_HEADER: {
                "type": "string",
                "format": "date-time",
                "description": "When it happened (RFC 3339): the body's occurred_at.",
            },
            SUBJECT_HEADER: {
                "type": "string",
                "description": "The operation id: the body's operation_id.",
            },
            CONTENT_TYPE_HEADER: {"const": CONTENT_TYPE},
            "Nats-Msg-Id": {
                "type": "string",
                "description": "JetStream's deduplication id for the write (not the event id).",
            },
        },
    }


_DEAD_LETTER_HEADERS: Final = {
    "type": "object",
    "required": [
        dead_letters.REASON_HEADER,
        dead_letters.SERVICE_HEADER,
        dead_letters.STREAM_HEADER,
        dead_letters.SEQUENCE_HEADER,
        dead_letters.SUBJECT_HEADER,
        dead_letters.SIZE_HEADER,
        dead_letters.DELIVERIES_HEADER,
    ],
    "properties": {
        dead_letters.REASON_HEADER: {
            "type": "string",
            "maxLength": dead_letters.MAX_REASON_CHARS,
            "description": "Why the service could not use the message.",
        },
        dead_letters.SERVICE_HEADER: {"enum": ["executor", "projector"]},
        dead_letters.STREAM_HEADER: {
            "type": "string",
            "description": "The stream the original is stored in.",
        },
        dead_letters.SEQUENCE_HEADER: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The original's sequence in that stream.",
        },
        dead_letters.SUBJECT_HEADER: {
            "type": "string",
            "maxLength": dead_letters.MAX_SUBJECT_CHARS,
            "description": "The subject the original was stored on.",
        },
        dead_letters.SIZE_HEADER: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The original's size in bytes.",
        },
        dead_letters.DELIVERIES_HEADER: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "How often the service had received it when it gave up.",
        },
    },
}

_DEAD_LETTER_BODY: Final = {
    "type": "string",
    "maxLength": dead_letters.EXCERPT_BYTES,
    "description": (
        f"The first {dead_letters.EXCERPT_BYTES} bytes of the original message, as they were "
        "(not necessarily JSON, nor whole); the original stays in its stream."
    ),
}


def _channel_id(tag: str) -> str:
    return "operation" + "".join(part.capitalize() for part in tag.split("_"))


def generated_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as plain data."""
    _, event_schemas = msgspec.json.schema_components(EVENT_TYPES, ref_template=_SCHEMAS + "{name}")
    schemas: dict[str, Any] = dict(event_schemas)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_class in EVENT_TYPES:
        name = event_class.__name__
        tag = str(event_class.__struct_config__.tag)
        schemas[f"{name}Headers"] = _event_headers(tag)
        messages[name] = {
            "name": name,
            "title": name,
            "summary": _WHAT_EACH_SAYS[tag],
            "contentType": CONTENT_TYPE,
            "headers": {"$ref": f"{_SCHEMAS}{name}Headers"},
            "payload": {"$ref": f"{_SCHEMAS}{name}"},
            "correlationId": {
                "description": "The operation id ties an operation's events together.",
                "location": f"$message.header#/{SUBJECT_HEADER}",
            },
        }
        channel = _channel_id(tag)
        channels[channel] = {
            "address": f"{SUBJECT_ROOT}.{{tenant}}.{{operationId}}.{tag}",
            "title": f"{tag} events",
            "description": _WHAT_EACH_SAYS[tag],
            "parameters": {name: {"$ref": _PARAMETERS + name} for name in _EVENT_PARAMETERS},
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish{name}"] = {
            "action": "send",
            "title": f"asyncgate publishes {name}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
    schemas["DeadLetterHeaders"] = _DEAD_LETTER_HEADERS
    schemas["DeadLetterBody"] = _DEAD_LETTER_BODY
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "A message a service could not use, set aside with the reason.",
        "contentType": "application/octet-stream",
        "headers": {"$ref": f"{_SCHEMAS}DeadLetterHeaders"},
        "payload": {"$ref": f"{_SCHEMAS}DeadLetterBody"},
    }
    channels["deadLetters"] = {
        "address": f"{DEAD_LETTER_ROOT}.{{service}}",
        "title": "dead letters",
        "description": (
            "Messages a service set aside instead of using (stream ASYNCGATE_DEAD_LETTERS): a "
            "reference to the original, not a copy. For operators more than for consumers."
        ),
        "parameters": {
            "service": _parameter("The service that set it aside.", enum=["executor", "projector"])
        },
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
    }
    operations["publishDeadLetter"] = {
        "action": "send",
        "title": "asyncgate sets a message aside",
        "channel": {"$ref": "#/channels/deadLetters"},
        "messages": [{"$ref": "#/channels/deadLetters/messages/DeadLetter"}],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "asyncgate events",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "nats": {
                "host": "{host}",
                "protocol": "nats",
                "description": "asyncgate's NATS (ASYNCGATE_NATS_URL); log in as `consumer`.",
                "variables": {
                    "host": {
                        "default": "localhost:4222",
                        "description": "host:port of the NATS server",
                    }
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "parameters": _EVENT_PARAMETERS,
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes text of several lines as a literal block, and repeats itself rather than use
    anchors, so the file reads as it will be shown."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def generated_text() -> str:
    """The document as the YAML text that is checked in."""
    header = "# Generated by `python -m contracts.asyncapi` (./dev asyncapi); do not edit.\n"
    body = yaml.dump(
        generated_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return header + body


def main() -> None:
    """Write contracts/asyncapi.yaml."""
    DOCUMENT_PATH.write_text(generated_text(), encoding="utf-8")
    print(f"wrote {DOCUMENT_PATH}")  # noqa: T201 (a command's report)


if __name__ == "__main__":
    main()
