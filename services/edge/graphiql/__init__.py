"""GraphiQL that works without internet access.

strawberry's GraphiQL page loads React, GraphiQL and their styles from a CDN, so with no
internet it stays at "Loading...". The edge serves the same page with every such address
pointing at its own copies (``assets/``: the files of the npm packages the page names, gzipped,
byte-identical to the CDN's, which the page's integrity attributes check in the browser), under
``/graphiql/static/<package>@<version>/<file>``. ``python -m services.edge.graphiql.vendor``
fetches them again when strawberry's page names other versions.
"""

import functools
import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

ASSETS_DIR: Final = Path(__file__).parent / "assets"
STATIC_PREFIX: Final = "/graphiql/static/"

# A script or stylesheet the page loads from another host: src="https://host/<package path>".
_REMOTE_ASSET = re.compile(r'(?P<attribute>src|href)="https?://[^/"]+/(?P<path>[^"]+)"')
_MEDIA_TYPES: Final = {".js": "text/javascript", ".css": "text/css"}
# The paths name exact versions, so a copy never changes: browsers may keep it for a year.
_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"


def remote_asset_paths(page: str) -> list[str]:
    """The ``<package>@<version>/<file>`` paths of the scripts and stylesheets ``page`` loads
    from another host, in page order."""
    return [match["path"] for match in _REMOTE_ASSET.finditer(page)]


def offline_page(page: str) -> str:
    """``page`` with every script and stylesheet loaded from the edge's own copies."""
    return _REMOTE_ASSET.sub(
        lambda match: f'{match["attribute"]}="{STATIC_PREFIX}{match["path"]}"', page
    )


@dataclass(frozen=True, kw_only=True)
class _Asset:
    gzipped: bytes
    media_type: str
    etag: str


@functools.cache
def _assets() -> dict[str, _Asset]:
    """Every copy, by its path under STATIC_PREFIX (read once, on the first asset request)."""
    assets = {}
    for file in ASSETS_DIR.rglob("*.gz"):
        path = file.relative_to(ASSETS_DIR).as_posix().removesuffix(".gz")
        media_type = _MEDIA_TYPES.get(Path(path).suffix)
        if media_type is not None:
            gzipped = file.read_bytes()
            etag = f'"{hashlib.sha256(gzipped).hexdigest()[:32]}"'
            assets[path] = _Asset(gzipped=gzipped, media_type=media_type, etag=etag)
    return assets


async def serve_asset(request: Request) -> Response:
    """One of GraphiQL's scripts or stylesheets: gzipped to clients that take gzip (every
    browser), plain to others; 304 when the client has it; 404 for anything else."""
    asset = _assets().get(request.path_params["path"])
    if asset is None:
        raise HTTPException(404, "no such GraphiQL asset")
    headers = {"cache-control": _CACHE_CONTROL, "etag": asset.etag, "vary": "accept-encoding"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["content-encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(gzip.decompress(asset.gzipped), media_type=asset.media_type, headers=headers)
