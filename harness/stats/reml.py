"""REML variance components of an unbalanced table of random intercepts (crossed or nested).

The lme4 formulation (Bates et al. 2015): with relative factors theta_k = sigma_k / sigma, the
profiled REML deviance is log|A| + (n - p) log r2, where A = D M D + diag(1 on random effects, 0 on
the intercept) is built from the cross-products M of [Z X] (size: levels of all terms + 1, not rows),
D = diag(theta per random effect, 1), and r2 = y'y - b'A^-1 b, b = D [Z'y; X'y], is the penalised
residual sum of squares. Everything comes from per-cell counts and sums: an evaluation eliminates the
largest term's (diagonal) block and factors the rest (numba, `kernels.reml_deviance`), whatever the
number of rows. BFGS on the analytic gradient (`kernels.reml_minimise`; the deviance is even in each
theta, so theta runs free in sign) starts from the moment estimates, then from equal-factor points
until one of them ends in the best basin so far (two starts agree: the rest are not run; a start
that finds a lower minimum is converged there and the search goes on); the best fit must pass a
convergence check (gradient, and no descent off a zero factor), and a component at theta = 0 is a
boundary estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats.henderson import cross_products, ranks

GTOL = 1e-4  # largest gradient of the deviance (per unit of theta, above 1) accepted as converged
BASIN = 0.02  # a later start this close to the best minimum (per unit of theta, above 1) is in its basin


@dataclass(frozen=True)
class RemlFit:
    """Variances (terms, then the residual), -2 REML log-likelihood (lme4's REML criterion),
    whether the fit passed its convergence check, and which terms are at zero."""

    variances: np.ndarray
    deviance: float
    converged: bool
    boundary: np.ndarray


@dataclass
class Problem:
    """Cross-products of one table's random-effect indicators, intercept and centred values, split
    for `kernels.reml_deviance`: block 1 is the term with the most levels (its cross-product is
    diagonal), block 2 the other terms' levels and the intercept (last); pv[v] sums the outer
    products of m21's columns whose block-1 count m1 is vals[v]. Levels without an observation are
    dropped."""

    m1: np.ndarray
    m21: np.ndarray
    m22: np.ndarray
    vals: np.ndarray
    pv: np.ndarray
    c: np.ndarray
    yy: float
    n: int
    term_of: np.ndarray
    nterms: int

    @classmethod
    def build(cls, counts: np.ndarray, sums: np.ndarray, yy: float, slots: Sequence[np.ndarray]) -> Problem:
        """counts, sums: per cell (observations, sum of centred values); yy: sum of squared centred
        values; slots: per term, the level of each cell."""
        seen = counts > 0
        index, term_of = [], []
        for k, slot in enumerate(slots):
            idx = ranks(slot[seen])
            index.append(idx)
            term_of.append(np.full(int(idx.max()) + 1, k))
        first = max(range(len(slots)), key=lambda k: term_of[k].size)
        order = [first] + [k for k in range(len(slots)) if k != first]
        sizes = [term_of[k].size for k in order] + [1]
        cols = [index[k] for k in order] + [np.zeros(int(seen.sum()), np.int64)]
        m = cross_products(counts[seen].astype(np.float64), cols, sizes)
        c = np.concatenate([np.bincount(i, sums[seen], minlength=na) for i, na in zip(cols, sizes, strict=True)])
        q1 = sizes[0]
        m1, m21 = np.diag(m)[:q1].copy(), np.ascontiguousarray(m[q1:, :q1])
        vals = np.unique(m1)
        pv = np.stack([m21[:, m1 == v] @ m21[:, m1 == v].T for v in vals])
        return cls(m1, m21, np.ascontiguousarray(m[q1:, q1:]), vals, pv, c, float(yy), int(counts.sum()),
                   np.concatenate([term_of[k] for k in order]), len(slots))

    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, float]:
        """The profiled REML deviance (without its constant), its gradient in theta and the penalised
        residual sum of squares r2 (sigma^2 = r2 / (n - 1))."""
        from harness.stats import kernels as kern

        dev, grad, r2 = kern.reml_deviance(np.asarray(theta, np.float64), self.term_of, self.m1, self.m21,
                                           self.m22, self.vals, self.pv, self.c, self.yy, float(self.n - 1))
        return float(dev), grad, float(r2)

    def deviance(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The profiled REML deviance (without its constant) and its gradient in theta."""
        dev, grad, _ = self.evaluate(theta)
        return dev, grad


def _minimise(problem: Problem, start: np.ndarray, target: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """BFGS from `start`, and the deviance where it ends; with a `target` (the best minimum so far),
    stopped once inside its basin."""
    from harness.stats import kernels as kern

    radius = 0.0 if target is None else _radius(target)
    theta, dev, _ = kern.reml_minimise(np.asarray(start, np.float64), problem.term_of, problem.m1, problem.m21,
                                     problem.m22, problem.vals, problem.pv, problem.c, problem.yy,
                                     float(problem.n - 1), 500, 1e-6, 1e-13,
                                     np.zeros(problem.nterms) if target is None else target, radius)
    return np.asarray(theta), float(dev)


def _radius(target: np.ndarray) -> float:
    """How close to the minimum `target` (largest difference of a factor) a point is in its basin."""
    return BASIN * max(1.0, float(target.max(initial=0.0)))


def _within(theta: np.ndarray, target: np.ndarray) -> bool:
    """Whether theta lies in the basin of the minimum `target`."""
    return float(np.max(np.abs(theta - target), initial=0.0)) <= _radius(target)


def _snap(problem: Problem, ended: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
    """theta (with its deviance, as `_minimise` ends) with the tiny relative factors whose removal
    does not raise the deviance set to 0, and its deviance."""
    theta, dev = ended
    for k in np.flatnonzero((theta > 0) & (theta < 1e-4)).tolist():
        trial = theta.copy()
        trial[k] = 0.0
        trial_dev = problem.deviance(trial)[0]
        if trial_dev <= dev + 1e-10:
            theta, dev = trial, trial_dev
    return theta, dev


def starts(moments: np.ndarray) -> list[np.ndarray]:
    """Starting relative factors: the moment estimates (zero where negative, lifted off the
    boundary), then equal factors at 0.3, 1 and 2."""
    k = moments.size - 1
    resid = moments[-1] if moments[-1] > 0 else 1.0
    first = np.sqrt(np.maximum(moments[:-1], 0.0) / resid)
    return [np.maximum(first, 0.05)] + [np.full(k, x) for x in (0.3, 1.0, 2.0)]


def _escape(problem: Problem, theta: np.ndarray, dev: float) -> np.ndarray | None:
    """A point below theta's deviance `dev` next to a zero factor (theta is then no minimum), or None."""
    for k in np.flatnonzero(theta == 0.0).tolist():
        for step in (1e-3, 1e-2, 0.1, 1.0):
            trial = theta.copy()
            trial[k] = step
            if problem.deviance(trial)[0] < dev - 1e-9:
                return trial
    return None


def fit(problem: Problem, starts: Sequence[np.ndarray]) -> RemlFit:
    """The best REML fit over `starts` (relative factors), checked for convergence: a small gradient
    (it is 0 at theta_k = 0, the deviance being even in theta_k) and no descent off a zero factor."""
    best, best_dev = _snap(problem, _minimise(problem, np.asarray(starts[0], np.float64)))
    for start in starts[1:]:
        theta, dev = _snap(problem, _minimise(problem, np.asarray(start, np.float64), best))
        if dev < best_dev - 1e-9:  # a better basin: converge in it
            best, best_dev = _snap(problem, _minimise(problem, theta))
        elif _within(theta, best):  # two starts agree on the basin: the later ones are not run
            break
    escape = _escape(problem, best, best_dev)
    for _ in range(problem.nterms):  # a zero factor that is no minimum: descend from beside it
        if escape is None:
            break
        theta, dev = _snap(problem, _minimise(problem, escape))
        if not dev < best_dev:
            break
        best, best_dev = theta, dev
        escape = _escape(problem, best, best_dev)
    _, grad, r2 = problem.evaluate(best)
    worst = float(np.max(np.abs(grad), initial=0.0))
    ok = worst <= GTOL * max(1.0, float(best.max(initial=0.0))) and escape is None
    dof = problem.n - 1
    crit = best_dev + dof * (1.0 + np.log(2.0 * np.pi / dof))  # lme4's REML criterion
    sigma2 = r2 / dof
    return RemlFit(np.append(best ** 2 * sigma2, sigma2), float(crit), ok, best == 0.0)
