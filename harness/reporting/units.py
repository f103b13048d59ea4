"""The units a report states its metric in: accuracy in percentage points (a fraction x 100), any
other metric (loss, mse, mae, a metric the model reports) in its own units; and which way is
better. One object, so no section guesses."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.job.spec import JobSpec


@dataclass(frozen=True)
class Units:
    metric: str
    higher_is_better: bool

    @property
    def points(self) -> bool:
        """Accuracy, stated in percentage points."""
        return self.metric == "accuracy"

    @property
    def scale(self) -> float:
        return 100.0 if self.points else 1.0

    @property
    def short(self) -> str:
        """The unit after a number: "pts", or the metric's name."""
        return "pts" if self.points else self.metric

    @property
    def mean_unit(self) -> str:
        """How a mean score is labelled: accuracy in percent, any other metric by its name."""
        return "%" if self.points else self.metric

    @property
    def long(self) -> str:
        return "points" if self.points else f"{self.metric} units"

    def value(self, x: float | None, digits: int = 2) -> str:
        """A metric value (or a std) in these units."""
        if x is None or not math.isfinite(x):
            return ""
        return f"{100 * x:.{digits}f}" if self.points else f"{x:.4g}"

    def variance(self, v: float, digits: int = 3) -> str:
        """A variance in these units squared."""
        return f"{1e4 * v:.{digits}f}" if self.points else f"{v:.4g}"


def units_of(spec: JobSpec) -> Units:
    """The units of a job's objective metric."""
    return Units(spec.objective_metric, spec.objective_direction == "max")
