"""The only module that trains: a configuration plus its seeds in, held-out metrics out.

Engine `fit` is the reference: a fresh Keras model per training, explicitly seeded
initializers, the harness's own per-epoch permutation, one `model.fit` over all epochs' batches.
Engines `exact` (same bits as `fit`, one built model reused) and `vectorized` (many seeds as
one stacked model) live in harness/engines.py; `Trainer.engine` names the one that runs.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import data as data_mod
from harness.models import BUILDERS
from harness.spec import TRAINING_FIELDS, JobSpec


class TrainingFailed(Exception):
    """A training that produced no usable result (e.g. a NaN loss)."""


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    loss: float
    per_class_accuracy: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "loss": self.loss,
                "per_class_accuracy": self.per_class_accuracy}


def held_out_metrics(probs: np.ndarray, y: np.ndarray, n_classes: int) -> Metrics:
    """Accuracy, cross-entropy and per-class accuracy computed in numpy (engine-neutral)."""
    probs = probs.astype(np.float64)
    pred = probs.argmax(axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    loss = float(-np.log(p_true).mean())
    if not math.isfinite(loss) or not np.isfinite(probs).all():
        raise TrainingFailed("non-finite predictions (the training diverged to NaN/inf)")
    per_class = [float((pred[y == c] == c).mean()) if (y == c).any() else float("nan")
                 for c in range(n_classes)]
    return Metrics(float((pred == y).mean()), loss, per_class)


def epoch_batches(n: int, batch_size: int, epochs: int, order_seed: int) -> list[np.ndarray]:
    """Index batches of every epoch in training order: one permutation of the training set per
    epoch from the order seed (the harness shuffles, not Keras), the last batch of an epoch short.

    One `fit` over these batches gives the same bits as one `fit(shuffle=False)` per epoch."""
    rng = np.random.default_rng(order_seed)
    out = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        out.extend(perm[i:i + batch_size] for i in range(0, n, batch_size))
    return out


def make_optimizer(name: str, learning_rate: float) -> Any:
    import keras
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    return keras.optimizers.RMSprop(learning_rate=learning_rate)


def compile_model(model: Any, training: dict[str, Any], loss: str, backend: str) -> None:
    """`model.compile` as engine `fit` does it. Under TensorFlow jit_compile is pinned off: Keras's
    "auto" turns XLA on for GPUs only when op determinism is off, which would mix XLA into the
    determinism comparison (XLA is `training.xla`). Under jax "auto" is jax.jit (off would run
    op by op, ~20x slower)."""
    model.compile(optimizer=make_optimizer(training["optimizer"], training["learning_rate"]), loss=loss,
                  jit_compile=False if backend == "tensorflow" else "auto")


def fit_batches(model: Any, ds: data_mod.Dataset, training: dict[str, Any], order_seed: int) -> None:
    """One `model.fit` over every epoch's batches in the harness's order (no Keras shuffling)."""
    batches = epoch_batches(len(ds.y_train), int(training["batch_size"]), int(training["epochs"]), order_seed)
    model.fit(((ds.x_train[idx], ds.y_train[idx]) for idx in batches), steps_per_epoch=len(batches),
              epochs=1, shuffle=False, verbose=0)


class Trainer:
    """Trains configurations of one job with its engine; datasets are loaded once per split seed."""

    def __init__(self, spec: JobSpec) -> None:
        from harness import engines
        from harness.determinism import backend_name
        self.spec = spec
        self.backend = backend_name()
        self._data: dict[int, data_mod.Dataset] = {}
        self.engine = engines.resolve(spec.training.engine, self.backend, spec.model.builder,
                                      spec.training.xla)
        name, jit = self.engine.split("+")[0], self.engine.endswith("+xla")
        self._exact = engines.ExactEngine(BUILDERS[spec.model.builder], spec.training.loss, jit, self.backend) \
            if name == "exact" else None
        self._vectorized = engines.VectorizedEngine(jit) if name == "vectorized" else None
        if name == "fit" and self.backend != "tensorflow" and importlib.util.find_spec("tensorflow"):
            import tensorflow  # noqa: F401  fit's keras.utils.set_random_seed imports it whatever the
            # backend: now, while a local worker's start-up lines go to its log, not at its first training

    def dataset(self, split_seed: int) -> data_mod.Dataset:
        if split_seed not in self._data:
            self._data[split_seed] = data_mod.load(self.spec.data, split_seed, self.spec.path)
        return self._data[split_seed]

    def settings(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(training values, model args) for one configuration."""
        spec = self.spec
        training = {**spec.training.fixed, **{k: v for k, v in config.items() if k in TRAINING_FIELDS}}
        info = BUILDERS[spec.model.builder]
        model_args = {**info.defaults, **spec.model.args,
                      **{k: v for k, v in config.items() if k in info.params}}
        return training, model_args

    def train(self, config: dict[str, Any], seeds: dict[str, int]) -> Metrics:
        """One training of `config` with seeds init, order, split and noise."""
        if self._vectorized is not None:
            result = self.train_many(config, [seeds])[0]
            if isinstance(result, Exception):
                raise result
            return result
        ds = self.dataset(seeds["split"])
        training, model_args = self.settings(config)
        if self._exact is not None:
            probs = self._exact.train(ds, training, model_args, seeds)
        else:
            probs = self._fit(ds, training, model_args, seeds)
        return held_out_metrics(probs, ds.y_test, ds.n_classes)

    def train_many(self, config: dict[str, Any], seeds: list[dict[str, int]]) -> list[Metrics | Exception]:
        """Trainings of `config`, one per seed dict, as one vectorised run where the engine is
        `vectorized` (else one by one); a failed training is its exception in the list."""
        if self._vectorized is None:
            out: list[Metrics | Exception] = []
            for s in seeds:
                try:
                    out.append(self.train(config, s))
                except TrainingFailed as exc:
                    out.append(exc)
            return out
        training, model_args = self.settings(config)
        results: dict[int, Metrics | Exception] = {}
        for split in sorted({s["split"] for s in seeds}):  # one dataset per run
            pos = [i for i, s in enumerate(seeds) if s["split"] == split]
            ds = self.dataset(split)
            probs = self._vectorized.train_many(ds, training, model_args, [seeds[i] for i in pos])
            for i, p in zip(pos, probs, strict=True):
                try:
                    results[i] = held_out_metrics(p, ds.y_test, ds.n_classes)
                except TrainingFailed as exc:
                    results[i] = exc
        return [results[i] for i in range(len(seeds))]

    def _fit(self, ds: data_mod.Dataset, training: dict[str, Any], model_args: dict[str, Any],
             seeds: dict[str, int]) -> np.ndarray:
        """Engine `fit`: a fresh model, one `model.fit`; returns the test-set probabilities."""
        import keras

        keras.utils.set_random_seed(seeds["noise"])
        info = BUILDERS[self.spec.model.builder]
        assert info.build is not None
        model = info.build(ds.x_train.shape[1:], ds.n_classes, seeds["init"], seeds["noise"], **model_args)
        compile_model(model, training, self.spec.training.loss, self.backend)
        fit_batches(model, ds, training, seeds["order"])
        return keras.ops.convert_to_numpy(model(ds.x_test, training=False))
