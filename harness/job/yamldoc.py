"""YAML with line numbers: the raw document of a job file and typed access to its sections.

Every message names the file, the key path and the YAML line, so a user can find the mistake.
A job file is bounded before it is trusted: its size, its nodes, the nodes its aliases
expand to and its nesting depth; a duplicate key is refused naming both lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from harness.errors import UserError

# A job file is a few kilobytes and ~100 nodes. PyYAML is pure Python: measured here (2 cores at a load
# of 11), refusing at 100,000 nodes took 7.9 s in a fresh process, at 20,000 nodes 1.4 s.
MAX_BYTES = 262_144     # 256 KiB
MAX_NODES = 20_000      # YAML nodes as written, and as expanded through aliases (an alias bomb)
MAX_DEPTH = 32          # nesting levels (the real jobs use 4); deeper input would overflow the stack


def decode(path: str, blob: bytes) -> str:
    """A job file's bytes as text: UTF-8, at most MAX_BYTES; one line naming the byte otherwise."""
    if len(blob) > MAX_BYTES:
        raise UserError(f"the file is over {MAX_BYTES:,} bytes: too large for a job file", file=path)
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = blob[:exc.start].count(b"\n") + 1
        raise UserError(f"not UTF-8 text: undecodable byte 0x{blob[exc.start]:02x} at offset {exc.start}",
                        file=path, line=line) from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts and bounds nodes and depth while composing, and refuses duplicate
    keys while constructing (PyYAML lets the last one win silently)."""

    def __init__(self, text: str, path: str) -> None:
        super().__init__(text)
        self.path, self.depth, self.nodes = path, 0, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UserError(f"more than {MAX_NODES:,} YAML nodes: too large for a job file", file=self.path,
                            line=self.peek_event().start_mark.line + 1)
        if self.depth >= MAX_DEPTH:
            raise UserError(f"nested more than {MAX_DEPTH} levels deep", file=self.path,
                            line=self.peek_event().start_mark.line + 1)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden by the keys beside it: YAML's merge rule
            key, line = self.construct_object(key_node, deep=False), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise UserError(f"duplicate key {key!r}: first on line {seen[key]}, again on line {line}",
                                    file=self.path, line=line)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: SafeConstructor refuses it with its own message
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # a 5,000-digit integer, a 13th month
            reason = str(exc).splitlines()[0].split("; use ")[0]
            raise UserError(f"invalid YAML value {str(node.value)[:40]!r}: {reason}",
                            file=self.path, line=node.start_mark.line + 1) from None


def _expanded(node: yaml.Node, path: str, depth: int, on_path: set[int],
              memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """Nodes under `node` with every alias expanded, and their height (memoised per node, so an
    alias bomb is measured in linear time); refuses a node that contains itself and expansions past
    the bounds. `depth` is the node's own level."""
    line = node.start_mark.line + 1
    if id(node) in on_path:
        raise UserError("an alias refers to a node that contains it (a recursive structure)", file=path, line=line)
    if id(node) not in memo:
        if depth > MAX_DEPTH:
            raise UserError(f"nested more than {MAX_DEPTH} levels deep once aliases are expanded",
                            file=path, line=line)
        on_path.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total, height = 1, 1
        for child in children:
            count, below = _expanded(child, path, depth + 1, on_path, memo)
            total, height = total + count, max(height, below + 1)
            if total > MAX_NODES:
                raise UserError(f"aliases expand to more than {MAX_NODES:,} YAML nodes (an alias bomb?)",
                                file=path, line=line)
        on_path.discard(id(node))
        memo[id(node)] = (total, height)
    total, height = memo[id(node)]
    if depth + height - 1 > MAX_DEPTH:
        raise UserError(f"nested more than {MAX_DEPTH} levels deep once aliases are expanded", file=path, line=line)
    return total, height


def _load(path: str, text: str) -> tuple[yaml.Node | None, Any]:
    """The composed node and the constructed data of one bounded YAML document."""
    loader = None
    try:
        loader = _BoundedLoader(text, path)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None, None
        _expanded(node, path, 1, set(), {})
        return node, loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        if isinstance(exc, yaml.reader.ReaderError):
            line = text[:exc.position].count("\n") + 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"invalid YAML: {problem}", file=path, line=line) from None
    finally:
        if loader is not None:
            loader.dispose()


class Doc:
    """Raw YAML data plus the line of every key path, for messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines: dict[tuple[str, ...], int] = {}
        node, self.data = _load(path, text)
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, prefix: tuple[str, ...]) -> None:
        self.lines.setdefault(prefix, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = prefix + (str(k.value),)
                self.lines[key] = k.start_mark.line + 1
                self._index(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._index(v, prefix + (str(i),))

    def error(self, keypath: tuple[str, ...], message: str) -> UserError:
        line = None
        for n in range(len(keypath), -1, -1):
            if keypath[:n] in self.lines:
                line = self.lines[keypath[:n]]
                break
        return UserError(message, file=self.path, key=".".join(keypath) or None, line=line)


class Section:
    """Typed access to one mapping of the job file; refuses unknown keys."""

    def __init__(self, doc: Doc, keypath: tuple[str, ...], value: Any, allowed: tuple[str, ...],
                 required: tuple[str, ...] = ()) -> None:
        self.doc, self.keypath = doc, keypath
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise doc.error(keypath, f"expected a mapping with keys {', '.join(allowed)}, "
                                     f"got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                raise doc.error(keypath + (str(k),),
                                f"unknown key; valid keys here: {', '.join(allowed)}")
        for k in required:
            if k not in value:
                raise doc.error(keypath, f"missing required key '{k}'")
        self.value: Mapping[str, Any] = value

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, default: Any = None) -> Any:
        return self.value.get(key, default)

    def err(self, key: str, message: str) -> UserError:
        return self.doc.error(self.keypath + (key,), message)

    def section(self, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> Section:
        return Section(self.doc, self.keypath + (key,), self.value.get(key), allowed, required)

    def integer(self, key: str, default: Any = ..., low: int | None = None, high: int | None = None,
                allow_none: bool = False) -> Any:
        v = self._get(key, default)
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"expected an integer, got {_short(v)}")
        if low is not None and v < low:
            raise self.err(key, f"expected an integer >= {low}, got {_short(v)}")
        if high is not None and v > high:
            raise self.err(key, f"expected an integer <= {high:,}, got {_short(v)}")
        return v

    def number(self, key: str, default: Any = ..., check: Callable[[float], bool] | None = None,
               expect: str = "a number") -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not finite(v):
            raise self.err(key, f"expected {expect}, got {_short(v)}")
        if check is not None and not check(float(v)):
            raise self.err(key, f"expected {expect}, got {_short(v)}")
        return float(v)

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        v = self._get(key, default)
        if v not in options:
            raise self.err(key, f"expected one of {', '.join(options)}, got {_short(v)}")
        return str(v)

    def string(self, key: str, default: Any = ..., allow_none: bool = False) -> Any:
        v = self._get(key, default)
        if v is None and allow_none:
            return None
        if not isinstance(v, str) or not v:
            raise self.err(key, f"expected a non-empty string, got {_short(v)}")
        return v

    def _get(self, key: str, default: Any) -> Any:
        if key in self.value:
            return self.value[key]
        if default is ...:
            raise self.doc.error(self.keypath, f"missing required key '{key}'")
        return default


def finite(v: float) -> bool:
    """A finite number; an integer too large for a float is not."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _short(v: Any, limit: int = 60) -> str:
    """`repr(v)` cut to one short line (a value may be a 5,000-digit number or a whole mapping)."""
    try:
        text = repr(v)
    except ValueError:  # an integer over Python's digit limit for str()
        text = f"an integer of {v.bit_length()} bits"
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 3] + "..."
