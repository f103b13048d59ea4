"""The user's own model and data through the real CLI: a KerasTuner hypermodel from a file in a
temporary directory on npz data, a regression on CSV data reported in its metric's units, a job
without a search, and bad input refused in one line (exit 2, nothing written) before any worker."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.errors import UserError
from harness.job import load_job
from harness.training import preflight
from tests.conftest import REPO, as_before_validation, harness

HYPERMODEL = textwrap.dedent('''
    import keras
    from keras import layers


    def build_model(hp):
        model = keras.Sequential()
        model.add(keras.Input(shape=(8, 8)))
        model.add(layers.Reshape((8, 8, 1)))
        model.add(layers.Conv2D(hp.Int("filters", min_value=4, max_value=8, step=4), 3, activation="relu"))
        model.add(layers.BatchNormalization())
        model.add(layers.Flatten())
        if hp.Boolean("dropout"):
            model.add(layers.Dropout(0.25))
        model.add(layers.Dense(10, activation="softmax"))
        model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [0.01, 0.003])),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


    def not_a_model(hp, input_shape, n_classes):
        return "a string"


    def three(a, b):
        return None
''')
SEEDS = {"root": 3, "init": 2, "order": 1, "repeat": 1, "bo": 1}
QUIET = {"determinism": {"ops": "on", "intra_op_threads": 1, "inter_op_threads": 1},
         "dispatch": {"cpu_workers": 1}}


def _digits_npz(path: Path, n: int = 240) -> None:
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = (d.data[:n] / 16.0).reshape(-1, 8, 8).astype(np.float32), d.target[:n].astype(np.int64)
    np.savez(path, x_train=x[: n * 3 // 4], y_train=y[: n * 3 // 4], x_test=x[n * 3 // 4:], y_test=y[n * 3 // 4:])


def _job(directory: Path, name: str, job: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **job, "seeds": SEEDS, **QUIET}, sort_keys=False))
    return path


def _hypermodel_job(tmp_path: Path, **over: Any) -> Path:
    (tmp_path / "my_models.py").write_text(HYPERMODEL)
    _digits_npz(tmp_path / "digits.npz")
    job = {"data": {"source": "npz", "path": "digits.npz", "splits": {"validation": 0.2}},
           "model": {"builder": "my_models:build_model"},
           "training": {"batch_size": 32, "epochs": 1, "engine": "exact"},
           "search": {"algorithm": "rand", "max_evals": 2, "chains": {"init": 1, "order": 1},
                      "reevaluate": {"init": 1, "order": 1}},
           "evaluate": {"configurations": [{"filters": 4, "dropout": True, "lr": 0.01}]}}
    return _job(tmp_path, "hyper", {k: v for k, v in {**job, **over}.items() if v is not None})


@pytest.mark.slow
def test_kerastuner_hypermodel_from_a_temporary_directory_runs_unchanged(tmp_path: Path) -> None:
    job = _hypermodel_job(tmp_path)
    spec = load_job(str(job))
    assert {d.name for d in spec.search.space} == {"filters", "dropout", "lr"}  # from its hp calls
    store = tmp_path / "runs"
    run = harness("run", str(job), "--store", str(store), "--no-progress", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert "3/3 units done" in run.stderr
    records = [json.loads(line) for f in store.rglob("*.jsonl") for line in f.read_text().splitlines()]
    study = next(r for r in records if r["kind"] == "study")
    assert all("validation" in t["runs"][0] for t in study["result"]["trials"])  # chains select on validation
    assert study["result"]["best_score"] == max(t["runs"][0]["validation"]["accuracy"]
                                                for t in study["result"]["trials"])
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals[0]["noise_seeding"] == {"reseeded": [next(iter(evals[0]["noise_seeding"]["reseeded"]))], "fixed": []}
    assert evals[0]["result"]["metrics"]["accuracy"] != evals[1]["result"]["metrics"]["accuracy"]
    report = harness("report", str(job), "--store", str(store), "--out", str(tmp_path / "reports"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "reports" / "hyper.md").read_text()
    assert "chains select on the validation split" in text


def _regression_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x[:, 0] - 0.5 * x[:, 1] + 0.05 * rng.normal(size=200)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "price"])
        w.writerows([[*row, t] for row, t in zip(x.round(4), y.round(4), strict=True)])


def test_regression_on_csv_without_a_search_reports_in_its_metric(tmp_path: Path) -> None:
    _regression_csv(tmp_path / "houses.csv")
    job = _job(tmp_path, "reg", {
        "data": {"source": "csv", "path": "houses.csv", "target": "price", "task": "regression"},
        "model": {"builder": "dense", "args": {"activation": "relu"}},
        "training": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 2, "loss": "mse",
                     "engine": "vectorized"},
        "evaluate": {"configurations": [{"units": 8}, {"units": 16}]},
        "objective": {"metric": "mae"}})
    job.write_text(job.read_text().replace("order: 1", "order: 2"))  # init x order: a residual to separate
    store = tmp_path / "runs"
    run = harness("run", str(job), "--store", str(store), "--no-progress", "--executor", "debug")
    assert run.returncode == 0, run.stderr
    assert "using exact" not in run.stderr  # a regression trains vectorized too
    out = tmp_path / "rows.csv"
    assert harness("export", str(job), "--store", str(store), "--csv", str(out)).returncode == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 8 and {"loss", "mse", "mae"} <= set(rows[0]) and "accuracy" not in rows[0]
    assert float(rows[0]["mae"]) > 0
    report = harness("report", str(job), "--store", str(store), "--out", str(tmp_path / "reports"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "reports" / "reg.md").read_text()
    assert "std (mae)" in text and "held-out mae" in text and "pts" not in text and "points" not in text


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unimportable", {"model": {"builder": "no_such_module:build"}}, "cannot import module 'no_such_module'"),
    ("signature", {"model": {"builder": "my_models:three"}}, "has the wrong signature"),
    ("not a model", {"model": {"builder": "my_models:not_a_model"}, "search": None}, "not a keras.Model"),
    ("metric", {"objective": {"metric": "auc"}}, "metric 'auc' is not reported by the compiled model"),
]


@pytest.mark.parametrize("case, over, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_model_is_one_line_before_any_worker(tmp_path: Path, case: str, over: dict[str, Any],
                                                 phrase: str) -> None:
    job = _hypermodel_job(tmp_path, **over)
    with pytest.raises(UserError) as info:
        preflight.check(load_job(str(job)))
    assert phrase in str(info.value) and str(job) in str(info.value) and "\n" not in str(info.value)


def _bad_arrays(kind: str) -> dict[str, np.ndarray]:
    x = np.zeros((20, 4), np.float32)
    y = np.arange(20) % 3
    arrays = {"x_train": x, "y_train": y, "x_test": x[:5], "y_test": y[:5]}
    if kind == "lengths":
        arrays["y_train"] = y[:19]
    elif kind == "nan":
        arrays["x_train"] = np.where(np.eye(20, 4) > 0, np.nan, x)
    elif kind == "labels":
        arrays["y_test"] = np.array([0, 1, 2, 7, -1])
    elif kind == "dtype":
        arrays["x_train"] = np.array([["a"] * 4] * 20)
    return arrays


@pytest.mark.parametrize("kind, phrase", [("lengths", "x_train has 20 rows but y_train has 19"),
                                          ("nan", "x_train holds NaN or inf"),
                                          ("labels", "y_test has labels from -1 to 7; expected 0..2"),
                                          ("dtype", "x_train has dtype <U1; expected numbers"),
                                          ("csv", "has no target column 'price'")])
def test_bad_data_is_one_line_exit_2_nothing_written(tmp_path: Path, kind: str, phrase: str) -> None:
    if kind == "csv":
        (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
        data = {"source": "csv", "path": "d.csv", "target": "price"}
    else:
        np.savez(tmp_path / "d.npz", **_bad_arrays(kind))
        data = {"source": "npz", "path": "d.npz", "classes": 3}
    job = _job(tmp_path, "bad", {"data": data, "model": {"builder": "dense"},
                                 "training": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8,
                                              "epochs": 1},
                                 "evaluate": {"configurations": [{"units": 8}]}})
    run = harness("run", str(job), "--store", str(tmp_path / "runs"), "--no-progress")
    assert run.returncode == 2 and phrase in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_bundled_hypermodel_job_plans_with_its_recorded_space() -> None:
    spec = load_job(str(REPO / "jobs" / "mnist_cnn.yaml"))
    assert {d.name for d in spec.search.space} == {"filters_1", "filters_2", "kernel_size", "dropout", "units", "lr"}
    assert spec.data.validation == 0.1 and spec.model.source_digest


def test_existing_jobs_keep_their_spec_hash(tmp_path: Path) -> None:
    """New fields at their defaults stay out of the canonical form: stores and unit ids do not move."""
    assert load_job(str(as_before_validation("digits_dense", tmp_path))).digest() == "73a668cfb3e465b5"
    assert load_job(str(as_before_validation("mnist_dense", tmp_path))).digest() == "7607acb5fe2de05b"


def test_regression_example_loads_its_own_data_and_model() -> None:
    from harness.training import data
    spec = load_job(str(REPO / "examples" / "regression.yaml"))  # its modules beside it, not on the path
    ds = data.load(spec.data, 0, spec.path)
    assert spec.objective_metric == "mae" and spec.objective_direction == "min" and ds.n_classes == 0
    assert (len(ds.y_train), ds.n_val, len(ds.y_test)) == (360, 90, 150) and ds.y_train.dtype == np.float32


def _staged(path: Path, shape: tuple[int, ...], n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8), y_train=rng.integers(0, 10, (n, 1)),
             x_test=rng.integers(0, 256, (n // 4, *shape), dtype=np.uint8), y_test=rng.integers(0, 10, (n // 4, 1)))
    return path


def test_keras_datasets_from_staged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, each Keras dataset is read from a staged file (data.path or $HARNESS_<NAME>_PATH);
    the bundled hypermodel job passes the driver's check on MNIST-shaped data."""
    from harness.job.spec import DataSpec
    from harness.training import data
    monkeypatch.setenv("HARNESS_CIFAR10_PATH", str(_staged(tmp_path / "c10.npz", (32, 32, 3))))
    ds = data.load(DataSpec("keras", None, 0.25, None, None, name="cifar10"), 0)
    assert ds.x_train.shape == (120, 32, 32, 3) and ds.y_train.shape == (120,) and ds.x_train.max() <= 1.0
    monkeypatch.setenv("HARNESS_MNIST_PATH", str(_staged(tmp_path / "mnist.npz", (28, 28))))
    monkeypatch.chdir(REPO)
    spec = load_job(str(REPO / "jobs" / "mnist_cnn.yaml"))
    preflight.check(spec)  # builds the hypermodel and runs it on two staged images
    with pytest.raises(UserError, match="fashion_mnist file .* not found"):
        data.check(DataSpec("keras", str(tmp_path / "none.npz"), 0.25, None, None, name="fashion_mnist"))
