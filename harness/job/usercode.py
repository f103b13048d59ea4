"""The user's own code, resolved in one place: a "package.module:function" reference (a model
builder or a data function) imported from the job file's directory, the working directory or
PYTHONPATH without leaving `sys.path` changed; a builder's calling convention; a KerasTuner
hypermodel's `hp` (KerasTuner's own `HyperParameters`), the hyperparameters it declares and those
a build leaves active; and the digest of the builder's source file. Nothing here imports Keras
(importing the user's module, or keras_tuner, may)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
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


EXPLORE_BUILDS = 64  # builds a hypermodel's space discovery may make (`declared`)


def hyperparameters(values: Mapping[str, Any]) -> Any:
    """KerasTuner's own `HyperParameters` answering `values` as given (as KerasTuner answers a
    trial's values, even one outside the declared range); a name without a value: its default."""
    import keras_tuner as kt
    hp = kt.HyperParameters()
    hp.values.update(values)
    return hp


def active_names(fn: Callable[..., Any], values: Mapping[str, Any]) -> set[str]:
    """The hyperparameters a KerasTuner hypermodel asks for, and that are active (conditions met),
    when it builds with `values`: the others were not trained, whatever their value."""
    hp = hyperparameters(values)
    fn(hp)
    return {h.name for h in hp.space if hp.is_active(h)}


def declared(fn: Callable[..., Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Every hyperparameter a KerasTuner hypermodel declares, conditional ones included, found up
    front: one build with the defaults, then builds with one value changed at a time (each
    Choice and Boolean value, each Int's bounds) until no build asks for a new name, at most
    `EXPLORE_BUILDS` builds. `fixed` (the job's model.args) are answered and never explored. A
    build that raises for a probed value is passed over; one that raises for the defaults is the
    caller's error."""
    found: dict[str, Any] = {}
    queue: list[dict[str, Any]] = [dict(fixed)]
    tried: list[dict[str, Any]] = []
    while queue and len(tried) < EXPLORE_BUILDS:
        values = queue.pop(0)
        if values in tried:
            continue
        tried.append(values)
        hp = hyperparameters(values)
        try:
            fn(hp)
        except Exception:
            if len(tried) == 1:
                raise
            continue
        for h in hp.space:
            if h.name not in found and h.name not in fixed:
                found[h.name] = h
                queue += [{**hp.values, h.name: v} for v in _probes(h)]
    return found


def _probes(h: Any) -> list[Any]:
    """Values of a hyperparameter that may change what else a hypermodel asks for."""
    kind = type(h).__name__
    if kind == "Choice":
        return list(h.values)
    if kind == "Boolean":
        return [True, False]
    if kind == "Int":
        return [h.max_value, h.min_value]
    return []
