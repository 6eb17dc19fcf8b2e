"""Documents to one config mapping: parse each file's YAML, merge by top-level key.

A config may be one file or several (a directory, a ConfigMap with a key per
concern, an etcd prefix with a key per concern). Each document holds whole
top-level sections (`models:` in one, `tools:` in another); a section set by two
documents is a problem, never a silent override, because which one wins would
depend on file names.

Every problem is reported in one pass, as `name: reason` (with the line where
YAML knows it), so a broken version can be fixed at once. The YAML is parsed with
limits, because a config may come from a shared store: an alias bomb (a few
hundred bytes that expand to billions of nodes when validated), a self-referencing
alias, nesting deep enough to exhaust the stack, and duplicate keys (YAML keeps
the last one silently, so a typo'd second `models:` would drop the first) are
problems, not crashes or surprises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.sources.base import Documents, label

#: Nesting of YAML collections, at most. Configs nest a few levels (tool schemas
#: a few more); the parser recurses per level.
MAX_DEPTH = 64
#: Nodes a document may expand to when every alias is followed, at most: the size
#: validation will walk. Far above any real config, far below an alias bomb.
MAX_EXPANDED_NODES = 200_000

MERGE_TAG = "tag:yaml.org,2002:merge"
LOOP = "an alias refers to a node that contains it"


class _Limited(ComposerError):
    """A limit of this module, raised where YAML would raise its own errors."""


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with the limits above, and duplicate keys collected."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        #: (line of the duplicate, key, line of the first occurrence)
        self.duplicates: list[tuple[int, str, int]] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Limited(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        node: Node | None = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            key = (key_node.tag, key_node.value)
            if key in first:
                self.duplicates.append((line, key_node.value, first[key]))
            else:
                first[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _check_expansion(root: Node) -> None:
    """Refuse a node graph whose aliases loop or expand past MAX_EXPANDED_NODES.

    Aliases make the composed document a graph that shares nodes; what validation
    (and anything that walks the data) sees is the tree with every alias expanded.
    Counted bottom-up with each shared node counted once per reference, without
    expanding anything."""
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative depth-first walk: (node, children already pushed?)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(expanded[id(child)] for child in _children(node))
            if total > MAX_EXPANDED_NODES:
                raise _Limited(
                    None,
                    None,
                    f"expands to more than {MAX_EXPANDED_NODES} nodes when its aliases "
                    "are followed",
                    node.start_mark,
                )
            expanded[key] = total
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise _Limited(None, None, LOOP, node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            child_key = id(child)
            if child_key in on_path:
                raise _Limited(None, None, LOOP, child.start_mark)
            if child_key not in expanded:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse(name: str, text: str) -> tuple[Any, list[str]]:
    """One document's YAML, or None and its problems (`name: line N: reason`)."""
    loader: BoundedLoader | None = None
    try:
        loader = BoundedLoader(text)
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        return None, [f"{name}: {_where(exc)}{_reason(exc)}"]
    except yaml.reader.ReaderError as exc:  # characters YAML does not allow
        return None, [
            f"{name}: character {exc.position + 1}: YAML error: {exc.reason} "
            f"(#x{exc.character:04x})"
            if isinstance(exc.character, int)
            else f"{name}: YAML error: {exc.reason}"
        ]
    except yaml.YAMLError as exc:
        return None, [f"{name}: YAML error: {' '.join(str(exc).split())}"]
    except RecursionError:
        return None, [f"{name}: YAML error: nested too deeply to parse"]
    finally:
        if loader is not None:
            loader.dispose()
    problems = [
        f"{name}: line {line}: duplicate key {key!r} (first set on line {seen}; "
        "YAML would silently keep only the last)"
        for line, key, seen in loader.duplicates
    ]
    return data, problems


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "


def _reason(exc: yaml.MarkedYAMLError) -> str:
    if isinstance(exc, _Limited):
        return f"refused: {exc.problem}"
    parts = [part for part in (exc.context, exc.problem) if part]
    return "YAML syntax error: " + ("; ".join(parts) or "invalid YAML")


def merge(documents: Documents | Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The documents' YAML merged by top-level key into one config mapping, and every
    problem found: the source's own (`Documents.problems`), YAML errors with file
    name and line, a document that is empty or not a mapping, a duplicate key, a
    top-level key set by two documents. The mapping holds what could be merged; a
    non-empty problem list means the version must be refused."""
    if isinstance(documents, Documents):
        files: Mapping[str, str] = documents.files
        problems = list(documents.problems)
    else:
        files, problems = documents, []
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for key in sorted(files):
        name = label(key)
        data, found = parse(name, files[key])
        problems += found
        if found and data is None:
            continue
        if data is None:
            # An empty file is far more often a file caught mid-write (truncated,
            # not yet filled) than a deliberate config; serving it would silently
            # apply the defaults.
            problems.append(f"{name}: (top level): the document is empty (write {{}} if meant)")
            continue
        if not isinstance(data, dict):
            problems.append(
                f"{name}: (top level): must be a YAML mapping of config sections, not {_kind(data)}"
            )
            continue
        for section, value in data.items():
            if not isinstance(section, str):
                problems.append(f"{name}: {section!r}: a config section name must be a string")
                continue
            if section in owner:
                problems.append(f"{name}: {label(section)}: already set by {owner[section]}")
                continue
            owner[section] = name
            merged[section] = value
    return merged, problems


def _kind(data: object) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "a string"
    return type(data).__name__
