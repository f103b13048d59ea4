"""Every optimiser backend proposes what its library's own loop proposes with the recorded seed, on
a deterministic objective over three kinds of dimension; bad spaces and options are one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import UserError
from harness.job import load_job
from harness.job.spec import SearchSpec
from harness.search import make_search
from tests.conftest import TINY_JOB, harness, write_job

SPACE = {"units": {"quniform": [8, 64, 8]}, "learning_rate": {"loguniform": [-7, -2]},
         "optimizer": {"choice": ["adam", "sgd", "rmsprop"]}}
SEEDS = (1, 987654)


def loss(c: dict[str, Any]) -> float:
    return -c["units"] / 64 + abs(np.log(c["learning_rate"]) + 4) + {"adam": 0.0, "sgd": 0.3, "rmsprop": 0.1}[
        c["optimizer"]]


def search_spec(tmp_path: Path, algorithm: str, **search: Any) -> SearchSpec:
    job = write_job(tmp_path, search={"algorithm": algorithm, "max_evals": 12, "startup_trials": 4, "space": SPACE,
                                      **search},
                    replace={"training": {"batch_size": 32, "epochs": 1}, "evaluate": {}})
    return load_job(str(job)).search


def harness_chain(spec: SearchSpec, seed: int) -> tuple[list[dict[str, Any]], int]:
    """The proposals of the harness's ask/tell for bo seed `seed`, and the library seed it used."""
    search = make_search(spec, seed)
    out = []
    for _ in range(spec.max_evals):
        c = search.ask()
        assert c is not None
        out.append(c)
        search.tell(loss(c))
    return out, search.library_seed


def as_config(values: dict[str, Any]) -> dict[str, Any]:
    return {"units": int(values["units"]), "learning_rate": float(values["learning_rate"]),
            "optimizer": values["optimizer"]}


@pytest.mark.parametrize("algorithm", [pytest.param("keras_tuner.bayesian", marks=pytest.mark.slow),
                                       "keras_tuner.random"])
def test_keras_tuner_proposes_what_its_tuner_proposes(tmp_path: Path, algorithm: str) -> None:
    import keras_tuner as kt

    from harness.search.keras_tuner import keras_tuner_space
    spec = search_spec(tmp_path, algorithm, max_evals=7)  # 4 random, then 3 GP proposals (each fits a GP)
    for seed in SEEDS:
        mine, lib_seed = harness_chain(spec, seed)
        seen: list[dict[str, Any]] = []

        class Replay(kt.engine.base_tuner.BaseTuner):  # the Tuner loop (search) around the library's oracle
            def run_trial(self, trial: Any, *_: Any, seen: list[dict[str, Any]] = seen, **__: Any) -> float:
                seen.append(as_config(trial.hyperparameters.values))
                return loss(seen[-1])

        common = {"objective": kt.Objective("loss", "min"), "max_trials": spec.max_evals, "seed": lib_seed,
                  "hyperparameters": keras_tuner_space(spec.space)}
        oracle = (kt.oracles.RandomSearchOracle(**common) if algorithm.endswith("random")
                  else kt.oracles.BayesianOptimizationOracle(**common, num_initial_points=4))
        Replay(oracle, directory=str(tmp_path / f"kt{seed}"), project_name="p", overwrite=True).search(verbose=0)
        assert mine == seen and lib_seed != 0


@pytest.mark.parametrize("algorithm", ["optuna.tpe", "optuna.random"])
def test_optuna_proposes_what_study_optimize_proposes(tmp_path: Path, algorithm: str) -> None:
    import optuna
    spec = search_spec(tmp_path, algorithm)
    for seed in SEEDS:
        mine, lib_seed = harness_chain(spec, seed)
        seen: list[dict[str, Any]] = []

        def objective(trial: optuna.Trial, seen: list[dict[str, Any]] = seen) -> float:
            c = {"learning_rate": trial.suggest_float("learning_rate", np.exp(-7), np.exp(-2), log=True),
                 "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"]),
                 "units": trial.suggest_int("units", 8, 64, step=8)}
            seen.append(as_config(c))
            return loss(seen[-1])

        sampler = (optuna.samplers.RandomSampler(seed=lib_seed) if algorithm.endswith("random")
                   else optuna.samplers.TPESampler(seed=lib_seed, n_startup_trials=4))
        optuna.create_study(sampler=sampler).optimize(objective, n_trials=spec.max_evals)
        assert mine == seen


@pytest.mark.slow
def test_skopt_proposes_what_gp_minimize_proposes(tmp_path: Path) -> None:
    from skopt import gp_minimize
    from skopt.space import Categorical, Integer, Real
    spec = search_spec(tmp_path, "skopt.gp", max_evals=7)
    space = [Real(np.exp(-7), np.exp(-2), prior="log-uniform"), Categorical(["adam", "sgd", "rmsprop"]),
             Integer(1, 8)]  # units = 8 k
    for seed in SEEDS:
        mine, lib_seed = harness_chain(spec, seed)
        seen: list[dict[str, Any]] = []

        def objective(x: list[Any], seen: list[dict[str, Any]] = seen) -> float:
            seen.append(as_config({"learning_rate": x[0], "optimizer": str(x[1]), "units": 8 * int(x[2])}))
            return loss(seen[-1])

        gp_minimize(objective, space, n_calls=spec.max_evals, n_initial_points=4, random_state=lib_seed)
        assert mine == seen


def test_hyperopt_aliases_give_the_same_chain(tmp_path: Path) -> None:
    for old, new in (("tpe", "hyperopt.tpe"), ("rand", "hyperopt.rand"), ("anneal", "hyperopt.anneal")):
        a, b = search_spec(tmp_path, old), search_spec(tmp_path, new)
        assert harness_chain(a, 5) == harness_chain(b, 5)


def test_library_seeds_differ_by_library_and_bo_seed(tmp_path: Path) -> None:
    seeds = {(alg, s): harness_chain(search_spec(tmp_path, alg, max_evals=2), s)[1]
             for alg in ("keras_tuner.random", "optuna.random", "hyperopt.rand") for s in (0, 1)}
    assert len(set(seeds.values())) == len(seeds) and 0 not in {v for (a, _), v in seeds.items() if "keras" in a}


@pytest.mark.parametrize(("search", "where", "what"), [
    ({"algorithm": "keras_tuner.bayesian", "space": {"units": {"normal": [32, 4]}}},
     "search.space.units", "keras_tuner cannot express normal exactly"),
    ({"algorithm": "optuna.tpe", "space": {"units": {"qloguniform": [2, 5, 4]}}},
     "search.space.units", "optuna cannot express qloguniform exactly"),
    ({"algorithm": "skopt.gp", "space": {"units": {"quniform": [10, 64, 8]}}},
     "search.space.units", "skopt cannot express quniform exactly"),
    ({"algorithm": "keras_tuner.bayesian", "options": {"beta": -1}}, "search.options.beta", "a number > 0"),
    ({"algorithm": "keras_tuner.bayesian", "options": {"gamma": 1}}, "search.options.gamma",
     "valid keys here: num_initial_points, alpha, beta"),
    ({"algorithm": "optuna.tpe", "options": {"n_startup_trials": 3}}, "search.options.n_startup_trials",
     "also set as search.startup_trials"),
    ({"algorithms": ["tpe", "hyperopt.tpe"]}, "search.algorithms", "the same algorithm twice"),
    ({"algorithms": ["optuna.tpe", "skopt.gp"], "options": {"optuna.tpe": {"n_ei_candidates": 0}}},
     "search.options.optuna.tpe.n_ei_candidates", "an integer >= 1"),
    ({"algorithm": "bayes"}, "search.algorithm", "expected one of tpe, rand, anneal, hyperopt.tpe"),
])
def test_bad_space_or_options_is_one_line(tmp_path: Path, search: dict[str, Any], where: str, what: str) -> None:
    base = {k: v for k, v in TINY_JOB["search"].items() if k != "algorithm"}
    job = write_job(tmp_path, replace={"search": {**base, **search}})
    with pytest.raises(UserError, match=what) as err:
        load_job(str(job))
    assert where in str(err.value) and "\n" not in str(err.value)


def test_a_missing_library_names_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` sees when it is not installed
    job = write_job(tmp_path, replace={"search": {**TINY_JOB["search"], "algorithm": "optuna.tpe"}})
    with pytest.raises(UserError, match=r"optuna.tpe needs optuna, which is not installed; install it with "
                                        r"pip install -e '\.\[optuna\]'"):
        load_job(str(job))


def test_keras_tuner_ends_the_chain_when_the_space_is_exhausted(tmp_path: Path) -> None:
    """Three configurations and five trials: the oracle stops after three, and so does the chain."""
    job = write_job(tmp_path, replace={"search": {**TINY_JOB["search"], "algorithm": "keras_tuner.random",
                                                  "max_evals": 5}})
    search = make_search(load_job(str(job)).search, 3)
    seen = []
    while (c := search.ask()) is not None:
        seen.append(c["units"])
        search.tell(-c["units"] / 24)
    assert sorted(seen) == [8, 16, 24]


def test_cli_refuses_an_inexpressible_term_with_exit_2(tmp_path: Path) -> None:
    job = write_job(tmp_path, replace={"search": {**TINY_JOB["search"], "algorithm": "optuna.tpe",
                                                  "space": {"units": {"normal": [32, 4]}}}})
    r = harness("plan", str(job), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "optuna cannot express normal" in r.stderr


def test_factor_plans_each_optimiser_and_averaging_count(tmp_path: Path) -> None:
    search = {k: v for k, v in TINY_JOB["search"].items() if k != "algorithm"}
    job = write_job(tmp_path, replace={"search": {**search, "algorithms": ["tpe", "optuna.tpe"]},
                                       "objective": {"runs": [1, 2]}})
    spec = load_job(str(job))
    from harness.units import plan, planned_trainings
    studies = [u for u in plan(spec) if u.kind == "study"]
    assert {(u.algorithm, u.runs) for u in studies} == {(a, r) for a in ("hyperopt.tpe", "optuna.tpe") for r in (1, 2)}
    assert len({u.id for u in studies}) == len(studies) == spec.study_units()
    assert spec.trainings() == planned_trainings(spec)


@pytest.mark.slow
def test_optimisers_and_averaging_as_factors_end_to_end(tmp_path: Path) -> None:
    """Each arm's chains run the same cells; records carry the arm, timings, the library seed and
    version; the export names the arm; the report compares the arms side by side."""
    import csv

    from harness.search.base import library_seed
    from harness.store import Store
    search = {k: v for k, v in TINY_JOB["search"].items() if k != "algorithm"}
    job = write_job(tmp_path, replace={
        "search": {**search, "algorithms": ["hyperopt.tpe", "keras_tuner.bayesian", "optuna.tpe", "skopt.gp"],
                   "max_evals": 3, "startup_trials": 2, "chains": {"init": 1, "order": 1}},
        "evaluate": {}, "objective": {"runs": [1, 2]}})
    store = tmp_path / "store"
    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    spec = load_job(str(job))
    recs = [st.ok for st in Store(store, spec).states().values()]
    assert len(recs) == spec.study_units() == 4 * 2 and all(recs)
    for rec in recs:
        bo = rec["seeds"]["bo"]
        lib = rec["algorithm"].split(".")[0]
        assert rec["result"]["library_seed"] == (bo if lib == "hyperopt" else library_seed(bo, lib))
        assert rec["env"]["search_library"].split()[0] in ("hyperopt", "keras-tuner", "optuna", "scikit-optimize")
        assert rec["timings"]["optimiser_s"] > 0 and rec["timings"]["train_s"] > 0
        assert "optimiser_s" not in rec["result"]  # a cost, kept apart from what the chain produced
        assert sum(len(t["runs"]) for t in rec["result"]["trials"]) == 3 * rec["runs"]
    out = tmp_path / "out.csv"
    assert harness("export", str(job), "--store", str(store), "--csv", str(out)).returncode == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {(row["algorithm"], row["objective_runs"]) for row in rows} == {
        (a, str(n)) for a in ("hyperopt.tpe", "keras_tuner.bayesian", "optuna.tpe", "skopt.gp") for n in (1, 2)}
    r = harness("report", str(job), "--store", str(store), "--out", str(tmp_path / "reports"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "reports" / "tiny.md").read_text()
    side = text.split("## Optimisers side by side")[1]
    for name in ("hyperopt.tpe, runs 1", "keras_tuner.bayesian, runs 2", "optuna.tpe", "skopt.gp",
                 "### What averaging bought", "optimiser s"):
        assert name in side
    assert (tmp_path / "reports" / "tiny_optimisers.png").stat().st_size > 1000


def test_the_bundled_comparison_job_loads_without_warnings() -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = load_job("digits_optimisers")
    assert spec.search.algorithms == ("hyperopt.tpe", "keras_tuner.bayesian", "optuna.tpe")
    assert spec.runs_factor() == (1, 3) and spec.study_units() == 36 and spec.trainings() == 1008
