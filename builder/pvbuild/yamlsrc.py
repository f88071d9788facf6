"""YAML loading that remembers where every value came from (file, line, column), for error messages.

PyYAML's composer gives each node a start mark; we build plain Python data and, beside it, a map from the
path of every value (("disk", "partitions", 0, "size")) to its 1-based line and column. Duplicate keys, which
PyYAML silently accepts (the last one wins), are errors here: in a recipe they are always a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]
MAX_RECIPE_BYTES = 1024 * 1024
MAX_NODES = 100_000  # aliases can make a small file expand exponentially ("billion laughs")
MAX_DEPTH = 64


@dataclass(frozen=True)
class Where:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Located:
    """The loaded data and where each path in it was written."""

    data: Any
    file: str
    marks: dict[Path_, Where] = field(default_factory=dict)

    def where(self, path: Path_) -> Where:
        """The closest written location for `path` (a missing field points at its parent mapping)."""
        p = tuple(path)
        while p:
            if p in self.marks:
                return self.marks[p]
            p = p[:-1]
        return self.marks.get((), Where(self.file, 1, 1))


class YamlError(Exception):
    def __init__(self, where: Where, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _construct(node: yaml.Node, path: Path_, file: str, marks: dict[Path_, Where]) -> Any:
    where = Where(file, node.start_mark.line + 1, node.start_mark.column + 1)
    if len(marks) > MAX_NODES:
        raise YamlError(where, f"more than {MAX_NODES} values (aliases expanding?): not a recipe")
    if len(path) > MAX_DEPTH:
        raise YamlError(where, f"nested more than {MAX_DEPTH} levels deep: not a recipe")
    marks[path] = where
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(Where(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                                "a key must be a plain word")
            key = str(key_node.value)
            if key in out:
                raise YamlError(Where(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                                f"`{key}` is given twice in the same mapping; keep one")
            out[key] = _construct(value_node, (*path, key), file, marks)
            # The key's own line is the best place to point at for this field.
            marks[(*path, key)] = Where(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), file, marks) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node)


_RESOLVER_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.ScalarNode) -> Any:
    """A scalar as safe_load would build it (int, float, bool, null, timestamp-as-string, str)."""
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value  # keep dates as written
    return _RESOLVER_LOADER.construct_object(node, deep=True)


def load(path: str | Path) -> Located:
    """Load a YAML file into plain data plus the location of every path."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise YamlError(Where(str(p), 1, 1), f"cannot read the file: {e.strerror}") from e
    if len(raw) > MAX_RECIPE_BYTES:
        raise YamlError(Where(str(p), 1, 1), f"the file is larger than {MAX_RECIPE_BYTES} bytes")
    return loads(raw.decode("utf-8", "replace"), str(p))


def loads(text: str, file: str = "<recipe>") -> Located:
    marks: dict[Path_, Where] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Where(file, mark.line + 1, mark.column + 1) if mark else Where(file, 1, 1)
        raise YamlError(where, f"not valid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise YamlError(Where(file, 1, 1), f"not valid YAML: {e}") from e
    if node is None:
        return Located({}, file, {(): Where(file, 1, 1)})
    data = _construct(node, (), file, marks)
    return Located(data, file, marks)
