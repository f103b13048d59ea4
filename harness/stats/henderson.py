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
    """Per source (terms, then the residual): mean squares, their ranks (df), E[MS] = kms @ variances,
    and the projections (on the weighted observed cells) behind the terms' sums of squares."""

    ms: np.ndarray
    df: np.ndarray
    kms: np.ndarray
    projections: tuple[np.ndarray, ...]
    columns: tuple[np.ndarray, ...]

    def moments(self) -> np.ndarray:
        """Moment estimates of the variances (untruncated)."""
        return np.linalg.solve(self.kms, self.ms)

    def satterthwaite(self, variances: np.ndarray) -> np.ndarray:
        """Degrees of freedom of each mean square's chi-square approximation at `variances`."""
        cells = self.columns[0].shape[0] if self.columns else 0
        phi = variances[-1] * np.eye(cells)
        for v, w in zip(variances[:-1], self.columns, strict=True):
            phi += v * (w @ w.T)
        out = self.df.astype(np.float64)
        for k, proj in enumerate(self.projections):
            pp = proj @ phi
            out[k] = np.trace(pp) ** 2 / np.einsum("ij,ji->", pp, pp)
        return out


def _basis(columns: Sequence[np.ndarray]) -> np.ndarray:
    """An orthonormal basis of the span of the columns."""
    u, sv, _ = np.linalg.svd(np.concatenate(columns, axis=1), full_matrices=False)
    return u[:, sv > 1e-10 * sv[0]]


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
    projections = []
    for i, m in enumerate(masks):
        others = [one] + [cols[j] for j, u in enumerate(masks) if (u & m) != m]
        small, big = _basis(others), _basis(others + [cols[i]])
        proj = big @ big.T - small @ small.T
        projections.append(proj)
        df[i] = big.shape[1] - small.shape[1]
        ss[i] = t @ proj @ t
        kms[i, :k] = [np.sum((proj @ c) * c) for c in cols]
        kms[i, k] = df[i]
    full = _basis([one] + cols)
    n = int(counts.sum())
    df[k] = n - full.shape[1]
    ss[k] = within + t @ t - np.sum((full.T @ t) ** 2)
    kms[k, k] = df[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        return MeanSquares(ss / df, df, kms / df[:, None], tuple(projections), tuple(cols))
