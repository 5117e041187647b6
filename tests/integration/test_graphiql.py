"""GraphiQL works with no internet: the page, its scripts and styles all come from the edge, and
a query run in it shows its result. In a headless Chromium that reaches nothing but this
machine, against a real uvicorn edge and a real nats-server."""

import gzip
import json
from pathlib import Path

import pytest
from strawberry.http.ides import get_graphql_ide_html

from services.common.settings import Settings
from services.edge.graphiql import ASSETS_DIR, STATIC_PREFIX, remote_asset_paths
from tests.stack import serving_edge
from tests.support.browser import offline_chromium

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBMIT = 'mutation { asyncQuery(query: "{ __typename }") { operationId status } }'
QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror')"
RESPONSE = "document.querySelector('.graphiql-response .CodeMirror')"


async def test_graphiql_runs_a_query_with_no_internet(settings: Settings, tmp_path: Path) -> None:
    async with (
        serving_edge(settings) as client,
        offline_chromium(tmp_path / "chromium") as page,
    ):
        edge = str(client.base_url).rstrip("/")
        await page.call("Page.navigate", url=f"{edge}/graphql")
        await page.wait_for(f"!!{QUERY_EDITOR}")
        await page.evaluate(f"{QUERY_EDITOR}.CodeMirror.setValue({json.dumps(SUBMIT)})")
        await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
        shown = await page.wait_for(
            f"{RESPONSE} && {RESPONSE}.CodeMirror.getValue().includes('operationId')"
            f" && {RESPONSE}.CodeMirror.getValue()"
        )
        found = await client.post(
            "/graphql",
            json={
                "query": "query($id: String!) { asyncResult(id: $id) { operationId } }",
                "variables": {"id": json.loads(shown)["data"]["asyncQuery"]["operationId"]},
            },
        )

    assert json.loads(shown)["data"]["asyncQuery"]["status"] == "QUEUED"
    assert found.json()["data"]["asyncResult"] is not None, "GraphiQL's operation was not queued"
    assert page.console_errors == []
    elsewhere = [url for url in page.requested if not url.startswith((edge, "data:"))]
    assert elsewhere == []
    assert f"{edge}/graphiql/static/graphiql@3.8.3/graphiql.min.js" in page.requested


def test_every_asset_the_page_names_is_served_from_the_edge() -> None:
    page = get_graphql_ide_html()

    missing = [
        path for path in remote_asset_paths(page) if not (ASSETS_DIR / f"{path}.gz").exists()
    ]

    assert remote_asset_paths(page), "strawberry's page no longer loads anything from a CDN?"
    assert missing == [], "run ./dev graphiql to fetch what strawberry's page now names"


async def test_assets_are_cacheable_with_their_media_types(settings: Settings) -> None:
    script = "/graphiql/static/react@18.2.0/umd/react.production.min.js"
    stylesheet = "/graphiql/static/graphiql@3.8.3/graphiql.min.css"
    async with serving_edge(settings) as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
        plain = await client.get(script, headers={"accept-encoding": "identity"})
        gzipped = await client.get(stylesheet, headers={"accept-encoding": "gzip"})
        again = await client.get(script, headers={"if-none-match": plain.headers["etag"]})
        unknown = await client.get("/graphiql/static/react@18.2.0/nothing.js")
        outside = await client.get("/graphiql/static/..%2F__init__.py")

    assert 'src="/graphiql/static/react@18.2.0/umd/react.production.min.js"' in page.text
    assert "https://" not in "".join(
        line for line in page.text.splitlines() if "src=" in line or "href=" in line
    )
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "immutable" in plain.headers.get("cache-control", "")
    assert "content-encoding" not in plain.headers
    copy = ASSETS_DIR / f"{script.removeprefix(STATIC_PREFIX)}.gz"
    assert plain.content == gzip.decompress(copy.read_bytes())
    assert gzipped.headers["content-type"] == "text/css; charset=utf-8"
    assert gzipped.headers["content-encoding"] == "gzip"
    assert b".graphiql-container" in gzipped.content  # httpx decoded it
    assert again.status_code == 304
    for refused in (unknown, outside):
        assert refused.status_code == 404
        assert refused.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
