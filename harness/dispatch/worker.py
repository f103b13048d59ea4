"""A worker: takes batches of units, trains them, appends one record per unit to its shard.

Records are written (and fsynced) before the unit is reported done, so a crash loses at most
the unit in flight, which a rerun redoes. Training errors become failed records, never crashes.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime, timezone
from typing import Any

from harness.dispatch.fresh import run_fresh
from harness.job.algorithms import algorithm as find_algorithm
from harness.job.matrix import Unit, training_seeds
from harness.job.seeds import FRESH, derive_seed
from harness.job.spec import JobSpec
from harness.search import Search, make_search
from harness.search.base import library_version
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
        """One unit: an evaluation's training, a study's chain or a seeding-policy run; its record."""
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
            elif unit.kind == "study":
                record["seeds"]["bo"] = unit.seeds(self.spec.root_seed)["bo"]
                record["result"] = self._study(unit, record)
                trainings = sum(len(t["runs"]) for t in record["result"]["trials"]) + len(record["result"]["reeval"])
            else:
                trainings = self._article(unit, record)
            record["status"] = "ok"
        except Exception as exc:  # recorded, retried by the executor, never fatal
            self._fail(record, exc)
            trainings = 0
        return self._write(record, time.perf_counter() - start, trainings)

    def _article(self, unit: Unit, record: Record) -> int:
        """One run of the article under a seeding policy, in a fresh process; its trainings."""
        assert self.spec.seeding is not None
        policy = self.spec.seeding.policies[unit.levels["policy"]]
        record["seeds"]["bo"] = derive_seed(self.spec.root_seed, "bo", self.spec.levels["bo"][0])
        log = self.writer.path.parent.parent / "logs" / f"{unit.id}.log"
        record["result"] = run_fresh(self.spec, policy, record["seeds"]["bo"], log)
        return self.spec.seeding.trainings(policy, self.spec.search.max_evals)

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
        record["env"] = {**self.env, **record.get("env", {})}  # a study's adds its optimiser library
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

    def _study(self, unit: Unit, record: Record) -> dict[str, Any]:
        """One optimiser chain, then its chosen configuration on fresh seeds. Seconds inside the
        optimiser (construction, ask, tell) and inside training are measured apart: the record's
        `result.optimiser_s` and `train_s`."""
        clock = {"optimiser": 0.0, "train": 0.0}
        start = time.perf_counter()
        search = make_search(self.spec.search, unit.seeds(self.spec.root_seed)["bo"], unit.algorithm)
        clock["optimiser"] += time.perf_counter() - start
        trials = []
        for _ in range(self.spec.search.max_evals):
            trial = self._trial(search, unit, clock)
            if trial is None:  # the library stopped the search (no new configuration left)
                break
            trials.append(trial)
        scored = [t for t in trials if t["score"] is not None]
        if not scored:
            raise TrainingFailed("every trial of the chain failed")
        pick = max if self.spec.objective_direction == "max" else min
        best = pick(scored, key=lambda t: t["score"])  # first of equals, as hyperopt's argmin
        train_start = time.perf_counter()
        reeval = self._reevaluate(unit, best["config"])
        record["train_s"] = round(clock["train"] + time.perf_counter() - train_start, 4)
        record["env"] = {"search_library": library_version(
            find_algorithm(unit.algorithm or self.spec.search.algorithm).library)}
        return {"trials": trials, "chosen": best["config"], "best_score": best["score"], "reeval": reeval,
                "library_seed": search.library_seed, "optimiser_s": round(clock["optimiser"], 4)}

    def _trial(self, search: Search, unit: Unit, clock: dict[str, float]) -> dict[str, Any] | None:
        """One trial: the optimiser's proposal trained `unit.runs` times, the mean objective (on
        validation where there is one) told (None when the optimiser has nothing left to propose).
        `clock` accumulates seconds."""
        start = time.perf_counter()
        config = search.ask()
        clock["optimiser"] += time.perf_counter() - start
        if config is None:
            return None
        runs, error, start = [], None, time.perf_counter()
        try:
            for j in range(unit.runs or self.spec.objective_runs):
                seeds = training_seeds(self.spec, unit.levels, run=j)
                m = self.trainer.train(config, seeds)
                runs.append({**{k: v for k, v in m.as_dict().items() if k != "per_class_accuracy"}, "seeds": seeds})
        except TrainingFailed as exc:
            error = str(exc)
        clock["train"] += time.perf_counter() - start
        metric = self.spec.objective_metric
        score = None if error else sum((r.get("validation") or r)[metric] for r in runs) / len(runs)
        start = time.perf_counter()
        search.tell(None if score is None else -score if self.spec.objective_direction == "max" else score)
        clock["optimiser"] += time.perf_counter() - start
        return {"config": config, "score": score, "runs": runs, **({"error": error} if error else {})}

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
