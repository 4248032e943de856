"""Reading the YAML files a user writes (rules, profiles, vendor codes, prices, rule tests, scenarios), strictly.

A hand-written file is small, plain and has each key once. So a file larger than `MAX_FILE_BYTES`, one that is
not UTF-8, one that uses anchors and aliases (an alias bomb takes minutes and gigabytes), one nested deeper than
`MAX_DEPTH` (a RecursionError) or one with a key twice in a mapping (the later silently won) is refused with a
`yaml.YAMLError` that names the line, so every caller's existing "not valid YAML" message reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32


class InputFileError(yaml.YAMLError):
    """A file that cannot be read as text at all (too large, not UTF-8)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = None

    def __str__(self) -> str:
        return self.problem


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a nesting limit and no repeated keys."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            raise ComposerError(None, None, "anchors and aliases (*name) are not allowed here; write the value out",
                                self._mark())
        nested = self.check_event(CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    self._mark())
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1

    def _mark(self) -> Any:
        return self.peek_event().start_mark  # type: ignore[no-untyped-call]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        check_unique_keys(node)
        return super().construct_mapping(node, deep=deep)


def check_unique_keys(node: MappingNode) -> None:
    """Each scalar key once, compared as written (with its resolved tag), before anything is constructed."""
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode):
            continue  # a list or mapping as a key: the caller's schema rejects it
        key = (key_node.tag, key_node.value)
        if key in seen:
            raise ConstructorError(None, None, f"key {key_node.value!r} appears twice in one mapping (the first "
                                   "would be silently lost)", key_node.start_mark)
        seen.add(key)


def read_text(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The file's text; InputFileError for one too large or not UTF-8 (OSError, e.g. missing, passes)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InputFileError(f"{size:,} bytes; a hand-written file is at most {max_bytes:,}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not UTF-8 text (byte {exc.start})") from None


def load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)


def load_file(path: Path) -> Any:
    """read_text + load: any problem of the file as text or as YAML is a yaml.YAMLError."""
    return load(read_text(path))
