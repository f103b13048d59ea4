"""The only module that trains: a configuration plus its seeds in, held-out metrics out.

Engine `fit` is the reference: a fresh Keras model per training, explicitly seeded
initializers, the harness's own per-epoch permutation, one `model.fit` over all epochs' batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import data as data_mod
from harness.models import BUILDERS
from harness.spec import JobSpec


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


class Trainer:
    """Trains configurations of one job; datasets are loaded once per split seed."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self._data: dict[int, data_mod.Dataset] = {}

    def dataset(self, split_seed: int) -> data_mod.Dataset:
        if split_seed not in self._data:
            self._data[split_seed] = data_mod.load(self.spec.data, split_seed, self.spec.path)
        return self._data[split_seed]

    def settings(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(training values, model args) for one configuration."""
        spec = self.spec
        training = {**spec.training.fixed, **{k: v for k, v in config.items() if k in
                                              ("optimizer", "learning_rate", "batch_size", "epochs")}}
        info = BUILDERS[spec.model.builder]
        model_args = {**info.defaults, **spec.model.args,
                      **{k: v for k, v in config.items() if k in info.params}}
        return training, model_args

    def train(self, config: dict[str, Any], seeds: dict[str, int]) -> Metrics:
        """One training of `config` with seeds init, order, split and noise."""
        import keras

        ds = self.dataset(seeds["split"])
        training, model_args = self.settings(config)
        keras.utils.set_random_seed(seeds["noise"])
        info = BUILDERS[self.spec.model.builder]
        assert info.build is not None
        model = info.build(ds.x_train.shape[1:], ds.n_classes, seeds["init"], seeds["noise"], **model_args)
        model.compile(optimizer=make_optimizer(training["optimizer"], training["learning_rate"]),
                      loss=self.spec.training.loss)
        batches = epoch_batches(len(ds.y_train), int(training["batch_size"]), int(training["epochs"]),
                                seeds["order"])
        model.fit(((ds.x_train[idx], ds.y_train[idx]) for idx in batches), steps_per_epoch=len(batches),
                  epochs=1, shuffle=False, verbose=0)
        probs = keras.ops.convert_to_numpy(model(ds.x_test, training=False))
        return held_out_metrics(probs, ds.y_test, ds.n_classes)
