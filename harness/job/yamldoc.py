"""YAML with line numbers: the raw document of a job file and typed access to its sections.

Every message names the file, the key path and the YAML line, so a user can find the mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from harness.errors import UserError


class Doc:
    """Raw YAML data plus the line of every key path, for messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines: dict[tuple[str, ...], int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"invalid YAML: {problem}", file=path, line=line) from None
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

    def integer(self, key: str, default: Any = ..., low: int | None = None,
                allow_none: bool = False) -> Any:
        v = self._get(key, default)
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"expected an integer, got {v!r}")
        if low is not None and v < low:
            raise self.err(key, f"expected an integer >= {low}, got {v}")
        return v

    def number(self, key: str, default: Any = ..., check: Callable[[float], bool] | None = None,
               expect: str = "a number") -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.err(key, f"expected {expect}, got {v!r}")
        if check is not None and not check(float(v)):
            raise self.err(key, f"expected {expect}, got {v!r}")
        return float(v)

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        v = self._get(key, default)
        if v not in options:
            raise self.err(key, f"expected one of {', '.join(options)}, got {v!r}")
        return str(v)

    def string(self, key: str, default: Any = ..., allow_none: bool = False) -> Any:
        v = self._get(key, default)
        if v is None and allow_none:
            return None
        if not isinstance(v, str) or not v:
            raise self.err(key, f"expected a non-empty string, got {v!r}")
        return v

    def _get(self, key: str, default: Any) -> Any:
        if key in self.value:
            return self.value[key]
        if default is ...:
            raise self.doc.error(self.keypath, f"missing required key '{key}'")
        return default
