"""Held-out metrics of a training, computed in numpy from the model's outputs (engine-neutral):
classification: accuracy, cross-entropy `loss` (softmax applied first where the outputs are not
probabilities; one output is a binary model's class-1 probability or logit) and per-class
accuracy; regression: `loss` (MSE), mse and mae. A metric only the compiled model reports is
evaluated by Keras and passed in as `reported`. With a validation split each split gets its own
values: the test split's at the top, the validation split's under `validation`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.training import perexample

LOWER_IS_BETTER = ("loss", "mse", "mae")


class TrainingFailed(Exception):
    """A training that produced no usable result (e.g. a NaN loss)."""


@dataclass(frozen=True)
class Metrics:
    values: dict[str, float]                       # the test split's
    per_class_accuracy: list[float] | None = None  # classification only
    validation: dict[str, float] | None = None     # the validation split's, where there is one
    # what the noise stream reached in the model (`models.Built`): not a metric, never compared
    noise_seeding: dict[str, Any] | None = field(default=None, compare=False)
    # the test split's per-example results (`perexample.encode`; classification only)
    examples: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def accuracy(self) -> float:
        return self.values["accuracy"]

    @property
    def loss(self) -> float:
        return self.values["loss"]

    def score(self, metric: str) -> float:
        """The objective's value: on validation where there is one, else on test."""
        return (self.validation if self.validation is not None else self.values)[metric]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.values)
        if self.per_class_accuracy is not None:
            out["per_class_accuracy"] = self.per_class_accuracy
        if self.validation is not None:
            out["validation"] = self.validation
        return out


def _probabilities(out: np.ndarray) -> np.ndarray:
    """The outputs as class probabilities: a softmax over logits; one output (a binary model's
    sigmoid, or its logit) is class 1's probability."""
    if out.shape[1] == 1:
        p = out[:, 0] if out.min() >= 0 and out.max() <= 1 else 1.0 / (1.0 + np.exp(-out[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    if out.min() >= 0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return out
    z = np.exp(out - out.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _classification(out: np.ndarray, y: np.ndarray, n_classes: int
                    ) -> tuple[dict[str, float], list[float], np.ndarray]:
    if not np.isfinite(out).all():
        raise TrainingFailed("non-finite predictions (the training diverged to NaN/inf)")
    probs = _probabilities(out.astype(np.float64))
    pred = probs.argmax(axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    loss = float(-np.log(p_true).mean())
    if not math.isfinite(loss):
        raise TrainingFailed("non-finite loss (the training diverged to NaN/inf)")
    per_class = [float((pred[y == c] == c).mean()) if (y == c).any() else float("nan")
                 for c in range(n_classes)]
    return {"accuracy": float((pred == y).mean()), "loss": loss}, per_class, pred


def _regression(out: np.ndarray, y: np.ndarray) -> dict[str, float]:
    err = out.astype(np.float64).reshape(len(y), -1) - y.astype(np.float64).reshape(len(y), -1)
    mse, mae = float(np.mean(err ** 2)), float(np.mean(np.abs(err)))
    if not (math.isfinite(mse) and math.isfinite(mae)):
        raise TrainingFailed("non-finite predictions (the training diverged to NaN/inf)")
    return {"loss": mse, "mse": mse, "mae": mae}


@dataclass
class Split:
    """One evaluated split's outputs and targets."""

    out: np.ndarray
    y: np.ndarray
    reported: dict[str, float] = field(default_factory=dict)


def split_metrics(test: Split, val: Split | None, n_classes: int) -> Metrics:
    """Metrics of the test split (with its per-example results) and, where there is one, of the
    validation split."""
    def one(s: Split) -> tuple[dict[str, float], list[float] | None, dict[str, Any] | None]:
        if n_classes:
            values, per_class, pred = _classification(s.out, s.y, n_classes)
            return {**values, **s.reported}, per_class, perexample.encode(pred, s.y, n_classes)
        return {**_regression(s.out, s.y), **s.reported}, None, None

    values, per_class, examples = one(test)
    return Metrics(values, per_class, None if val is None else one(val)[0], examples=examples)
