"""Kind `study`: one optimiser chain of `max_evals` trials under one (bo, init, order) cell and
one arm (optimiser, averaging count), then its chosen configuration re-trained on fresh seeds.
The chain is sequential; chains are independent of each other."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

from harness.job.algorithms import algorithm as find_algorithm
from harness.job.algorithms import arm_algorithms, effective_options
from harness.job.matrix import Unit, fixed_levels, result_fields, training_seeds
from harness.job.seeds import FRESH
from harness.job.spec import TRAINING_FIELDS, JobSpec, stable_hash
from harness.search import Search, make_search
from harness.search.base import library_version
from harness.training.metrics import TrainingFailed
from harness.units._base import REEVAL_ROW, TRIAL_ROW, Context, Outcome, Row, UnitKind, missing, row

Clock = dict[str, float]  # seconds inside the optimiser and inside training


def study_arms(spec: JobSpec) -> list[tuple[str, int]]:
    """(optimiser, averaging count) pairs the chains run under, optimisers outermost."""
    return list(itertools.product(arm_algorithms(spec.searched), spec.runs_factor()))


class StudyKind(UnitKind):
    name = "study"

    def plan(self, spec: JobSpec, start: int) -> list[Unit]:
        """The same chain cells (bo x init x order) under each arm. With a single arm the id hashes
        what it did before the optimiser became a factor, so existing jobs keep their unit ids."""
        s, units = spec.search, list[Unit]()
        if s is None:
            return units
        base = {**result_fields(spec), "search": spec.canonical()["search"], "objective_runs": spec.objective_runs}
        mode = spec.determinism.modes[0]
        arms = study_arms(spec)
        for (algorithm, runs), bo, init, order in itertools.product(
                arms, spec.levels["bo"], spec.levels["init"][:s.chains_init], spec.levels["order"][:s.chains_order]):
            levels = {"bo": bo, "init": init, "order": order, **fixed_levels(spec)}
            arm = {"algorithm": algorithm, "runs": runs} if len(arms) > 1 else {}
            uid = stable_hash({**base, **arm, "kind": self.name, "mode": mode, "levels": levels})
            units.append(Unit(uid, start + len(units), self.name, mode, levels, algorithm=algorithm, runs=runs))
        return units

    def trainings(self, spec: JobSpec, unit: Unit) -> int:
        """The chain's trials (each the mean of `runs` trainings) and its re-evaluations."""
        s = spec.search
        assert s is not None
        return s.max_evals * (unit.runs or spec.objective_runs) + s.reevaluate_init * s.reevaluate_order

    def run_one(self, ctx: Context, unit: Unit) -> Outcome:
        """The chain, then its chosen configuration on fresh seeds. Seconds inside the optimiser
        (construction, ask, tell) and inside training are timed apart."""
        spec, search_spec = ctx.spec, ctx.spec.search
        assert search_spec is not None
        clock: Clock = {"optimiser_s": 0.0, "train_s": 0.0}
        seeds = {**training_seeds(spec, unit.levels), "bo": unit.seeds(spec.root_seed)["bo"]}
        start = time.perf_counter()
        search = make_search(search_spec, seeds["bo"], unit.algorithm)
        clock["optimiser_s"] += time.perf_counter() - start
        trials = []
        for _ in range(search_spec.max_evals):
            trial = _trial(ctx, search, unit, clock)
            if trial is None:  # the library stopped the search (no new configuration left)
                break
            trials.append(trial)
        best = _best(spec, trials)
        start = time.perf_counter()
        reeval, seeding = _reevaluate(ctx, unit, best["config"])
        clock["train_s"] += time.perf_counter() - start
        name = find_algorithm(unit.algorithm or search_spec.algorithm).name
        result = {"trials": trials, "chosen": best["config"], "best_score": best["score"], "reeval": reeval,
                  "library_seed": search.library_seed, "options": effective_options(search_spec, name)}
        library = find_algorithm(name).library
        return Outcome(result, seeds, ctx.trainer.test_size(seeds["split"]),
                       sum(len(t["runs"]) for t in trials) + len(reeval),
                       {k: round(v, 4) for k, v in clock.items()}, {"search_library": library_version(library)},
                       noise_seeding=seeding)

    def check(self, result: Mapping[str, Any]) -> str | None:
        return missing(result, {"trials": list, "chosen": dict, "best_score": (int, float), "reeval": list})

    def rows(self, rec: Mapping[str, Any]) -> list[Row]:
        """A chain's trials (every averaged run) and its chosen configuration's re-evaluations, each
        with the init and order levels and seeds its chain searched under (`search_*`)."""
        res, chain, bo = rec["result"], rec["levels"], rec["seeds"]["bo"]
        arm = {"algorithm": rec.get("algorithm"), "objective_runs": rec.get("runs")}
        rows = [row(TRIAL_ROW, rec, trial["config"], chain, {**run["seeds"], "bo": bo}, run, trial=t, run=j, **arm)
                for t, trial in enumerate(res["trials"]) for j, run in enumerate(trial["runs"])]
        searched = {"search_init_level": chain["init"], "search_order_level": chain["order"],
                    "search_init_seed": rec["seeds"]["init"], "search_order_seed": rec["seeds"]["order"]}
        rows += [row(REEVAL_ROW, rec, res["chosen"], {**chain, **r["levels"]}, {**r["seeds"], "bo": bo},
                     r["metrics"], **arm, **searched) for r in res["reeval"]]
        return rows


def _best(spec: JobSpec, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The best scored trial, the first of equals (as hyperopt's argmin)."""
    scored = [t for t in trials if t["score"] is not None]
    if not scored:
        raise TrainingFailed("every trial of the chain failed")
    pick = max if spec.objective_direction == "max" else min
    return pick(scored, key=lambda t: t["score"])


def _trial(ctx: Context, search: Search, unit: Unit, clock: Clock) -> dict[str, Any] | None:
    """One trial: the optimiser's proposal trained `unit.runs` times, the mean objective (on
    validation where there is one) told (None when the optimiser has nothing left to propose). A
    training that fails, or a builder that raises for this configuration, fails this trial only
    (told as failed, its error kept, the chain goes on), as in KerasTuner's own loop."""
    spec = ctx.spec
    start = time.perf_counter()
    config = search.ask()
    clock["optimiser_s"] += time.perf_counter() - start
    if config is None:
        return None
    runs: list[dict[str, Any]] = []
    error, start = None, time.perf_counter()
    try:
        for j in range(unit.runs or spec.objective_runs):
            seeds = training_seeds(spec, unit.levels, run=j)
            m = ctx.trainer.train(config, seeds)
            runs.append({**{k: v for k, v in m.as_dict().items() if k != "per_class_accuracy"}, "seeds": seeds})
    except TrainingFailed as exc:
        error = str(exc)
    except Exception as exc:  # the user's builder failed for this configuration: as KerasTuner, the trial fails
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    clock["train_s"] += time.perf_counter() - start
    metric = spec.objective_metric
    score = None if error else sum((r.get("validation") or r)[metric] for r in runs) / len(runs)
    start = time.perf_counter()
    search.tell(None if score is None else -score if spec.objective_direction == "max" else score)
    clock["optimiser_s"] += time.perf_counter() - start
    return {"config": _trained(ctx, config), "score": score, "runs": runs, **({"error": error} if error else {})}


def _trained(ctx: Context, config: dict[str, Any]) -> dict[str, Any]:
    """The configuration a trial trained: without the hyperparameters a KerasTuner hypermodel left
    inactive for it (a `units_2` when `num_layers` is 1), which trained nothing and so neither
    are recorded nor make configurations distinct."""
    active = ctx.trainer.info.active
    if active is None:
        return config
    try:
        used = active(config)
    except Exception:  # the build fails for this configuration: the trial's error says so
        return config
    return {k: v for k, v in config.items() if k in used or k in TRAINING_FIELDS}


def _reevaluate(ctx: Context, unit: Unit, config: dict[str, Any]
                ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The chosen configuration on fresh init x order seeds; and what the noise stream reached in
    the last model trained (the same in each: one configuration)."""
    s, out, seeding = ctx.spec.searched, [], None
    for i in range(s.reevaluate_init):
        for o in range(s.reevaluate_order):
            seeds = training_seeds(ctx.spec, {**unit.levels, "init": i, "order": o}, purpose=FRESH)
            m = ctx.trainer.train(config, seeds)
            out.append({"levels": {"init": i, "order": o}, "seeds": seeds, "metrics": m.as_dict()})
            seeding = m.noise_seeding
    return out, seeding
