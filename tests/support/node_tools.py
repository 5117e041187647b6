"""Node.js tools some tests run (pinned in tests/support/node/package.json), installed with npm
from the registry into .cache/node under the repository the first time a test needs them."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest

from tests.support.processes import REPO_ROOT

SCRIPTS: Final = Path(__file__).parent / "node"
CACHE: Final = REPO_ROOT / ".cache" / "node"


def node_or_skip() -> str:
    """The path of ``node``; the test is skipped, naming the Debian package, without it."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js (`node` on PATH): install the Debian package nodejs")
    return node


def _installed(modules: Path, wanted: dict[str, str]) -> bool:
    for name, version in wanted.items():
        manifest = modules / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            return False
    return True


def node_modules() -> Path:
    """A node_modules folder (for NODE_PATH) holding the pinned packages, installed if missing
    or at another version."""
    manifest = SCRIPTS / "package.json"
    wanted: dict[str, str] = json.loads(manifest.read_text())["dependencies"]
    modules = CACHE / "node_modules"
    if _installed(modules, wanted):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("needs npm to install the test's Node packages: install the Debian package npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manifest, CACHE / "package.json")
    # Exact pins and no transitive dependencies: no lock file to keep.
    command: list[str | Path] = [
        npm,
        "install",
        "--no-package-lock",
        "--no-audit",
        "--no-fund",
        "--prefix",
        CACHE,
    ]
    installed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if installed.returncode != 0 or not _installed(modules, wanted):
        raise RuntimeError(f"npm could not install {wanted}:\n{installed.stderr[-2000:]}")
    return modules
