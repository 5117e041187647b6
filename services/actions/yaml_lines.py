"""Reading YAML so that errors can name lines: every mapping records where it and its keys
start, and where each scalar value starts and how it is written (a ``|`` block, say)."""

from typing import Any, Final

import yaml

LINE: Final = "__line__"
KEY_LINES: Final = "__key_lines__"
VALUE_MARKS: Final = "__value_marks__"
MARKERS: Final = frozenset({LINE, KEY_LINES, VALUE_MARKS})


class LineLoader(yaml.SafeLoader):
    """Records the line of every mapping and key, and the mark of every scalar value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        mapping[KEY_LINES] = {
            key.value: key.start_mark.line + 1
            for key, _ in node.value
            if isinstance(key, yaml.ScalarNode)
        }
        mapping[VALUE_MARKS] = {
            key.value: (value.start_mark.line + 1, value.style)
            for key, value in node.value
            if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode)
        }
        return mapping


def line_of(mapping: dict[str, Any], key: str) -> int:
    """The line of ``key`` in ``mapping`` (of the mapping itself if the key is absent)."""
    return int(mapping.get(KEY_LINES, {}).get(key, mapping.get(LINE, 1)))


def text_line(mapping: dict[str, Any], key: str, line_in_text: int) -> int:
    """The file line of line ``line_in_text`` (from 1) of the string value at ``key``: a
    ``|`` block starts on the line after its indicator; other styles fold or escape their
    lines, so only their first line is known."""
    line, style = mapping.get(VALUE_MARKS, {}).get(key, (line_of(mapping, key), None))
    if style == "|":
        return int(line) + line_in_text
    return int(line)


def fields(mapping: dict[str, Any]) -> dict[str, Any]:
    """The mapping as written, without the recorded lines."""
    return {key: value for key, value in mapping.items() if key not in MARKERS}
