"""`make_executor`: the executor a `harness run` asked for (both follow base.Executor)."""

from __future__ import annotations

from harness.dispatch.base import Executor
from harness.dispatch.debug import DebugExecutor
from harness.dispatch.local import LocalExecutor
from harness.job.spec import JobSpec
from harness.store.store import Store


def make_executor(name: str, spec: JobSpec, store: Store, engine: str, workers: int | None) -> Executor:
    """`engine`: the label resolved once in the driver, recorded by every worker."""
    if name == "debug":
        return DebugExecutor(spec, store, engine)
    return LocalExecutor(spec, store, engine, workers)
