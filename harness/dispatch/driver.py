"""The driver of `harness run`: resumes from the store, hands pending units to an executor in
batches, retries failed units up to `dispatch.max_retries`, and counts what happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.dispatch.base import Done, Executor
from harness.job.matrix import Unit
from harness.job.spec import JobSpec
from harness.store.claims import BatchClaims
from harness.store.store import Store, UnitState
from harness.units import batches

# the units about to run -> the per-unit callback, and a function that closes it and returns the
# trainings it counted
Progress = Callable[[list[Unit]], tuple[Done, Callable[[], int]]]


@dataclass
class RunSummary:
    """What a run left in the store for its units."""

    units: int
    done: int
    failed: list[tuple[Unit, str]] = field(default_factory=list)  # units and their last error
    trainings: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """`harness run`'s: 0 when every unit is done, 1 when any is not (failed past its retries)."""
        return 0 if self.done == self.units else 1


def pending(units: list[Unit], states: dict[str, UnitState], max_tries: int) -> list[Unit]:
    """Units without an ok record that have attempts left."""
    return [u for u in units if u.id not in states or
            (states[u.id].ok is None and len(states[u.id].failures) < max_tries)]


def run_units(spec: JobSpec, store: Store, executor: Executor, units: list[Unit], progress: Progress) -> RunSummary:
    """Run every pending unit, then retry failures, until all are done or out of attempts. Units
    that another run sharing the store is training are waited for (a pass that skipped some is
    not a retry), so the run ends with its units recorded, by whichever run trained them."""
    max_tries = spec.dispatch.max_retries + 1
    started, trained, tries = time.monotonic(), 0, 0
    claims = BatchClaims(store, spec.dispatch.lease)
    try:
        while tries < max_tries:
            states = store.states()
            todo = pending(units, states, max_tries)
            if not todo:
                break
            attempts = {u.id: len(states[u.id].failures) + 1 if u.id in states else 1 for u in todo}
            done, close = progress(todo)
            work = [(b, {u.id: attempts[u.id] for u in b}) for b in batches(todo, spec.dispatch.batch_units)]
            try:
                executor.execute(work, done, claims)
            finally:
                trained += close()
            if claims.elsewhere:
                claims.wait_elsewhere()
            else:
                tries += 1
    finally:
        claims.release_all()
    return summarise(units, store.states(), trained, time.monotonic() - started)


def summarise(units: list[Unit], states: dict[str, UnitState], trainings: int, seconds: float) -> RunSummary:
    summary = RunSummary(len(units), 0, trainings=trainings, seconds=seconds)
    for u in units:
        st = states.get(u.id)
        if st is not None and st.ok:
            summary.done += 1
        elif st is not None:
            summary.failed.append((u, str(st.failures[-1].get("error"))))
    return summary
