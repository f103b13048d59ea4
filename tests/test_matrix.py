"""Seed streams, unit ids, batches and shards (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hyperopt import Trials, fmin

from harness.job import load_job
from harness.job.matrix import array_part, training_seeds
from harness.job.seeds import derive_seed
from harness.search import make_search
from harness.search.hyperopt import hyperopt_algo, hyperopt_space
from harness.units import batches, plan
from tests.conftest import write_job


def test_streams_are_independent_of_other_sources(tmp_path: Path) -> None:
    a = load_job(str(write_job(tmp_path, name="a")))
    b = load_job(str(write_job(tmp_path, name="b", seeds={"noise": 3, "split": 2, "order": 5})))
    for levels in ({"init": 0, "order": 0}, {"init": 1, "order": 1}):
        assert training_seeds(a, levels)["init"] == training_seeds(b, levels)["init"]
        assert training_seeds(a, levels)["order"] == training_seeds(b, levels)["order"]
    seeds = {derive_seed(7, s, lv) for s in ("init", "order", "bo") for lv in range(50)}
    assert len(seeds) == 150  # no collisions across sources and levels


def test_unit_ids_stable_and_change_with_what_matters(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path)))
    ids = [u.id for u in plan(spec)]
    assert ids == [u.id for u in plan(load_job(str(write_job(tmp_path))))]
    assert len(set(ids)) == len(ids)
    other_dispatch = load_job(str(write_job(tmp_path, name="tiny", dispatch={"cpu_workers": 2})))
    assert ids == [u.id for u in plan(other_dispatch)]
    other_lr = load_job(str(write_job(tmp_path, name="tiny", training={"learning_rate": 0.02})))
    assert not set(ids) & {u.id for u in plan(other_lr)}


def test_more_configurations_keep_existing_unit_ids(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path)))
    more = load_job(str(write_job(tmp_path, evaluate={"configurations": [{"units": 8}, {"units": 16},
                                                                          {"units": 24}]})))
    assert {u.id for u in plan(spec) if u.kind == "eval"} < {u.id for u in plan(more)}


def test_shards_partition_the_plan(tmp_path: Path) -> None:
    units = plan(load_job(str(write_job(tmp_path))))
    for n in (1, 2, 3, 4, len(units), len(units) + 7):
        parts = [array_part(units, i, n) for i in range(n)]
        assert sorted(u.index for p in parts for u in p) == list(range(len(units)))


def test_batches_share_configuration_and_mode(tmp_path: Path) -> None:
    units = plan(load_job(str(write_job(tmp_path, determinism={"ops": "both"}))))
    bs = batches(units, 3)
    assert sorted(u.index for b in bs for u in b) == list(range(len(units)))
    for b in bs:
        assert len({(u.kind, u.mode, str(u.config)) for u in b}) == 1 and len(b) <= 3
    assert bs[0][0].kind == "study"


def test_ask_tell_proposes_what_fmin_proposes(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path, search={
        "max_evals": 14, "startup_trials": 4,
        "space": {"units": {"quniform": [8, 64, 8]}, "learning_rate": {"loguniform": [-7, -2]},
                  "optimizer": {"choice": ["adam", "sgd"]}}},
        replace={"training": {"batch_size": 32, "epochs": 1}, "evaluate": {}})))

    def loss(c: dict) -> float:
        return -c["units"] / 64 + abs(np.log(c["learning_rate"]) + 4) + (c["optimizer"] == "sgd") * 0.3

    for seed in (0, 12345):
        search = make_search(spec.search, seed)
        mine = []
        for _ in range(spec.search.max_evals):
            c = search.ask()
            mine.append(c)
            search.tell(loss(c))
        seen: list[dict] = []

        def objective(p: dict, seen: list[dict] = seen) -> float:
            c = {"units": int(p["units"]), "learning_rate": p["learning_rate"], "optimizer": p["optimizer"]}
            seen.append(c)
            return loss(c)

        fmin(objective, hyperopt_space(spec.search.space), algo=hyperopt_algo(spec.search),
             max_evals=spec.search.max_evals, trials=Trials(), rstate=np.random.default_rng(seed),
             show_progressbar=False)
        assert mine == seen
