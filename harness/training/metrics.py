"""Held-out metrics of a training, computed in numpy from test-set probabilities (engine-neutral)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


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
