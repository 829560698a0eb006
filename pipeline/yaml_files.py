"""YAML files that people edit by hand (the feed list, topic profiles): read as a mapping, with the
line of every node, so that each problem is reported as ``file:line: field: what is wrong``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from pipeline.errors import ConfigError

PathKey = tuple[str | int, ...]
Problem = tuple[PathKey, int, str]  # where in the data, line, message


def read_yaml_mapping(path: Path, *, what: str, expected: str) -> tuple[dict[str, Any], LineIndex]:
    """A YAML file that must hold a mapping, with the line of every node for error messages.

    Raises:
        ConfigError: missing, unreadable, not YAML, or not a mapping; the message names file and line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the {what}: {err}") from None
    root, data = _parse_yaml(text, path)
    lines = LineIndex(root)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{path}:{lines.line(())}: the {what} must be {expected}, not {kind}")
    return data, lines


def _parse_yaml(text: str, path: Path) -> tuple[Any, Any]:
    """The node tree (which knows its lines) and the plain data built from that same tree."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        _check_duplicate_keys(root, path)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = err.problem or err.context or "syntax error"
        if err.problem and err.context:
            context_line = f" at line {err.context_mark.line + 1}" if err.context_mark else ""
            reason = f"{err.problem} ({err.context}{context_line})"
        raise ConfigError(f"{where}: not valid YAML: {reason}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    finally:
        loader.dispose()
    return root, data


def _check_duplicate_keys(root: Any, path: Path) -> None:
    # PyYAML keeps the last of two equal keys without a word; a second "url:" in one feed would
    # silently replace the first.
    stack = [root] if root is not None else []
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in visited:  # an alias: already checked where its anchor stands
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        raise ConfigError(
                            f"{path}:{line}: key {key.value!r} repeated (first at line {seen[key.value]})"
                        )
                    seen[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


class LineIndex:
    """1-based line of every mapping key and value, sequence item, by data path."""

    def __init__(self, root: Any) -> None:
        self._values: dict[PathKey, int] = {}
        self._keys: dict[PathKey, int] = {}
        self._visited: set[int] = set()
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: Any, at: PathKey) -> None:
        self._values[at] = node.start_mark.line + 1
        # Aliases share nodes, even recursively ("&a [*a]"): index each node once, under its anchor.
        if id(node) in self._visited:
            return
        self._visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    self._keys[(*at, key.value)] = key.start_mark.line + 1
                    self._walk(value, (*at, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*at, index))

    def line(self, at: PathKey) -> int:
        """The line of the value at ``at``, or of its nearest ancestor that exists in the file."""
        for end in range(len(at), -1, -1):
            if at[:end] in self._values:
                return self._values[at[:end]]
        return 1

    def key_line(self, at: PathKey) -> int:
        return self._keys.get(at) or self.line(at)


def schema_errors(err: Any, path: Path, lines: LineIndex) -> Iterator[Problem]:
    """One ``jsonschema`` error as problems with their lines (an unknown key points at the key itself)."""
    at: PathKey = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        # Point at each unknown key itself rather than at the start of its feed.
        known = sorted(err.schema.get("properties", {}))
        unknown = [key for key in err.instance if key not in known]
        for key in unknown:
            where = (*at, str(key))
            line = lines.key_line(where)
            yield where, line, f"{path}:{line}: {dotted(where)}: unknown field (allowed: {', '.join(known)})"
        if unknown:
            return
    message = err.message
    if len(message) > 300:  # a type error on a whole list would repeat the list
        message = message[:300] + "…"
    if err.validator == "type" and isinstance(err.instance, bool) and err.validator_value == "string":
        message += " (YAML reads yes/no/on/off unquoted as booleans: quote the value)"
    line = lines.line(at)
    yield at, line, f"{path}:{line}: {dotted(at)}: {message}"


def dotted(at: PathKey) -> str:
    """``feeds[3].url`` for the data path ``("feeds", 3, "url")``."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def sort_key(at: PathKey) -> tuple[tuple[int, int, str], ...]:
    """Orders data paths so that problems are reported in file order."""
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in at)
