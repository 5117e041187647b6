"""Generate the JSON Schemas under contracts/schemas from the msgspec types.

``python -m contracts.jsonschema`` (or ``./dev schemas``) rewrites them; a test fails when the
checked-in files differ from what the types generate.
"""

import json
from pathlib import Path
from typing import Any

import msgspec

from contracts.events import OperationEvent
from contracts.view import OperationView

SCHEMA_DIR = Path(__file__).parent / "schemas"


def generated_schemas() -> dict[str, str]:
    """File name to JSON text for every published schema."""
    documents: dict[str, Any] = {
        "operation-event.schema.json": msgspec.json.schema(OperationEvent),
        "operation-view.schema.json": msgspec.json.schema(OperationView),
    }
    return {
        name: json.dumps(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", **document},
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
        )
        + "\n"
        for name, document in documents.items()
    }


def main() -> None:
    """Write every schema file."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in generated_schemas().items():
        (SCHEMA_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_DIR / name}")  # noqa: T201 (a command's report)


if __name__ == "__main__":
    main()
