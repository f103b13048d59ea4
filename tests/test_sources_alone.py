"""Issue 23: the bitflip seed source, per-example results (churn, the independent-errors share)
and design `alone` with its report section."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.errors import UserError
from harness.job import load_job
from harness.job.matrix import training_seeds
from harness.stats.examples import arm_stats, churn, independent_variance, mean_churn
from harness.training import determinism, perexample
from harness.training.bitflip import flip_arrays, flip_model
from harness.training.models import build_dense, dense_initial_weights
from harness.training.trainer import Trainer
from harness.units import plan
from tests.conftest import REPO, harness, write_job

ALONE = {"evaluate": {"design": "alone", "configurations": [{"units": 8}]},
         "model": {"builder": "dense", "args": {"activation": "relu", "dropout": 0.2}},
         "seeds": {"root": 7, "init": 3, "order": 3, "noise": 3, "bitflip": 3}}


def _bits(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([a.reshape(-1).view(np.uint32) for a in arrays])


def _one_bit_apart(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[int, int]:
    """(weights that differ, bits that differ) between two weight lists."""
    x = _bits(a) ^ _bits(b)
    return int(np.count_nonzero(x)), int(sum(bin(int(v)).count("1") for v in x[x != 0]))


@pytest.mark.parametrize("seed", [1, 12345, 2**31 - 1])
def test_a_bitflip_changes_exactly_one_bit_of_one_weight(seed: int) -> None:
    plain = dense_initial_weights(64, 10, init_seed=3, units=16)
    flipped = flip_arrays(dense_initial_weights(64, 10, init_seed=3, units=16), seed)
    assert _one_bit_apart(plain, flipped) == (1, 1)
    (where,) = np.flatnonzero(_bits(plain) ^ _bits(flipped))
    assert (_bits(plain) ^ _bits(flipped))[where] == 1  # the lowest mantissa bit
    assert flip_arrays(plain, 0) is plain


def test_a_built_model_flips_the_weight_its_arrays_flip() -> None:
    """fit and exact flip a built model, vectorized the arrays it stacks: the same weight."""
    import keras
    model = build_dense((8, 8), 10, init_seed=3, noise_seed=0, units=16).model
    before = [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]
    flip_model(model, 99)
    after = [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]
    assert _one_bit_apart(before, after) == (1, 1)
    assert all(np.array_equal(a, b) for a, b in
               zip(after, flip_arrays(dense_initial_weights(64, 10, init_seed=3, units=16), 99), strict=True))


def test_bitflip_seeds_only_where_the_job_names_it(tmp_path: Path) -> None:
    plain = load_job(str(write_job(tmp_path)))
    assert "bitflip" not in training_seeds(plain, {"init": 0, "order": 0})  # old jobs' records unchanged
    spec = load_job(str(write_job(tmp_path, "alone", **ALONE)))
    assert training_seeds(spec, {"bitflip": 0})["bitflip"] == 0  # level 0: no flip
    assert len({training_seeds(spec, {"bitflip": k})["bitflip"] for k in (1, 2)}) == 2


def test_design_alone_plans_each_source_alone_then_all(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path, "alone", **ALONE)))
    units = [u for u in plan(spec) if u.kind == "eval"]
    assert len(units) == spec.eval_units() == 5 * 2 + 1  # 4 arms + all, 3 levels each, base shared
    levels = [u.levels for u in units]
    assert {"init": 2, "order": 0, "noise": 0, "bitflip": 0, "repeat": 0} in levels
    assert {"init": 2, "order": 2, "noise": 2, "bitflip": 2, "repeat": 0} in levels
    assert len({u.id for u in units}) == len(units)
    bad = {**ALONE, "seeds": {**ALONE["seeds"], "order": 4}}
    with pytest.raises(UserError, match="same number of trainings"):
        load_job(str(write_job(tmp_path, "bad", **bad)))


@pytest.mark.parametrize("classes", [2, 10, 300])
def test_per_example_results_round_trip(classes: int) -> None:
    rng = np.random.default_rng(classes)
    y, pred = rng.integers(classes, size=101), rng.integers(classes, size=101)
    got = perexample.decode(perexample.encode(pred, y, classes))
    assert np.array_equal(got.predicted, pred) and np.array_equal(got.correct, pred == y)


def test_churn_of_a_training_with_itself_is_zero() -> None:
    pred = np.random.default_rng(0).integers(10, size=450)
    assert churn(pred, pred) == 0.0
    assert mean_churn(np.stack([pred, pred, pred])) == 0.0
    runs = np.random.default_rng(1).integers(3, size=(5, 40))
    pairs = [churn(runs[i], runs[j]) for i in range(5) for j in range(i + 1, 5)]
    assert mean_churn(runs) == pytest.approx(np.mean(pairs))


def test_independent_errors_estimator_is_unbiased_for_known_probabilities() -> None:
    """E[k(m-k)/(m(m-1))] = p(1-p) exactly for k ~ Binomial(m, p): summed over examples over n^2."""
    p, m = np.array([0.5, 0.9, 0.99, 0.2, 1.0]), 4
    truth = float((p * (1 - p)).sum() / len(p) ** 2)
    k = np.arange(m + 1)
    expected = sum(float((stats.binom.pmf(k, m, pi) * k * (m - k)).sum()) / (m * (m - 1)) for pi in p) / len(p) ** 2
    assert expected == pytest.approx(truth, rel=1e-12)
    one = np.array([[True, False, True, True, True]] * 2 + [[False, False, True, True, True]] * 2)
    assert independent_variance(one) == pytest.approx((2 * 2 / 12 + 0 + 0 + 0 + 0) / 25)


def test_independent_errors_share_on_a_synthetic_case() -> None:
    """Independent per-example coin flips: the share is near 1; one shared coin per run (errors
    perfectly correlated): far above the binomial, the share is small."""
    rng = np.random.default_rng(2)
    p = rng.uniform(0.6, 1.0, size=400)
    independent = rng.random((3000, 400)) < p
    s = arm_stats(independent, independent.astype(np.int64))
    assert s.share == pytest.approx(1.0, abs=0.08)
    assert s.independent == pytest.approx(float((p * (1 - p)).sum() / 400 ** 2), rel=0.03)
    shared = rng.random((3000, 1)) < p
    assert arm_stats(shared, shared.astype(np.int64)).share < 0.1


def test_engines_fit_and_exact_flip_the_same_bit(tmp_path: Path) -> None:
    determinism.prepare_process("on")
    determinism.apply_threads(1, 1)
    determinism.set_ops("on")
    spec = load_job(str(write_job(tmp_path, "alone", **ALONE)))
    results = {}
    for engine in ("fit", "exact"):
        trainer = Trainer(spec, engine)
        results[engine] = [trainer.train({"units": 8}, training_seeds(spec, {"bitflip": k})) for k in range(3)]
    assert results["fit"] == results["exact"]
    assert results["fit"][0].examples == results["exact"][0].examples


def test_alone_job_records_exports_and_reports_bitflip(tmp_path: Path) -> None:
    job, store = write_job(tmp_path, "alone", **ALONE), tmp_path / "store"
    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out.csv"
    assert harness("export", str(job), "--store", str(store), "--csv", str(out)).returncode == 0
    rows = list(csv.DictReader(out.open()))
    rows = [row for row in rows if row["kind"] == "eval"]
    assert "examples" not in rows[0] and len(rows) == 11
    flips = {(row["bitflip_level"], row["bitflip_seed"]) for row in rows}
    assert ("0", "0") in flips and len(flips) == 3 and all(s != "0" for lv, s in flips if lv != "0")
    rep = harness("report", str(job), "--store", str(store), "--out", str(tmp_path / "reports"))
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "reports" / "alone.md").read_text()
    section = text.split("## Each source alone")[1].split("\n## ")[0]
    for arm in ("init alone", "order alone", "noise alone", "bitflip alone", "all together"):
        assert f"| {arm} " in section
    assert "On this model " in section and "95% CI" in section


def test_the_bundled_job_is_design_alone_with_equal_arms() -> None:
    spec = load_job(str(REPO / "jobs" / "sources_alone.yaml"))
    assert spec.design == "alone" and spec.varied() == ("init", "order", "noise", "bitflip")
    assert spec.eval_units() == 5 * 99 + 1
