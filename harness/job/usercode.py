"""The user's own code, resolved in one place: a "package.module:function" reference (a model
builder or a data function) imported from the job file's directory, the working directory or
PYTHONPATH without leaving `sys.path` changed; a builder's calling convention; KerasTuner's `hp`
(an `HP` here: keras-tuner is not needed), which answers hp.Int / Float / Choice / Boolean / Fixed
and records each call; and the digest of the builder's source file. Nothing here imports Keras
(importing the user's module may)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, Where

REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
HARNESS, KERASTUNER = "harness", "kerastuner"


def is_ref(text: str) -> bool:
    """Whether a builder name is a "package.module:function" reference."""
    return bool(REF.match(text))


def import_function(ref: str, search_path: tuple[str, ...], where: Where,
                    what: str = "model builder") -> Callable[..., Any]:
    """The function `ref` names, its module imported from `search_path` (the job file's directory,
    the working directory) or PYTHONPATH; `sys.path` is as it was afterwards. A failure is one
    UserError naming `what`, the module and the error."""
    module, _, name = ref.partition(":")
    _quiet_backend_start()
    try:
        with _path_first(search_path):
            mod = importlib.import_module(module)
    except Exception as exc:  # the user's module: any error it raises is theirs
        raise UserError(f"cannot import module '{module}' of {what} {ref} "
                        f"({type(exc).__name__}: {exc}); searched {', '.join(search_path)} and PYTHONPATH",
                        **where) from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise UserError(f"module '{module}' ({getattr(mod, '__file__', '?')}) has no function '{name}'", **where)
    return fn


@contextlib.contextmanager
def _path_first(dirs: tuple[str, ...]) -> Iterator[None]:
    """`dirs` at the front of `sys.path` while a user's module is imported, then taken out again
    (a module that imports more of its own package at call time finds it in `sys.modules`)."""
    added = [d for d in dirs if d not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


def _quiet_backend_start() -> None:
    """Start TensorFlow (which the user's module will import) with its C++ start-up lines (oneDNN,
    CUDA probes), which no log level silences, sent to /dev/null: a driver importing a user's
    builder would otherwise print them across the terminal. Workers log them instead."""
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def source_digest(ref: str) -> str | None:
    """sha256 of the builder's module file (already imported): editing the model moves the store."""
    mod = sys.modules.get(ref.partition(":")[0])
    path = getattr(mod, "__file__", None)
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def convention(fn: Callable[..., Any], ref: str, where: Where) -> str:
    """`harness` for build(hp, input_shape, n_classes), `kerastuner` for build_model(hp)."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in params if p.default is p.empty]
    if len(required) == 3 or [p.name for p in params[:3]] == ["hp", "input_shape", "n_classes"]:
        return HARNESS
    if len(required) == 1 or (len(params) == 1 and params[0].name == "hp"):
        return KERASTUNER
    raise UserError(f"model builder {ref}{inspect.signature(fn)} has the wrong signature: expected "
                    f"build(hp, input_shape, n_classes) or KerasTuner's build_model(hp)", **where)


@dataclass
class HP:
    """KerasTuner's `hp` for one configuration: each hp.* call answers the configuration's value
    for its name (its default when the configuration has none) and is recorded."""

    values: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def _answer(self, name: str, kind: str, args: dict[str, Any], default: Any) -> Any:
        self.calls.setdefault(name, (kind, args))
        return self.values.get(name, default)

    def Int(self, name: str, min_value: int, max_value: int, step: int | None = None,  # noqa: N802
            sampling: str = "linear", default: int | None = None, **_: Any) -> int:
        v = self._answer(name, "int", dict(min_value=min_value, max_value=max_value, step=step,
                                           sampling=sampling), min_value if default is None else default)
        return int(min(max(int(round(float(v))), min_value), max_value))

    def Float(self, name: str, min_value: float, max_value: float, step: float | None = None,  # noqa: N802
              sampling: str = "linear", default: float | None = None, **_: Any) -> float:
        v = self._answer(name, "float", dict(min_value=min_value, max_value=max_value, step=step,
                                             sampling=sampling), min_value if default is None else default)
        return float(min(max(float(v), min_value), max_value))

    def Choice(self, name: str, values: list[Any], ordered: bool | None = None,  # noqa: N802
               default: Any = None, **_: Any) -> Any:
        return self._answer(name, "choice", dict(values=list(values)), values[0] if default is None else default)

    def Boolean(self, name: str, default: bool = False, **_: Any) -> bool:  # noqa: N802
        return bool(self._answer(name, "boolean", {}, default))

    def Fixed(self, name: str, value: Any, **_: Any) -> Any:  # noqa: N802
        self.calls.setdefault(name, ("fixed", dict(value=value)))
        return value

    def get(self, name: str) -> Any:
        return self.values[name]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @contextlib.contextmanager
    def conditional_scope(self, *_: Any, **__: Any) -> Iterator[None]:
        yield
