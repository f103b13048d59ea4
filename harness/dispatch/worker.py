"""A worker: takes batches of units, has their kind run them, appends one record per unit to its
shard.

Records are written (and fsynced) before the unit is reported done, so a crash loses at most
the unit in flight, which a rerun redoes. Training errors become failed records, never crashes.
"""

from __future__ import annotations

import traceback
from datetime import datetime, timezone

from harness.job.matrix import Unit
from harness.job.spec import JobSpec
from harness.store.records import Record, failed, new_record
from harness.store.store import Store
from harness.training import determinism
from harness.training.metrics import TrainingFailed
from harness.training.trainer import Trainer
from harness.units import KINDS, Context, Outcome


class Worker:
    """Trains units of one job and records them in its own shard."""

    def __init__(self, spec: JobSpec, store: Store, shard_name: str, engine: str) -> None:
        """`engine`: the label the driver resolved (`harness.training.engines.resolve`)."""
        self.spec = spec
        self.trainer = Trainer(spec, engine)
        self.writer = store.writer(shard_name)
        self.context = Context(spec, self.trainer, store.subdir("logs", create=True))
        self.name = shard_name
        self.env = determinism.fingerprint()
        self._mode: str | None = None

    def run_batch(self, units: list[Unit], attempts: dict[str, int]) -> list[tuple[str, str, int]]:
        """Run a batch (`units.batches`: one kind and mode; one configuration where the kind trains
        together); returns (unit id, status, trainings) per unit, after its record is on disk."""
        if not units:
            return []
        self._set_mode(units[0].mode)
        outcomes = KINDS[units[0].kind].run(self.context, units)
        return [self._write(u, attempts.get(u.id, 1), o) for u, o in zip(units, outcomes, strict=True)]

    def _set_mode(self, mode: str) -> None:
        """Op determinism for the batch's mode (a no-op when already in it)."""
        if mode == self._mode:
            return
        on = determinism.set_ops(mode)
        if on != (mode == "on"):  # the executors start a process per mode where needed
            raise RuntimeError(f"op determinism {mode!r} cannot be set in this process "
                               f"(backend {determinism.backend_name()} fixes it at start)")
        self.env["op_determinism"] = on
        self._mode = mode

    def _write(self, unit: Unit, attempt: int, outcome: Outcome | Exception) -> tuple[str, str, int]:
        """A unit's record from its outcome (or failure), appended to the shard."""
        record = new_record(self.spec, unit, attempt, self.trainer.engine.label, self.name)
        if isinstance(outcome, Exception):
            fail(record, outcome)
            record["env"] = self.env
            trainings = 0
        else:
            record.update(Record(status="ok", result=outcome.result, seeds=outcome.seeds,
                                 test_size=outcome.test_size, timings=outcome.timings, env={**self.env, **outcome.env}))
            if outcome.noise_seeding is not None:
                record["noise_seeding"] = outcome.noise_seeding
            trainings = outcome.trainings
        record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.writer.append(record)
        return record["unit"], record["status"], trainings

    def close(self) -> None:
        self.writer.close()


def fail(record: Record, exc: BaseException) -> None:
    """A failed record: the error in one line, and a traceback where it is a bug (not a diverged
    training)."""
    failed(record, f"{type(exc).__name__}: {exc}",
           None if isinstance(exc, TrainingFailed) else "".join(traceback.format_exception(exc, limit=8)))
