"""Fetch the files strawberry's GraphiQL page loads into ``assets/`` (``./dev graphiql``).

For each ``<package>@<version>/<file>`` the page names, ``npm pack`` fetches the package from
the npm registry; the file is kept only if its SHA-384 is the one in the page's integrity
attribute (so the copy is byte for byte what the CDN serves), gzipped without a timestamp
(the same bytes every run), with the package's licence beside it. A maintainer's tool: it
needs npm and the registry; the edge itself never runs it.
"""

import base64
import gzip
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

from services.edge.graphiql import ASSETS_DIR, remote_asset_paths


def package_and_file(path: str) -> tuple[str, str]:
    """``("@scope/name@1.0.0", "dist/x.js")`` from ``"@scope/name@1.0.0/dist/x.js"``."""
    parts = path.split("/")
    cut = 2 if path.startswith("@") else 1
    return "/".join(parts[:cut]), "/".join(parts[cut:])


def integrity_by_path(page: str) -> dict[str, str]:
    """The page's integrity attributes (``sha384-...``), by asset path."""
    flattened = " ".join(page.split())
    found: dict[str, str] = {}
    for path in remote_asset_paths(page):
        match = re.search(rf'{re.escape(path)}"\s+integrity="(sha384-[^"]+)"', flattened)
        if match is None:
            raise SystemExit(f"{path} has no sha384 integrity attribute in strawberry's page")
        found[path] = match[1]
    return found


def _unpacked(package: str, into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed: install the Debian package npm")
    subprocess.run(  # noqa: S603  # npm from PATH, packages named by strawberry's own page
        [npm, "pack", "--silent", "--pack-destination", into, package],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (tarball,) = into.glob("*.tgz")
    target = into / "unpacked"
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    tarball.unlink()
    return target / "package"


def vendor() -> None:
    """Refill ``assets/`` with exactly the files the page names."""
    page = get_graphql_ide_html()
    wanted = integrity_by_path(page)
    shutil.rmtree(ASSETS_DIR, ignore_errors=True)
    for path, integrity in wanted.items():
        package, file = package_and_file(path)
        with tempfile.TemporaryDirectory() as scratch:
            unpacked = _unpacked(package, Path(scratch))
            content = (unpacked / file).read_bytes()
            digest = base64.b64encode(hashlib.sha384(content).digest()).decode()
            if f"sha384-{digest}" != integrity:
                raise SystemExit(f"{path}: the npm package's file is not the one the page names")
            target = ASSETS_DIR / f"{path}.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(content, compresslevel=9, mtime=0))
            for licence in unpacked.glob("LICEN[CS]E*"):
                shutil.copyfile(licence, ASSETS_DIR / package / licence.name)
        sys.stderr.write(f"{path}: {len(content)} bytes\n")


if __name__ == "__main__":
    vendor()
