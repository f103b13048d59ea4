"""Models the harness did not write: a user's builder in either convention (the harness's
build(hp, input_shape, n_classes), KerasTuner's build_model(hp)), the built-in conv, their seeds
(init moves weights, noise moves dropout masks only, fresh processes agree bit for bit) and
engine exact giving engine fit's bits for them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.job.spec import DataSpec
from harness.job.usercode import declared, hyperparameters
from harness.job.usermodel import recorded_space
from harness.training import data
from harness.training.engines import ExactEngine, FitEngine
from harness.training.models import builder_info
from tests.conftest import REPO

USER_CNN = textwrap.dedent('''
    import keras


    def build(hp, input_shape, n_classes):
        """A user's CNN with batch normalisation and dropout (the harness's convention)."""
        return keras.Sequential([
            keras.Input(shape=input_shape),
            keras.layers.Reshape((8, 8, 1)),
            keras.layers.Conv2D(hp.get("filters", 4), 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(hp.get("dropout", 0.3)),
            keras.layers.Dense(n_classes, activation="softmax"),
        ])


    def build_model(hp):
        """KerasTuner's convention, compiling itself with its own optimizer, loss and metrics."""
        model = keras.Sequential([
            keras.Input(shape=(64,)),
            keras.layers.Reshape((8, 8, 1)),
            keras.layers.Conv2D(hp.Int("filters", 4, 12, step=4), 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(hp.Float("dropout", 0.1, 0.5, step=0.1)),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.RMSprop(hp.Choice("lr", [0.01, 0.001])),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
''')
TRAINING = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 2}
LOSS = "sparse_categorical_crossentropy"


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("usermods")
    (d / "user_cnn_mod.py").write_text(USER_CNN)
    return str(d)


@pytest.fixture(scope="module")
def ds() -> data.Dataset:
    return data.load(DataSpec("digits", None, 0.25, 160, 60), 1)


def test_hp_answers_the_configuration_and_records_the_space() -> None:
    def build_model(hp: Any) -> tuple[Any, ...]:
        return (hp.Int("units", 32, 128, step=32), hp.Float("lr", 1e-4, 1e-2, sampling="log"),
                hp.Choice("act", ["relu", "tanh"]), hp.Boolean("bn"), hp.Fixed("layers", 2))

    assert build_model(hyperparameters({})) == (32, 1e-4, "relu", False, 2)  # KerasTuner's defaults
    assert build_model(hyperparameters({"units": 96, "lr": 0.003, "act": "tanh", "bn": True})) == \
        (96, 0.003, "tanh", True, 2)
    assert build_model(hyperparameters({"units": 1024}))[0] == 1024  # as given, as KerasTuner answers
    space = {d.name: (d.kind, d.args) for d in recorded_space(declared(build_model, {}))}
    assert space == {"units": ("quniform", (32, 128, 32)),
                     "lr": ("loguniform", (pytest.approx(np.log(1e-4)), pytest.approx(np.log(1e-2)))),
                     "act": ("choice", ("relu", "tanh")), "bn": ("choice", (False, True))}


def _weights(info: Any, ds: data.Dataset, init: int, noise: int, args: dict[str, Any]) -> list[np.ndarray]:
    model = info.build(ds.x_train.shape[1:], ds.n_classes, init, noise, **args).model
    return [np.array(w) for w in model.get_weights()]


def _dropout_output(info: Any, ds: data.Dataset, init: int, noise: int) -> np.ndarray:
    model = info.build(ds.x_train.shape[1:], ds.n_classes, init, noise, filters=4, dropout=0.5).model
    dropout = next(layer for layer in model.layers if "Dropout" in type(layer).__name__)
    return np.array(dropout(np.ones((4, 64), np.float32), training=True))


def test_init_seed_moves_weights_noise_seed_moves_only_dropout(module_dir: str, ds: data.Dataset) -> None:
    info = builder_info("user_cnn_mod:build", (module_dir,))
    args = {"filters": 4, "dropout": 0.5}
    base = _weights(info, ds, 1, 1, args)
    assert any(not np.array_equal(a, b) for a, b in zip(base, _weights(info, ds, 2, 1, args), strict=True))
    same_init = _weights(info, ds, 1, 2, args)
    assert all(np.array_equal(a, b) for a, b in zip(base, same_init, strict=True))
    assert np.array_equal(_dropout_output(info, ds, 1, 1), _dropout_output(info, ds, 2, 1))  # init: masks stay
    assert not np.array_equal(_dropout_output(info, ds, 1, 1), _dropout_output(info, ds, 1, 2))


@pytest.mark.parametrize("ref, args", [
    ("user_cnn_mod:build", {"filters": 4, "dropout": 0.3}),
    ("user_cnn_mod:build_model", {"filters": 8, "dropout": 0.3, "lr": 0.01}),
    ("conv", {"blocks": 1, "filters": 4, "kernel_size": 3, "pooling": "max", "dropout": 0.25,
              "dense_units": 16, "activation": "relu"}),
])
def test_exact_gives_fits_bits_for_any_model(module_dir: str, ds: data.Dataset, ref: str,
                                             args: dict[str, Any]) -> None:
    images = data.Dataset(ds.x_train.reshape(-1, 8, 8), ds.y_train, ds.x_test.reshape(-1, 8, 8), ds.y_test,
                          ds.n_classes) if ref == "conv" else ds
    info = builder_info(ref, (module_dir,))
    fit, exact = FitEngine(info, LOSS, "tensorflow"), ExactEngine(info, LOSS, "tensorflow")
    outs = []
    for seeds in ({"init": 1, "order": 2, "noise": 3}, {"init": 4, "order": 5, "noise": 6}):
        a, b = fit.train(images, TRAINING, args, seeds), exact.train(images, TRAINING, args, seeds)
        assert np.array_equal(a.outputs, b.outputs), (ref, seeds)
        assert a.noise_seeding == b.noise_seeding  # returned with the outputs, not left on the engine
        assert a.noise_seeding is not None and a.noise_seeding["reseeded"]
        outs.append(a.outputs)
    assert not np.array_equal(outs[0], outs[1])


SCRIPT = """
import hashlib, sys
from harness.job.spec import DataSpec
from harness.training import data
from harness.training.engines import FitEngine
from harness.training.models import builder_info
ds = data.load(DataSpec("digits", None, 0.25, 160, 60), 1)
engine = FitEngine(builder_info("user_cnn_mod:build", (sys.argv[1],)), "sparse_categorical_crossentropy", "tensorflow")
out = engine.train(ds, {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 2},
                   {"filters": 4, "dropout": 0.3}, {"init": 11, "order": 12, "noise": 13})
print(hashlib.sha256(out.outputs.tobytes()).hexdigest())
"""


def test_same_seeds_same_bits_in_fresh_processes(module_dir: str) -> None:
    env = {"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    digests = [subprocess.run([sys.executable, "-c", SCRIPT, module_dir], env=env, capture_output=True, text=True,
                              check=True, timeout=300).stdout.split()[-1] for _ in range(2)]
    assert digests[0] == digests[1] and len(digests[0]) == 64


def test_validation_split_is_carved_from_train_by_the_split_seed() -> None:
    spec = DataSpec("digits", None, 0.25, None, None, validation=0.2)
    a, b = data.load(spec, 1), data.load(spec, 2)
    plain = data.load(DataSpec("digits", None, 0.25, None, None), 1)
    assert np.array_equal(a.x_test, plain.x_test)  # the test split does not move
    assert a.n_val == round(0.2 * len(plain.y_train)) and len(a.y_train) + a.n_val == len(plain.y_train)
    assert np.array_equal(a.x_eval, np.concatenate([a.x_val, a.x_test]))
    assert not np.array_equal(a.x_val, b.x_val)
    assert hashlib.sha256(plain.x_eval.tobytes()).digest() == hashlib.sha256(plain.x_test.tobytes()).digest()


def test_a_seed_the_models_code_fixed_is_recorded_not_claimed(tmp_path: Path) -> None:
    (tmp_path / "fixed_seed_mod.py").write_text(textwrap.dedent('''
        import keras


        def build(hp, input_shape, n_classes):
            return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dropout(0.5, seed=42),
                                     keras.layers.GaussianNoise(0.1), keras.layers.Dense(n_classes)])
    '''))
    info = builder_info("fixed_seed_mod:build", (str(tmp_path),))
    built = info.build((4,), 3, 1, 2)
    assert built.noise_seeding == {"fixed": ["Dropout@2"], "reseeded": ["GaussianNoise@3"]}
    assert not hasattr(built.model, "harness_seeding")  # nothing is left on the Keras model


def test_a_users_module_is_imported_without_leaving_sys_path_changed(tmp_path: Path) -> None:
    """The job file's directory is searched while the user's module is imported, then taken out of
    `sys.path` again; a missing function is one UserError naming it (harness/job/usercode.py, the one
    place the user's code is resolved: model builders and data functions alike)."""
    from harness.errors import UserError, Where
    from harness.job.usercode import import_function
    (tmp_path / "path_probe_mod.py").write_text("def make_data():\n    return 1\n")
    before = list(sys.path)
    fn = import_function("path_probe_mod:make_data", (str(tmp_path),), Where(file="job.yaml", key="data.source"),
                         what="data function")
    assert fn() == 1 and sys.path == before
    with pytest.raises(UserError, match="job.yaml: data.source: module 'path_probe_mod' .* has no function 'nope'"):
        import_function("path_probe_mod:nope", (str(tmp_path),), Where(file="job.yaml", key="data.source"))
    assert sys.path == before
