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
        """Train each unit; returns (unit id, status, trainings) per unit, after its record is on disk."""
        out = []
        for unit in units:
            if unit.mode != self._mode:
                self.env["op_determinism"] = determinism.set_ops(unit.mode)
                self._mode = unit.mode
            start = time.perf_counter()
            record: dict[str, Any] = {
                "unit": unit.id, "index": unit.index, "kind": unit.kind, "mode": unit.mode,
                "levels": unit.levels, "config": unit.config, "attempt": attempts.get(unit.id, 1),
                "engine": self.spec.training.engine, "job": self.spec.name,
                "spec": self.spec.digest(), "worker": self.name}
            try:
                if unit.kind == "eval":
                    seeds = training_seeds(self.spec, unit.levels)
                    record["seeds"] = seeds
                    record["result"] = {"metrics": self.trainer.train(unit.config or {}, seeds).as_dict()}
                    trainings = 1
                else:
                    record["seeds"] = training_seeds(self.spec, unit.levels)
                    record["seeds"]["bo"] = unit.seeds(self.spec.root_seed)["bo"]
                    record["result"] = self._study(unit)
                    trainings = len(record["result"]["trials"]) * self.spec.objective_runs \
                        + len(record["result"]["reeval"])
                record["status"] = "ok"
            except Exception as exc:  # recorded, retried by the executor, never fatal
                record["status"] = "failed"
                record["error"] = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, TrainingFailed):
                    record["traceback"] = traceback.format_exc(limit=8)
                trainings = 0
            record["wall_s"] = round(time.perf_counter() - start, 4)
            record["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record["env"] = self.env
            self.writer.append(record)
            out.append((unit.id, record["status"], trainings))
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
