"""One unbalanced table (cells short or missing): REML estimates, intervals from Henderson III.

The estimates are REML (`reml`), started from Henderson III moment estimates (`henderson`). The 95%
intervals (GPQ or MLS) treat the Henderson III mean squares as the balanced methods treat ANOVA mean
squares, each a scaled chi-square with Satterthwaite's degrees of freedom at the REML estimates;
the residual's share interval is an F interval (`intervals.residual_share`), not GPQ; coverage
measured in bench/RESULTS-coverage.md ("Unbalanced tables"). The cluster bootstrap needs a balanced
grid: asked for here, it gives GPQ intervals and says so.
"""

from __future__ import annotations

import numpy as np

from harness.errors import UserError
from harness.stats import henderson, intervals, reml
from harness.stats.design import Layout
from harness.stats.results import Component, Decomposition


def _intervals(layout: Layout, ms: henderson.MeanSquares, variances: np.ndarray, method: tuple[str, int],
               seed: int) -> tuple[np.ndarray | None, str, int]:
    """(2, 2 * sources + factors) bounds (variances only for MLS), the method that gave them and
    its draw count."""
    name, draws = method
    if name == "none":
        return None, "none", 0
    df = ms.satterthwaite(variances)
    kinv = np.linalg.inv(ms.kms)
    if name == "mls":
        return intervals.mls(df, kinv, ms.ms[None])[:, 0], "mls", 0
    draws = draws if name == "gpq" else intervals.DEFAULT_DRAWS["gpq"]
    out = intervals.gpq(df, kinv, ms.ms[None], layout.icc_weights(), seed, draws)[:, 0]
    share = intervals.residual_share(df, kinv, ms.ms[None])[:, 0]
    s = kinv.shape[0]
    out[:, 2 * s - 1] = np.where(np.isnan(share), out[:, 2 * s - 1], share)  # the residual's share
    return out, "gpq", draws


def decompose_cells(layout: Layout, counts: np.ndarray, means: np.ndarray, within: float,
                    method: tuple[str, int], seed: int, where: str = "") -> Decomposition:
    """REML variance components (with intervals by `method`: name, draws) of one table from its
    per-cell counts, means (NaN where empty) and within-cell sum of squares; `where` names the group
    in messages."""
    d = layout.design
    slots = layout.slots
    ms = henderson.mean_squares(counts, means, within, slots, layout.masks)
    if (ms.df == 0).any():
        lacking = ", ".join(s for s, k in zip(layout.sources, ms.df.tolist(), strict=True) if k == 0)
        raise UserError(f"{int(counts.sum())} observations{where} leave no degrees of freedom for {lacking}: "
                        f"{len(layout.sources)} variance components need more rows (or fewer factors)")
    seen = counts > 0
    centred = np.where(seen, means - means[seen] @ counts[seen] / counts.sum(), 0.0)
    problem = reml.Problem.build(counts.astype(np.float64), counts * centred, float(counts @ centred ** 2 + within),
                                 slots)
    fit = reml.fit(problem, reml.starts(ms.moments()))
    var = fit.variances
    share = var / var.sum()
    weights = layout.icc_weights()
    ci, ci_method, draws = _intervals(layout, ms, var, method, seed)
    s = len(layout.sources)
    ratios = ci is not None and ci.shape[1] > s
    boundary = np.append(fit.boundary, False)
    comps = tuple(Component(name, float(var[j]), float(var[j]) ** 0.5, float(share[j]),
                            (float(ci[0, j]), float(ci[1, j])) if ci is not None else None,
                            (float(ci[0, s + j]), float(ci[1, s + j])) if ratios and ci is not None else None,
                            boundary=bool(boundary[j]))
                  for j, name in enumerate(layout.sources))
    icc = dict(zip(d.factors, (weights @ share).tolist(), strict=True))
    icc_ci = ({f: (float(ci[0, 2 * s + j]), float(ci[1, 2 * s + j])) for j, f in enumerate(d.factors)}
              if ratios and ci is not None else None)
    notes = ("The cluster bootstrap needs a balanced table: intervals by GPQ instead.",) * (method[0] == "bootstrap")
    return Decomposition(comps, icc, icc_ci, "reml", int(counts.sum()), layout.n,
                         dict(zip(d.factors, d.sizes, strict=True)), ci_method=ci_method, draws=draws, seed=seed,
                         converged=fit.converged, notes=notes)
