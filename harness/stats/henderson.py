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
    variances; `loads[m]` = L_m with L_m' L_m = W' P_m W, where P_m is the projection term m's sum of
    squares takes of the weighted cell means and W = [W_1 ... W_k] the terms' weighted indicators
    (`sizes` columns each). With V = s2 I + W D W' on the weighted cell means, tr(P V) and
    tr(P V P V) need nothing else (and only intervals need them: the point estimates need kms)."""

    ms: np.ndarray
    df: np.ndarray
    kms: np.ndarray
    loads: tuple[np.ndarray, ...]
    sizes: tuple[int, ...]

    def moments(self) -> np.ndarray:
        """Moment estimates of the variances (untruncated)."""
        return np.linalg.solve(self.kms, self.ms)

    def satterthwaite(self, variances: np.ndarray) -> np.ndarray:
        """Degrees of freedom of each mean square's chi-square approximation at `variances`:
        tr(PV)^2 / tr(PVPV)."""
        out = self.df.astype(np.float64)
        d = np.repeat(variances[:-1], self.sizes)
        s2 = variances[-1]
        for k, load in enumerate(self.loads):
            dr = d[:, None] * (load.T @ load)
            first = s2 * self.df[k] + np.trace(dr)
            second = s2 * s2 * self.df[k] + 2.0 * s2 * np.trace(dr) + np.sum(dr * dr.T)
            out[k] = first * first / second
        return out


def _extend(basis: np.ndarray, columns: Sequence[np.ndarray]) -> np.ndarray:
    """An orthonormal basis of the span of `basis` and the columns, `basis` first (numba Gram-Schmidt:
    a LAPACK SVD of these small matrices took 30 ms on a loaded 2-core machine, BLAS threads contending)."""
    from harness.stats import kernels as kern

    return kern.extend_basis(basis, np.ascontiguousarray(np.concatenate(columns, axis=1)), 1e-9)


class _Spans:
    """Orthonormal bases of the intercept and sets of terms' columns, each built once by extending the
    basis of the set without its last term; a term inside another of the set (its mask a subset) adds
    nothing to the span and is left out."""

    def __init__(self, start: np.ndarray, cols: Sequence[np.ndarray], masks: Sequence[int]) -> None:
        self.cols = cols
        self.bases: dict[tuple[int, ...], np.ndarray] = {(): start}
        self.outer = [{k for k, u in enumerate(masks) if k != j and m & u == m} for j, m in enumerate(masks)]

    def key(self, terms: Sequence[int]) -> tuple[int, ...]:
        """The terms of a set not inside another of the set, sorted."""
        given = set(terms)
        return tuple(sorted(j for j in given if not self.outer[j] & given))

    def get(self, terms: Sequence[int]) -> np.ndarray:
        key = self.key(terms)
        if key not in self.bases:
            self.bases[key] = _extend(self.get(key[:-1]), [self.cols[key[-1]]])
        return self.bases[key]

    def extend(self, terms: Sequence[int], term: int) -> np.ndarray:
        """The columns that `term` adds to the basis of `terms` (that basis, then these, is kept)."""
        small = self.get(terms)
        both = _extend(small, [self.cols[term]])
        self.bases.setdefault(self.key([*terms, term]), both)
        return both[:, small.shape[1]:]


def ranks(codes: np.ndarray) -> np.ndarray:
    """Each code's rank among the distinct codes (np.unique's inverse, without sorting)."""
    present = np.zeros(int(codes.max()) + 1, np.int64)
    present[codes] = 1
    return (np.cumsum(present) - 1)[codes]


def cross_products(weights: np.ndarray, index: Sequence[np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """G' diag(weights) G for the one-hot blocks G_k (index[k]: each cell's column, sizes[k] columns),
    by counting (numba, no BLAS)."""
    from harness.stats import kernels as kern

    offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return kern.cross_products(weights, np.stack(index).astype(np.int64, copy=False), offset)


def mean_squares(counts: np.ndarray, means: np.ndarray, within: float, slots: Sequence[np.ndarray],
                 masks: Sequence[int]) -> MeanSquares:
    """Henderson III mean squares from per-cell counts, means and the within-cell sum of squares.

    slots: per term, the level of each cell; masks: the terms' factor masks (a term is adjusted for
    every term whose mask does not contain its own). A term with a level per observed cell (the
    replicated full interaction) projects on the complement of the others: no basis is built for it.
    """
    seen = counts > 0
    w = np.sqrt(counts[seen].astype(np.float64))
    t = w * (means[seen] - means[seen] @ counts[seen] / counts[seen].sum())
    one = w[:, None]
    index = [ranks(slot[seen]) for slot in slots]
    sizes = tuple(int(i.max()) + 1 for i in index)
    cols = []
    for idx, size in zip(index, sizes, strict=True):
        g = np.zeros((w.size, size))
        g[np.arange(w.size), idx] = w
        cols.append(g)
    wall = np.concatenate(cols, axis=1)
    k = len(masks)
    ss, df = np.zeros(k + 1), np.zeros(k + 1, np.int64)
    kms = np.zeros((k + 1, k + 1))
    loads = []
    spans = _Spans(one / np.sqrt(one.T @ one), cols, masks)
    offset = np.concatenate([[0], np.cumsum(sizes)])
    for i, m in enumerate(masks):
        others = [j for j, u in enumerate(masks) if (u & m) != m]
        small = spans.get(others)
        if sizes[i] == w.size:  # every observed cell its own level: the complement of `small`
            load = wall - small @ (small.T @ wall)
            df[i] = w.size - small.shape[1]
            ss[i] = t @ t - np.sum((small.T @ t) ** 2)
        else:
            new = spans.extend(others, i)  # the sum of squares projects on these
            load = new.T @ wall
            df[i] = new.shape[1]
            ss[i] = np.sum((new.T @ t) ** 2)
        loads.append(load)
        diag = np.sum(load * load, axis=0)
        kms[i, :k] = [diag[offset[j]:offset[j + 1]].sum() for j in range(k)]
        kms[i, k] = df[i]
    n = int(counts.sum())
    if w.size in sizes:
        df[k], ss[k] = n - w.size, within
    else:
        full = spans.get(range(k))
        df[k], ss[k] = n - full.shape[1], within + t @ t - np.sum((full.T @ t) ** 2)
    kms[k, k] = df[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        return MeanSquares(ss / df, df, kms / df[:, None], tuple(loads), sizes)
