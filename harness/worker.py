"""A worker: takes batches of units, trains them, appends one record per unit to its shard.

Records are written (and fsynced) before the unit is reported done, so a crash loses at most
the unit in flight, which a rerun redoes. Training errors become failed records, never crashes.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime, timezone
from typing import Any

from harness import determinism
from harness.matrix import FRESH, Unit, training_seeds
from harness.search import make_search
from harness.spec import JobSpec
from harness.store import Store
from harness.trainer import Trainer, TrainingFailed


class Worker:
    """Trains units of one job and records them in its own shard."""

    def __init__(self, spec: JobSpec, store: Store, shard_name: str) -> None:
        self.spec = spec
        self.trainer = Trainer(spec)
        self.writer = store.writer(shard_name)
        self.name = shard_name
        self.env = determinism.fingerprint()
        self._mode: str | None = None

    def run_batch(self, units: list[Unit], attempts: dict[str, int]) -> list[tuple[str, str, int]]:
        """Train each unit of a batch (one configuration and determinism mode); returns (unit id,
        status, trainings) per unit, after its record is on disk. Under engine vectorized the
        batch's evaluation units train together."""
        out = []
        if units and units[0].mode != self._mode:
            on = determinism.set_ops(units[0].mode)
            if on != (units[0].mode == "on"):  # the executors start a process per mode where needed
                raise RuntimeError(f"op determinism {units[0].mode!r} cannot be set in this process "
                                   f"(backend {determinism.backend_name()} fixes it at start)")
            self.env["op_determinism"] = on
            self._mode = units[0].mode
        evals = [u for u in units if u.kind == "eval"]
        if evals and self.trainer.engine.startswith("vectorized"):
            out += self._run_vectorized(evals, attempts)
            units = [u for u in units if u.kind != "eval"]
        for unit in units:
            start = time.perf_counter()
            record = self._record(unit, attempts)
            try:
                if unit.kind == "eval":
                    seeds = training_seeds(self.spec, unit.levels)
                    record["seeds"] = seeds
                    train_start = time.perf_counter()
                    record["result"] = {"metrics": self.trainer.train(unit.config or {}, seeds).as_dict()}
                    record["train_s"] = round(time.perf_counter() - train_start, 4)
                    trainings = 1
                else:
                    record["seeds"] = training_seeds(self.spec, unit.levels)
                    record["seeds"]["bo"] = unit.seeds(self.spec.root_seed)["bo"]
                    record["result"] = self._study(unit)
                    trainings = len(record["result"]["trials"]) * self.spec.objective_runs \
                        + len(record["result"]["reeval"])
                record["status"] = "ok"
            except Exception as exc:  # recorded, retried by the executor, never fatal
                self._fail(record, exc)
                trainings = 0
            out.append(self._write(record, time.perf_counter() - start, trainings))
        return out

    def _record(self, unit: Unit, attempts: dict[str, int]) -> dict[str, Any]:
        """A unit's record before its result; `engine` is the engine that trains it."""
        return {"unit": unit.id, "index": unit.index, "kind": unit.kind, "mode": unit.mode,
                "levels": unit.levels, "config": unit.config, "attempt": attempts.get(unit.id, 1),
                "engine": self.trainer.engine, "job": self.spec.name,
                "spec": self.spec.digest(), "worker": self.name}

    @staticmethod
    def _fail(record: dict[str, Any], exc: BaseException) -> None:
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, TrainingFailed):
            record["traceback"] = "".join(traceback.format_exception(exc, limit=8))

    def _write(self, record: dict[str, Any], wall: float, trainings: int) -> tuple[str, str, int]:
        record["wall_s"] = round(wall, 4)
        record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["env"] = self.env
        self.writer.append(record)
        return record["unit"], record["status"], trainings

    def _run_vectorized(self, units: list[Unit], attempts: dict[str, int]) -> list[tuple[str, str, int]]:
        """Evaluation units of one configuration as one vectorised training; each unit's record
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
        spec, s = self.spec, self.spec.search
        search = make_search(s, unit.seeds(spec.root_seed)["bo"])
        trials = []
        for _ in range(s.max_evals):
            config = search.ask()
            runs = []
            try:
                for j in range(spec.objective_runs):
                    m = self.trainer.train(config, training_seeds(spec, unit.levels, run=j))
                    runs.append({"accuracy": m.accuracy, "loss": m.loss})
            except TrainingFailed as exc:
                search.tell(None)
                trials.append({"config": config, "score": None, "runs": runs, "error": str(exc)})
                continue
            score = sum(r["accuracy"] for r in runs) / len(runs)
            search.tell(-score)
            trials.append({"config": config, "score": score, "runs": runs})
        scored = [t for t in trials if t["score"] is not None]
        if not scored:
            raise TrainingFailed("every trial of the chain failed")
        best = max(scored, key=lambda t: t["score"])  # first of equals, as hyperopt's argmin
        reeval = []
        for i in range(s.reevaluate_init):
            for o in range(s.reevaluate_order):
                seeds = training_seeds(spec, {**unit.levels, "init": i, "order": o}, purpose=FRESH)
                reeval.append({"levels": {"init": i, "order": o}, "seeds": seeds,
                               "metrics": self.trainer.train(best["config"], seeds).as_dict()})
        return {"trials": trials, "chosen": best["config"], "best_score": best["score"], "reeval": reeval}

    def close(self) -> None:
        self.writer.close()
