# asyncgate's recipes. Run them through ./dev (it prepares .venv first): ./dev <recipe>

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

[doc("list the recipes")]
default:
    @just --list --unsorted

# ./dev runs `up`, `edge`, `executor`, `projector` and `callbacks` without just (see ./dev), so that Ctrl-C
# after a clean stop is not reported as an error.
[doc("run NATS, the edge, an executor, the projector (and callbacks, with a signing key); Ctrl-C stops them")]
[group("run")]
up:
    asyncgate up

[doc("the operator's commands: ./dev ops list, show ID, tail, replay [--verify], dead-letters ...")]
[group("run")]
ops *args:
    asyncgate ops {{args}}

[doc("the GraphQL endpoint alone, against ASYNCGATE_NATS_URL")]
[group("run")]
edge:
    asyncgate edge

[doc("an executor alone, against ASYNCGATE_NATS_URL")]
[group("run")]
executor:
    asyncgate executor

[doc("the projector alone, against ASYNCGATE_NATS_URL")]
[group("run")]
projector:
    asyncgate projector

[doc("the callbacks service alone, against ASYNCGATE_NATS_URL (needs ASYNCGATE_CALLBACK_SIGNING_KEY)")]
[group("run")]
callbacks:
    asyncgate callbacks

[doc("lint, type-check and run every test")]
[group("check")]
test *args: lint typecheck
    pytest {{args}}

[doc("only the fast unit tests (no NATS)")]
[group("check")]
unit *args:
    pytest tests/unit {{args}}

[doc("ruff: lint and check formatting")]
[group("check")]
lint:
    ruff check .
    ruff format --check .

[doc("mypy, strict")]
[group("check")]
typecheck:
    mypy

[doc("format and fix what ruff can")]
[group("edit")]
fmt:
    ruff format .
    ruff check --fix .

[doc("regenerate the JSON Schemas under contracts/schemas from the event and view types")]
[group("edit")]
schemas:
    python -m contracts.jsonschema

[doc("regenerate contracts/asyncapi.yaml, the AsyncAPI document of every subject asyncgate publishes")]
[group("edit")]
asyncapi:
    python -m contracts.asyncapi

[doc("fetch the GraphiQL assets strawberry's page names into services/edge/graphiql/assets (needs npm)")]
[group("edit")]
graphiql:
    python -m services.edge.graphiql.vendor

[doc("refresh constraints.txt from what .venv has installed")]
[group("edit")]
pin:
    pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

[doc("the benchmark: asyncgate vs a Celery + Redis peer; writes docs/performance.md (--smoke: short)")]
[group("check")]
bench *args:
    python -m bench {{args}}

[doc("time ops replay and replay --verify on 100,000 events seeded into a fresh nats-server")]
[group("check")]
bench-replay *args:
    python -m bench.replay {{args}}

[doc("delete the local stack's data (every stored operation and result); refused while it runs")]
[group("run")]
clean:
    asyncgate clean
