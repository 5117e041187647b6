"""Error codes: one enum in contracts/, README's table equal to it, no code spelled elsewhere."""

import ast
import re
from pathlib import Path

from contracts.errors import ErrorCode

ROOT = Path(__file__).parents[2]


def readme_error_codes() -> list[str]:
    """Every code named in the first column of README's "Error codes" table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Error codes", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [code for row in rows for code in re.findall(r"`([A-Z_]+)`", row.split("|")[1])]


def test_the_readme_table_lists_exactly_the_enum() -> None:
    listed = readme_error_codes()

    assert sorted(listed) == sorted(code.value for code in ErrorCode)


def test_services_spell_no_code_outside_the_enum() -> None:
    codes = {code.value for code in ErrorCode}
    spelled = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        spelled += [
            f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in codes
        ]

    assert spelled == [], "use contracts.errors.ErrorCode instead of these strings"
