"""Henderson's method III mean squares of an unbalanced table, for moment estimates and intervals.

A source's sum of squares is the reduction R(term | every term not containing it) of a least-squares
fit of the indicator columns (Henderson 1953, method III; SAS's type III for random models): on
balanced data it is the ANOVA sum of squares. Its expectation is linear in the variances
(coefficients tr(A Z_l Z_l')), which the moment estimates solve; its distribution is approximated
by a scaled chi-square with Satterthwaite's degrees of freedom (tr(AV))^2 / tr(AVAV) at given
variances (exact for the residual and on balanced data). Every matrix lives on the observed cells,
weighted by the square root of their counts, so the cost does not grow with the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanSquares:
    """Per source (terms, then the residual): mean squares, their ranks (df) and E[MS] = kms @
    variances; `loadings[m][l]` = N_m' W_l, where N_m is an orthonormal basis of the part of the
    weighted cell space that term m's sum of squares projects on and W_l term l's weighted indicators."""

    ms: np.ndarray
    df: np.ndarray
    kms: np.ndarray
    loadings: tuple[tuple[np.ndarray, ...], ...]

    def moments(self) -> np.ndarray:
        """Moment estimates of the variances (untruncated)."""
        return np.linalg.solve(self.kms, self.ms)

    def satterthwaite(self, variances: np.ndarray) -> np.ndarray:
        """Degrees of freedom of each mean square's chi-square approximation at `variances`:
        tr(C)^2 / tr(C^2), C = N_m' V N_m the covariance of the projected weighted cell means."""
        out = self.df.astype(np.float64)
        for k, loads in enumerate(self.loadings):
            cov = variances[-1] * np.eye(int(self.df[k]))
            for v, g in zip(variances[:-1], loads, strict=True):
                cov += v * (g @ g.T)
            out[k] = np.trace(cov) ** 2 / np.sum(cov * cov)
        return out


def _extend(basis: np.ndarray, columns: Sequence[np.ndarray]) -> np.ndarray:
    """An orthonormal basis of the span of `basis` and the columns, `basis` first (numba Gram-Schmidt:
    a LAPACK SVD of these small matrices took 30 ms on a loaded 2-core machine, BLAS threads contending)."""
    from harness.stats import kernels as kern

    return kern.extend_basis(basis, np.ascontiguousarray(np.concatenate(columns, axis=1)), 1e-9)


def mean_squares(counts: np.ndarray, means: np.ndarray, within: float, slots: Sequence[np.ndarray],
                 masks: Sequence[int]) -> MeanSquares:
    """Henderson III mean squares from per-cell counts, means and the within-cell sum of squares.

    slots: per term, the level of each cell; masks: the terms' factor masks (a term is adjusted for
    every term whose mask does not contain its own).
    """
    seen = counts > 0
    w = np.sqrt(counts[seen].astype(np.float64))
    t = w * (means[seen] - means[seen] @ counts[seen] / counts[seen].sum())
    one = w[:, None]
    cols = []
    for slot in slots:
        _, index = np.unique(slot[seen], return_inverse=True)
        g = np.zeros((w.size, int(index.max()) + 1))
        g[np.arange(w.size), index.reshape(-1)] = w
        cols.append(g)
    k = len(masks)
    ss, df = np.zeros(k + 1), np.zeros(k + 1, np.int64)
    kms = np.zeros((k + 1, k + 1))
    loadings = []
    start = one / np.sqrt(one.T @ one)
    for i, m in enumerate(masks):
        small = _extend(start, [cols[j] for j, u in enumerate(masks) if (u & m) != m] or [one[:, :0]])
        new = _extend(small, [cols[i]])[:, small.shape[1]:]  # the sum of squares projects on these
        loads = tuple(new.T @ c for c in cols)
        loadings.append(loads)
        df[i] = new.shape[1]
        ss[i] = np.sum((new.T @ t) ** 2)
        kms[i, :k] = [np.sum(g * g) for g in loads]
        kms[i, k] = df[i]
    full = _extend(start, cols)
    n = int(counts.sum())
    df[k] = n - full.shape[1]
    ss[k] = within + t @ t - np.sum((full.T @ t) ** 2)
    kms[k, k] = df[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        return MeanSquares(ss / df, df, kms / df[:, None], tuple(loadings))
