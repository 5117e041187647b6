"""contracts/asyncapi.yaml: fresh, a valid AsyncAPI 3.0 document, and complete.

Validity is checked with jsonschema against the official AsyncAPI 3.0.0 JSON Schema, vendored in
tests/support/asyncapi (see its NOTICE): no package on PyPI validates AsyncAPI 3 offline.
"""

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from contracts.asyncapi import DOCUMENT_PATH, generated_document, generated_text
from contracts.events import OperationEvent

ROOT = Path(__file__).parents[2]
ASYNCAPI_SCHEMA = ROOT / "tests" / "support" / "asyncapi" / "asyncapi-3.0.0.schema.json"
PERMISSIONS = ROOT / "infra" / "nats" / "permissions.conf"
# What the services may publish that is asyncgate's own state, not a published contract.
INTERNAL = {"listing.count.>"}
# The ops user's requeue puts a dead letter back on the event subject it was taken from, so it
# publishes nothing but the event channels; its permission is the wildcard over them.
REQUEUED = {"ops.events.>"}


def checked_in() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
    return document


def problems(document: dict[str, Any]) -> list[str]:
    """Every way ``document`` breaks the AsyncAPI 3.0.0 JSON Schema."""
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [error.message for error in validator.iter_errors(document)]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its local ``$ref`` points to."""
    while "$ref" in node:
        found: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            found = found[part]
        node = found
    return node


def service_publish_subjects() -> set[str]:
    """The subjects outside JetStream's and KV's API that any service may publish to, as
    infra/nats/permissions.conf allows them."""
    text = PERMISSIONS.read_text(encoding="utf-8")
    subjects: set[str] = set()
    for block in re.findall(r"publish = \[(.*?)\n    \]", text, flags=re.DOTALL):
        for line in block.splitlines():
            code = line.split("#", 1)[0]
            subjects |= {s for s in re.findall(r'"([^"]*)"', code) if not s.startswith("$")}
    return subjects


def channel_subjects(document: dict[str, Any]) -> set[str]:
    """Each channel's address as a subject filter (a parameter is one token: ``*``)."""
    return {re.sub(r"\{[^}]+\}", "*", c["address"]) for c in document["channels"].values()}


def matches(subject: str, pattern: str) -> bool:
    """Whether NATS subject (or filter) ``subject`` falls within filter ``pattern``."""
    tokens, wanted = subject.split("."), pattern.split(".")
    if wanted[-1] == ">":
        return len(tokens) >= len(wanted) and all(
            w in ("*", t) for t, w in zip(tokens, wanted[:-1], strict=False)
        )
    return len(tokens) == len(wanted) and all(
        w in ("*", t) for t, w in zip(tokens, wanted, strict=True)
    )


def test_the_checked_in_document_is_what_the_types_generate() -> None:
    assert DOCUMENT_PATH.exists(), "contracts/asyncapi.yaml missing: run ./dev asyncapi"
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == generated_text(), (
        "contracts/asyncapi.yaml is stale: run ./dev asyncapi"
    )
    assert checked_in() == generated_document()


def test_the_document_validates_against_the_asyncapi_3_schema() -> None:
    assert checked_in()["asyncapi"] == "3.0.0"
    assert problems(checked_in()) == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("info"),
        lambda d: d["operations"]["publishOperationFailed"].update(action="emit"),
        lambda d: d["components"]["schemas"]["OperationFailed"].update(type=5),
    ],
    ids=["no info", "unknown action", "broken payload schema"],
)
def test_the_validation_catches_a_broken_document(damage: Any) -> None:
    document = copy.deepcopy(checked_in())
    damage(document)

    assert problems(document)


def test_every_subject_a_service_publishes_is_a_channel() -> None:
    published = service_publish_subjects() - INTERNAL - REQUEUED
    channels = channel_subjects(checked_in())

    assert "ops.events.*.*.completed" in published  # the permissions were read at all
    missing = {s for s in published if not any(matches(s, c) for c in channels)}
    assert missing == set()


def test_every_event_type_has_a_channel_and_every_message_a_real_payload() -> None:
    document = checked_in()
    tags = {str(kind.__struct_config__.tag) for kind in OperationEvent.__args__}
    addresses = {c["address"].rsplit(".", 1)[-1] for c in document["channels"].values()}

    assert tags <= addresses
    for channel in document["channels"].values():
        for message in channel["messages"].values():
            payload = resolve(document, resolve(document, message)["payload"])
            assert payload.get("properties") or payload.get("type") == "string"
            assert payload.get("description")
    terminal = resolve(document, {"$ref": "#/components/schemas/OperationCompleted"})
    assert {"operation_id", "response", "operation_name", "action"} <= set(terminal["properties"])
