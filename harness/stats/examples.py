"""Statistics of per-example results over m trainings of one arm: the std of accuracy with its
95% interval, churn between trainings, and the share of the accuracy's variance that independent
per-example errors predict (Jordan, "Calibrated Chaos", ICLR 2024). Pure numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.errors import UserError

ALPHA = 0.025  # each tail of a 95% interval


@dataclass(frozen=True)
class ArmStats:
    """One arm's `m` trainings on `n` test examples."""

    m: int
    n: int
    std: float                      # of accuracy, ddof 1
    std_ci: tuple[float, float]     # 95%, chi-square (normal accuracies)
    churn: float                    # mean over pairs of trainings
    independent: float              # variance of accuracy that independent errors predict
    share: float                    # independent / std**2 (nan when std is 0)
    share_ci: tuple[float, float]   # 95%, from the std's interval (the numerator's error is far smaller)


def churn(a: np.ndarray, b: np.ndarray) -> float:
    """The share of test examples whose predicted class differs between two trainings."""
    return float(np.mean(a != b))


def mean_churn(predicted: np.ndarray) -> float:
    """Mean churn over every pair of rows of [m, n] predicted classes: sum over examples of the
    pairs that disagree (m^2 - sum_c count_c^2) / 2, over pairs x examples."""
    m, n = predicted.shape
    if m < 2:
        raise UserError("churn needs at least two trainings")
    classes = int(predicted.max()) + 1
    counts = np.zeros((n, classes), np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), (m, n)), predicted), 1)
    disagree = (m * m - (counts ** 2).sum(axis=1)) / 2
    return float(disagree.sum() / (m * (m - 1) / 2 * n))


def independent_variance(correct: np.ndarray) -> float:
    """sum_i p_i (1 - p_i) / n^2 from [m, n] right-or-wrong results, each p_i(1 - p_i) estimated
    without bias as k_i (m - k_i) / (m (m - 1)) (k_i: trainings right on example i; the plug-in
    k/m (1 - k/m) is low by a factor (m - 1) / m)."""
    m, n = correct.shape
    if m < 2:
        raise UserError("the independent-errors variance needs at least two trainings")
    k = correct.sum(axis=0).astype(np.float64)
    return float((k * (m - k)).sum() / (m * (m - 1)) / n ** 2)


def std_interval(std: float, m: int) -> tuple[float, float]:
    """95% interval of a std from m normal draws: std * sqrt((m-1) / chi2 quantiles)."""
    from scipy import special  # chdtri(df, p): the chi-square quantile with upper tail p
    df = m - 1
    return std * math.sqrt(df / special.chdtri(df, ALPHA)), std * math.sqrt(df / special.chdtri(df, 1 - ALPHA))


def arm_stats(correct: np.ndarray, predicted: np.ndarray) -> ArmStats:
    """An arm's statistics from its [m, n] per-example results (accuracy is the row mean of `correct`)."""
    m, n = correct.shape
    counts = correct.sum(axis=1)
    std = float(counts.std(ddof=1)) / n if np.ptp(counts) else 0.0  # exact 0 when every training scores alike
    ind = independent_variance(correct)
    lo, hi = std_interval(std, m)
    nan = float("nan")
    share, share_ci = (ind / std ** 2, (ind / hi ** 2, ind / lo ** 2)) if std > 0 else (nan, (nan, nan))
    return ArmStats(m, n, std, (lo, hi), mean_churn(predicted), ind, share, share_ci)
