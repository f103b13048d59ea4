"""Training engines: `fit` (the reference), `exact` (fit's bits, one traced model reused) and
`vectorized` (many seeds as one stacked model). `resolve` decides once, in the driver, which
engine runs on this backend and for this model; `make_engine` builds it in a worker."""

from __future__ import annotations

import os

from harness.training.engines.base import Engine, notice
from harness.training.engines.exact import ExactEngine
from harness.training.engines.fit import FitEngine
from harness.training.engines.vectorized import VectorizedEngine
from harness.training.models import BuilderInfo

ENGINE_CLASSES: dict[str, type[Engine]] = {"fit": FitEngine, "exact": ExactEngine, "vectorized": VectorizedEngine}

__all__ = ["ENGINE_CLASSES", "Engine", "ExactEngine", "FitEngine", "VectorizedEngine", "make_engine", "resolve"]


def resolve(engine: str, backend: str, builder: str, xla: bool, task: str = "classification") -> str:
    """The engine that actually runs (its record label; `+xla` when compiled by XLA), with a
    one-line notice when the requested one cannot."""
    if engine == "fit":
        return "fit"
    if backend == "jax" and engine in ("exact", "vectorized"):
        if engine == "vectorized":
            notice("engine vectorized needs the TensorFlow backend (running jax); using exact")
        if xla:
            notice("training.xla has no effect under jax (which always compiles with XLA)")
        return "exact"
    if backend != "tensorflow":
        notice(f"engine {engine} needs the TensorFlow or jax backend (running {backend}); using fit")
        return "fit"
    if engine == "vectorized" and (builder != "dense" or task != "classification"):
        notice(f"engine vectorized handles model builder dense on a classification only (got {builder}, "
               f"{task}); using exact")
        engine = "exact"
    if engine == "vectorized" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        notice("engine vectorized needs oneDNN (TF_ENABLE_ONEDNN_OPTS=0 is set); using exact")
        engine = "exact"
    return engine + ("+xla" if xla else "")


def make_engine(label: str, builder: BuilderInfo, loss: str, backend: str, report: tuple[str, ...] = ()) -> Engine:
    """The engine a `resolve` label names (`exact+xla`: exact compiled by XLA); `report`: metrics
    only the compiled model reports."""
    name, _, xla = label.partition("+")
    return ENGINE_CLASSES[name](builder, loss, backend, xla == "xla", report)

