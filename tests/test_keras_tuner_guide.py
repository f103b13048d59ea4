"""KerasTuner users' code as KerasTuner runs it: the "Getting started with KerasTuner" guide's two
`build_model(hp)` functions, verbatim (keras-io guides/keras_tuner/getting_started.py: no
keras.Input, one-hot labels with categorical_crossentropy, a conditional `num_layers` loop), on
digits images; the `hp` is KerasTuner's own; inactive hyperparameters are not recorded; a trial
whose build fails fails alone; each optimiser library's own random-startup default."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.job import load_job
from harness.job.algorithms import effective_options, startup_count
from harness.job.usercode import declared, hyperparameters
from harness.job.usermodel import recorded_space
from harness.store import Store
from tests.conftest import harness

GUIDE = textwrap.dedent('''
    import keras
    from keras import layers


    def build_model(hp):
        model = keras.Sequential()
        model.add(layers.Flatten())
        model.add(
            layers.Dense(
                # Define the hyperparameter.
                units=hp.Int("units", min_value=32, max_value=512, step=32),
                activation="relu",
            )
        )
        model.add(layers.Dense(10, activation="softmax"))
        model.compile(
            optimizer="adam",
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


    def build_model_2(hp):
        model = keras.Sequential()
        model.add(layers.Flatten())
        # Tune the number of layers.
        for i in range(hp.Int("num_layers", 1, 3)):
            model.add(
                layers.Dense(
                    # Tune number of units separately.
                    units=hp.Int(f"units_{i}", min_value=32, max_value=512, step=32),
                    activation=hp.Choice("activation", ["relu", "tanh"]),
                )
            )
        if hp.Boolean("dropout"):
            model.add(layers.Dropout(rate=0.25))
        model.add(layers.Dense(10, activation="softmax"))
        learning_rate = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


    def fails_for_wide(hp):
        units = hp.Int("units", min_value=32, max_value=512, step=32)
        if units > 256:
            raise ValueError("too wide for this machine")
        return build_model(hp)
''')


def _job(tmp_path: Path, builder: str, **search: Any) -> Path:
    import keras
    from sklearn.datasets import load_digits
    (tmp_path / "guide.py").write_text(GUIDE)
    d = load_digits()
    np.savez(tmp_path / "digits_onehot.npz", x=(d.images / 16).astype("float32"),
             y=keras.utils.to_categorical(d.target, 10))
    job = {"name": "guide", "data": {"source": "npz", "path": "digits_onehot.npz",
                                     "splits": {"test": 0.25, "validation": 0.2, "max_train": 300}},
           "model": {"builder": f"guide:{builder}"},
           "training": {"batch_size": 32, "epochs": 1},
           "search": {"algorithm": "keras_tuner.bayesian", "max_evals": 4, "chains": {"init": 1, "order": 1},
                      "reevaluate": {"init": 1, "order": 1}, **search},
           "seeds": {"root": 3, "init": 1, "order": 1, "repeat": 1, "bo": 2},
           "dispatch": {"cpu_workers": 1}}
    path = tmp_path / "guide.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _studies(job: Path, root: Path) -> list[dict[str, Any]]:
    store = Store(root, load_job(str(job)))
    return [json.loads(line) for p in store.shard_paths() for line in p.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["build_model", "build_model_2"])
def test_the_guides_build_model_runs_verbatim_under_keras_tuner_bayesian(tmp_path: Path, builder: str) -> None:
    """Every unit done, under the default engine (exact), with one-hot labels; each trial's
    recorded configuration holds exactly the hyperparameters its build used."""
    job = _job(tmp_path, builder)
    r = harness("run", str(job), "--store", str(tmp_path / "runs"), "--no-progress", timeout=600)
    assert r.returncode == 0 and "2/2 units done, 0 failed" in r.stderr, r.stderr
    for rec in _studies(job, tmp_path / "runs"):
        assert rec["status"] == "ok"
        for trial in rec["result"]["trials"]:
            assert trial["score"] is not None and "error" not in trial
            cfg = trial["config"]
            if builder == "build_model_2":
                layers = {k for k in cfg if k.startswith("units_")}
                assert layers == {f"units_{i}" for i in range(cfg["num_layers"])}, cfg  # inactive: not recorded
                assert isinstance(cfg["dropout"], bool)
    rep = harness("report", str(job), "--store", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 0, rep.stderr
    assert "=None" not in (tmp_path / "rep" / "guide.md").read_text()  # an inactive hp is left out, not None


def test_the_hypermodels_space_is_declared_up_front_conditional_hps_included() -> None:
    ns: dict[str, Any] = {}
    exec(GUIDE, ns)  # noqa: S102  the guide's code, as a user's module would run it
    space = {d.name: d for d in recorded_space(declared(ns["build_model_2"], {}))}
    assert set(space) == {"num_layers", "units_0", "units_1", "units_2", "activation", "dropout", "lr"}
    assert space["units_2"].args == (32, 512, 32) and space["dropout"].args == (False, True)


def test_int_with_log_sampling_and_a_step_is_keras_tuners_grid() -> None:
    def build(hp: Any) -> int:
        return int(hp.Int("units", 16, 512, step=2, sampling="log")) + int(hp.Int("odd", 1, 9, step=2))

    space = {d.name: d for d in recorded_space(declared(build, {}))}
    assert space["units"].kind == "choice" and space["units"].args == (16, 32, 64, 128, 256, 512)
    assert space["odd"].args == (1, 3, 5, 7, 9)  # KerasTuner's 1, 3, ...: not multiples of 2


def test_the_built_model_is_the_one_keras_tuner_builds_for_the_same_values() -> None:
    """The harness's build of a hypermodel for a configuration, and the function called with
    KerasTuner's own HyperParameters holding the same values: the same layers and sizes (a value
    outside the declared range included: KerasTuner returns it as given)."""
    import keras_tuner as kt
    ns: dict[str, Any] = {}
    exec(GUIDE, ns)  # noqa: S102
    from harness.training.models import build_user
    values = {"num_layers": 2, "units_0": 1024, "units_1": 64, "activation": "tanh", "dropout": True, "lr": 0.003}
    ours = build_user(ns["build_model_2"], "kerastuner", "guide:build_model_2", (8, 8), 10, 1, 2, **values).model
    hp = kt.HyperParameters()
    hp.values.update(values)
    theirs = ns["build_model_2"](hp)
    theirs(np.zeros((1, 8, 8), np.float32))

    def shape(m: Any) -> list[tuple[str, Any]]:
        return [(type(layer).__name__, getattr(layer, "units", None)) for layer in m.layers]
    assert shape(ours) == shape(theirs) == [("Flatten", None), ("Dense", 1024), ("Dense", 64), ("Dropout", None),
                                            ("Dense", 10)]
    assert hyperparameters({"units": 1024}).Int("units", 32, 512, step=32) == 1024


@pytest.mark.slow
def test_a_trial_whose_build_fails_fails_alone_and_the_chain_goes_on(tmp_path: Path) -> None:
    job = _job(tmp_path, "fails_for_wide", max_evals=6)
    r = harness("run", str(job), "--store", str(tmp_path / "runs"), "--executor", "debug", "--no-progress",
                timeout=600)
    assert r.returncode == 0, r.stderr
    trials = [t for rec in _studies(job, tmp_path / "runs") for t in rec["result"]["trials"]]
    failed = [t for t in trials if "error" in t]
    assert len(trials) == 12 and failed and all(t["config"]["units"] > 256 for t in failed), trials
    assert all(t["score"] is None and t["error"] == "ValueError: too wide for this machine" for t in failed)
    rep = harness("report", str(job), "--store", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 0, rep.stderr
    assert f"{len(failed)} of 12 trials failed" in (tmp_path / "rep" / "guide.md").read_text()


@pytest.mark.parametrize("algorithm,expected", [("hyperopt.tpe", 20), ("keras_tuner.bayesian", 3 * 7),
                                                ("optuna.tpe", 10), ("skopt.gp", 10), ("hyperopt.rand", None)])
def test_each_library_keeps_its_own_random_startup_default(tmp_path: Path, algorithm: str,
                                                            expected: int | None) -> None:
    spec = load_job(str(_job(tmp_path, "build_model_2", algorithm=algorithm)))
    assert startup_count(spec.searched, algorithm) == expected
    if expected is not None:
        assert set(effective_options(spec.searched, algorithm).values()) == {expected}
    given = load_job(str(_job(tmp_path, "build_model_2", algorithm=algorithm, startup_trials=4)))
    assert startup_count(given.searched, algorithm) == (None if expected is None else 4)


def test_a_hyperopt_job_keeps_its_hash_when_startup_trials_is_left_out(tmp_path: Path) -> None:
    """20 was every library's default; a hyperopt job that never set it trains as before."""
    left_out = load_job(str(_job(tmp_path, "build_model", algorithm="tpe")))
    written = load_job(str(_job(tmp_path, "build_model", algorithm="tpe", startup_trials=20)))
    assert left_out.digest() == written.digest()
    kt = load_job(str(_job(tmp_path, "build_model", algorithm="keras_tuner.bayesian")))
    kt20 = load_job(str(_job(tmp_path, "build_model", algorithm="keras_tuner.bayesian", startup_trials=20)))
    assert kt.digest() != kt20.digest()  # its chains now start with KerasTuner's own 3 x dimensions


BINARY = textwrap.dedent('''
    import keras


    def build_model(hp):
        model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(hp.Int("units", 8, 32, step=8)),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model
''')


def test_binary_labels_with_one_sigmoid_output_train_and_score(tmp_path: Path) -> None:
    """Labels 0/1, one sigmoid output, binary_crossentropy: trained as Keras trains it, scored on
    two classes (the output is class 1's probability)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    keep = d.target < 2
    np.savez(tmp_path / "zero_one.npz", x=(d.images[keep] / 16).astype("float32"), y=d.target[keep])
    (tmp_path / "binary.py").write_text(BINARY)
    job = {"name": "binary", "data": {"source": "npz", "path": "zero_one.npz", "splits": {"test": 0.25}},
           "model": {"builder": "binary:build_model"}, "training": {"batch_size": 32, "epochs": 2},
           "evaluate": {"configurations": [{"units": 16}]},
           "seeds": {"root": 3, "init": 2, "order": 1, "repeat": 1, "bo": 1}, "dispatch": {"cpu_workers": 1}}
    path = tmp_path / "binary.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    r = harness("run", str(path), "--store", str(tmp_path / "runs"), "--executor", "debug", "--no-progress",
                timeout=600)
    assert r.returncode == 0 and "2/2 units done" in r.stderr, r.stderr
    results = [rec["result"]["metrics"] for rec in _studies(path, tmp_path / "runs")]
    assert all(res["accuracy"] > 0.8 and len(res["per_class_accuracy"]) == 2 for res in results), results
