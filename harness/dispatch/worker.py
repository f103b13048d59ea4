"""A worker: takes batches of units, trains them, appends one record per unit to its shard.

Records are written (and fsynced) before the unit is reported done, so a crash loses at most
the unit in flight, which a rerun redoes. Training errors become failed records, never crashes.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime, timezone
from typing import Any

from harness.job.matrix import Unit, training_seeds
from harness.job.seeds import FRESH
from harness.job.spec import JobSpec
from harness.search import make_search
from harness.store.records import Record, failed, new_record
from harness.store.store import Store
from harness.training import determinism
from harness.training.metrics import TrainingFailed
from harness.training.trainer import Trainer


class Worker:
    """Trains units of one job and records them in its own shard."""

    def __init__(self, spec: JobSpec, store: Store, shard_name: str, engine: str) -> None:
        """`engine`: the label the driver resolved (`harness.training.engines.resolve`)."""
        self.spec = spec
        self.trainer = Trainer(spec, engine)
        self.writer = store.writer(shard_name)
        self.name = shard_name
        self.env = determinism.fingerprint()
        self._mode: str | None = None

    def run_batch(self, units: list[Unit], attempts: dict[str, int]) -> list[tuple[str, str, int]]:
        """Train each unit of a batch (one configuration and determinism mode); returns (unit id,
        status, trainings) per unit, after its record is on disk. Under a batched engine
        (vectorized) the batch's evaluation units train together."""
        out = []
        if units:
            self._set_mode(units[0].mode)
        evals = [u for u in units if u.kind == "eval"]
        if evals and self.trainer.engine.batched:
            out += self._run_together(evals, attempts)
            units = [u for u in units if u.kind != "eval"]
        for unit in units:
            out.append(self._run_one(unit, attempts))
        return out

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

    def _run_one(self, unit: Unit, attempts: dict[str, int]) -> tuple[str, str, int]:
        """One unit: an evaluation's training or a study's chain; its record, ok or failed."""
        start = time.perf_counter()
        record = self._record(unit, attempts)
        trainings = 0
        try:
            record["seeds"] = training_seeds(self.spec, unit.levels)
            record["test_size"] = self.trainer.test_size(record["seeds"]["split"])
            if unit.kind == "eval":
                train_start = time.perf_counter()
                record["result"] = {"metrics": self.trainer.train(unit.config or {}, record["seeds"]).as_dict()}
                record["train_s"] = round(time.perf_counter() - train_start, 4)
                trainings = 1
            else:
                record["seeds"]["bo"] = unit.seeds(self.spec.root_seed)["bo"]
                record["result"] = self._study(unit)
                trainings = sum(len(t["runs"]) for t in record["result"]["trials"]) + len(record["result"]["reeval"])
            record["status"] = "ok"
        except Exception as exc:  # recorded, retried by the executor, never fatal
            self._fail(record, exc)
            trainings = 0
        return self._write(record, time.perf_counter() - start, trainings)

    def _record(self, unit: Unit, attempts: dict[str, int]) -> Record:
        """A unit's record before its result; `engine` is the engine that trains it."""
        return new_record(self.spec, unit, attempts.get(unit.id, 1), self.trainer.engine.label, self.name)

    def _note_seeding(self, record: Record) -> None:
        """What the noise stream reached in the model (models the harness did not write)."""
        if self.trainer.seeding is not None:
            record["seeding"] = self.trainer.seeding

    @staticmethod
    def _fail(record: Record, exc: BaseException) -> None:
        failed(record, f"{type(exc).__name__}: {exc}",
               None if isinstance(exc, TrainingFailed) else "".join(traceback.format_exception(exc, limit=8)))

    def _write(self, record: Record, wall: float, trainings: int) -> tuple[str, str, int]:
        self._note_seeding(record)
        record["wall_s"] = round(wall, 4)
        record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["env"] = self.env
        self.writer.append(record)
        return record["unit"], record["status"], trainings

    def _run_together(self, units: list[Unit], attempts: dict[str, int]) -> list[tuple[str, str, int]]:
        """Evaluation units of one configuration as one batched training; each unit's record
        gets its own result or failure and an equal share of the wall time."""
        start = time.perf_counter()
        records = [self._record(u, attempts) for u in units]
        seeds = [training_seeds(self.spec, u.levels) for u in units]
        try:
            train_start = time.perf_counter()
            results: list[Any] = self.trainer.train_many(units[0].config or {}, seeds)
            train_s = (time.perf_counter() - train_start) / len(units)
        except Exception as exc:  # the whole run failed: every unit records it
            results, train_s = [exc] * len(units), 0.0
        wall = (time.perf_counter() - start) / len(units)
        out = []
        for record, s, result in zip(records, seeds, results, strict=True):
            record["seeds"] = s
            record["test_size"] = self.trainer.test_size(s["split"])
            if isinstance(result, Exception):
                self._fail(record, result)
            else:
                record["result"] = {"metrics": result.as_dict()}
                record["status"] = "ok"
                record["train_s"] = round(train_s, 4)
            out.append(self._write(record, wall, int(record["status"] == "ok")))
        return out

    def _study(self, unit: Unit) -> dict[str, Any]:
        """One optimiser chain, then its chosen configuration on fresh seeds."""
        search = make_search(self.spec.search, unit.seeds(self.spec.root_seed)["bo"])
        trials = [self._trial(search, unit) for _ in range(self.spec.search.max_evals)]
        scored = [t for t in trials if t["score"] is not None]
        if not scored:
            raise TrainingFailed("every trial of the chain failed")
        pick = max if self.spec.objective_direction == "max" else min
        best = pick(scored, key=lambda t: t["score"])  # first of equals, as hyperopt's argmin
        return {"trials": trials, "chosen": best["config"], "best_score": best["score"],
                "reeval": self._reevaluate(unit, best["config"]), "library_seed": search.library_seed}

    def _trial(self, search: Any, unit: Unit) -> dict[str, Any]:
        """One trial: the optimiser's proposal trained `objective_runs` times, the mean objective
        (on validation where there is one) told."""
        config = search.ask()
        runs = []
        try:
            for j in range(self.spec.objective_runs):
                seeds = training_seeds(self.spec, unit.levels, run=j)
                m = self.trainer.train(config, seeds)
                runs.append({**{k: v for k, v in m.as_dict().items() if k != "per_class_accuracy"}, "seeds": seeds})
        except TrainingFailed as exc:
            search.tell(None)
            return {"config": config, "score": None, "runs": runs, "error": str(exc)}
        metric = self.spec.objective_metric
        score = sum((r.get("validation") or r)[metric] for r in runs) / len(runs)
        search.tell(-score if self.spec.objective_direction == "max" else score)
        return {"config": config, "score": score, "runs": runs}

    def _reevaluate(self, unit: Unit, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The chosen configuration on fresh init x order seeds."""
        s, out = self.spec.search, []
        for i in range(s.reevaluate_init):
            for o in range(s.reevaluate_order):
                seeds = training_seeds(self.spec, {**unit.levels, "init": i, "order": o}, purpose=FRESH)
                out.append({"levels": {"init": i, "order": o}, "seeds": seeds,
                            "metrics": self.trainer.train(config, seeds).as_dict()})
        return out

    def close(self) -> None:
        self.writer.close()
