"""Training engines: `fit` (the reference), `exact` (fit's bits, one traced model reused) and
`vectorized` (many seeds of any Keras model as one JAX program). `resolve` decides once, in the
driver, which engine runs on this backend; `make_engine` builds it in a worker."""

from __future__ import annotations

import importlib.util

from harness.training.engines.base import Engine, notice
from harness.training.engines.exact import ExactEngine
from harness.training.engines.fit import FitEngine
from harness.training.engines.vectorized import VectorizedEngine
from harness.training.models import BuilderInfo

ENGINE_CLASSES: dict[str, type[Engine]] = {"fit": FitEngine, "exact": ExactEngine, "vectorized": VectorizedEngine}

__all__ = ["ENGINE_CLASSES", "Engine", "ExactEngine", "FitEngine", "VectorizedEngine", "make_engine", "resolve"]


def resolve(engine: str, backend: str, xla: bool) -> str:
    """The engine that actually runs (its record label; `+xla` when compiled by XLA), with a
    one-line notice when the requested one cannot."""
    if engine == "fit":
        return "fit"
    if engine == "vectorized":
        if importlib.util.find_spec("jax") is None:
            notice("engine vectorized trains under jax, which is not installed; using exact")
            engine = "exact"
        else:  # its workers start under jax whatever the harness's backend
            if xla:
                notice("training.xla has no effect on engine vectorized (jax compiles it with XLA)")
            return "vectorized"
    if backend == "jax":
        if xla:
            notice("training.xla has no effect under jax (which always compiles with XLA)")
        return "exact"
    if backend != "tensorflow":
        notice(f"engine {engine} needs the TensorFlow or jax backend (running {backend}); using fit")
        return "fit"
    return engine + ("+xla" if xla else "")


def make_engine(label: str, builder: BuilderInfo, loss: str, backend: str, report: tuple[str, ...] = ()) -> Engine:
    """The engine a `resolve` label names (`exact+xla`: exact compiled by XLA); `report`: metrics
    only the compiled model reports."""
    name, _, xla = label.partition("+")
    return ENGINE_CLASSES[name](builder, loss, backend, xla == "xla", report)

