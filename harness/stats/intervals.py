"""95% intervals of balanced variance components from their mean squares: GPQ and MLS.

GPQ (generalized pivotal quantities; Weerahandi, Chiang 2001's surrogate variables): draw
E[MS_k] = MS_k * df_k / chi2(df_k) for every mean square, solve the expected mean squares for each
draw with the point estimates' `Layout.kinv` (truncated at zero), and take the 2.5 and 97.5
percentiles of the variances, of their shares (ratios per draw) and of the intraclass correlations.
The chi-square draws come from a counter-based generator (`kernels.pivots`) and are shared by every
group of a layout, so a group's interval depends on its mean squares, the seed and the draw count
only (not on the other groups nor on the thread count).

MLS (modified large-sample; Graybill and Wang 1980, Ting, Burdick, Graybill, Jeyaratnam and Lu
1990): closed-form bounds for a component written as sum_q c_q MS_q - sum_r c_r MS_r. Exact for a
single mean square (the residual); the cross terms between two mean squares of the same sign
(designs with three or more crossed factors) are left out. Variances only: no shares or ICCs.
"""

from __future__ import annotations

import numpy as np

from harness.errors import UserError

CI_METHODS = ("gpq", "mls", "bootstrap", "none")
DEFAULT_DRAWS = {"gpq": 5000, "bootstrap": 1000}
CI_LABEL = {"gpq": "GPQ", "mls": "MLS", "bootstrap": "bootstrap"}
CI_TEXT = {"gpq": "generalized pivotal quantities (GPQ)", "mls": "modified large-sample (MLS) closed form",
           "bootstrap": "percentile multi-way cluster bootstrap"}
# what bench/ci_coverage.py measured for the variances (normal data, balanced designs, 4-30 levels)
CI_COVERAGE = {"gpq": "simulated coverage 93.5-97.9%", "mls": "simulated coverage 93.6-97.9%",
               "bootstrap": "simulated coverage as low as 55% for large components with 4-12 levels"}
# unbalanced tables: the same methods on Henderson III mean squares (bench/RESULTS-coverage.md, "Unbalanced tables")
CI_BASIS_UNBALANCED = " on Henderson III mean squares with Satterthwaite df"
CI_COVERAGE_UNBALANCED = {"gpq": "simulated coverage 93.7-96.1%", "mls": "simulated coverage 93.7-96.1%"}
ALPHA = 0.025  # each tail of a 95% interval


def resolve(ci: str, draws: int, bootstrap: int) -> tuple[str, int]:
    """The interval method and its draw count from the API's `ci`, `draws` and legacy `bootstrap=B`
    (B > 0 means the bootstrap with B replicates)."""
    if ci not in CI_METHODS:
        raise UserError(f"ci must be one of {', '.join(CI_METHODS)}, got {ci!r}")
    if draws < 0 or bootstrap < 0:
        raise UserError(f"draws and bootstrap replicates must be >= 0, got {draws or bootstrap}")
    if bootstrap:
        if ci not in ("bootstrap", "none"):
            raise UserError(f"bootstrap={bootstrap} asks for the bootstrap, but ci is {ci!r}")
        return "bootstrap", bootstrap
    if ci in ("gpq", "bootstrap"):
        if draws == 1:
            raise UserError(f"{ci} needs at least 2 draws, got 1")
        return ci, draws or DEFAULT_DRAWS[ci]
    return ci, 0


def gpq(df: np.ndarray, kinv: np.ndarray, ms: np.ndarray, weights: np.ndarray, seed: int,
        draws: int) -> np.ndarray:
    """(2, groups, 2 * sources + factors): low and high of variances, shares and ICCs from mean
    squares `ms` (groups, sources) with `df` degrees of freedom (not necessarily whole) whose
    expectations `kinv` solves for the variances."""
    from harness.stats import kernels as kern

    w = kern.pivots(seed, np.asarray(df, np.float64), draws)
    s = kinv.shape[0]
    single = weights.sum(axis=1) == 1  # the ICC of a crossed factor is its share: not drawn twice
    out = kern.gpq(np.ascontiguousarray(ms), w, kinv, weights[~single], ALPHA, 1.0 - ALPHA)
    cols = np.empty(len(weights), np.int64)
    cols[single] = s + weights[single].argmax(axis=1)
    cols[~single] = 2 * s + np.arange(int((~single).sum()))
    return np.concatenate([out[:, :, :2 * s], out[:, :, cols]], axis=2)


def residual_share(df: np.ndarray, kinv: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """(2, groups): bounds of the residual's share sigma_e^2 / T (NaN where the rest of the total is
    not positive). The residual is the last source, E[MS_e] = sigma_e^2; the total is
    T = sigma_e^2 t_e + P with t = 1' kinv and P = sum_k t_k E[MS_k] over the other sources.

    A GPQ of the share sums independent pivots MS_k df_k / chi2(df_k); with few df (5 levels: df 4)
    each is right-skewed and their sum concentrates above its estimate, so P's draws lie too high and
    the residual share's upper bound too low (84-93% coverage, all misses above). Here P is
    Satterthwaite's scaled chi-square, one pivot, and P / sigma_e^2 is its F ratio with the residual.
    """
    from scipy import special

    t = kinv.sum(axis=0)
    parts = ms[:, :-1] * t[:-1]  # (groups, sources - 1): t_k MS_k
    p_hat = parts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = p_hat ** 2 / np.sum(parts ** 2 / df[:-1], axis=1)  # Satterthwaite's df of P
        ratio = np.where(p_hat > 0.0, p_hat / ms[:, -1], np.nan)  # estimates P / sigma_e^2
        lo = 1.0 / (t[-1] + ratio / special.fdtri(nu, df[-1], ALPHA))
        hi = 1.0 / (t[-1] + ratio / special.fdtri(nu, df[-1], 1.0 - ALPHA))
    return np.stack([lo, np.minimum(hi, 1.0)])


def mls(df: np.ndarray, kinv: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """(2, groups, sources): MLS bounds of each variance component, truncated at zero, from mean
    squares `ms` with `df` degrees of freedom whose expectations `kinv` solves for the variances."""
    from scipy import special  # chi-square and F quantiles (scipy.stats would take 5x longer to import)

    # G: how far a mean square's lower bound lies below it, H: its upper bound above it (relative);
    # chdtri(df, p) is the chi-square quantile with p above it
    g_k, h_k = 1.0 - df / special.chdtri(df, ALPHA), df / special.chdtri(df, 1.0 - ALPHA) - 1.0
    f_hi = special.fdtri(df[:, None], df[None, :], 1.0 - ALPHA)
    f_lo = special.fdtri(df[:, None], df[None, :], ALPHA)
    # cross terms of a positive q with a negative r (Ting et al. 1990)
    g_qr = ((f_hi - 1.0) ** 2 - g_k[:, None] ** 2 * f_hi ** 2 - h_k[None, :] ** 2) / f_hi
    h_qr = ((1.0 - f_lo) ** 2 - h_k[:, None] ** 2 * f_lo ** 2 - g_k[None, :] ** 2) / f_lo
    out = np.empty((2,) + ms.shape)
    for i in range(kinv.shape[0]):
        c = kinv[i]
        tiny = 1e-12 * np.abs(c).max()
        pos, neg = c > tiny, c < -tiny
        t = ms * np.abs(c)  # (groups, sources): c_k MS_k
        est = ms @ np.where(pos | neg, c, 0.0)
        tp, tn = t[:, pos], t[:, neg]
        v_lo = (tp ** 2) @ g_k[pos] ** 2 + (tn ** 2) @ h_k[neg] ** 2
        v_hi = (tp ** 2) @ h_k[pos] ** 2 + (tn ** 2) @ g_k[neg] ** 2
        v_lo = v_lo + np.einsum("gq,gr,qr->g", tp, tn, g_qr[np.ix_(pos, neg)])
        v_hi = v_hi + np.einsum("gq,gr,qr->g", tp, tn, h_qr[np.ix_(pos, neg)])
        out[0, :, i] = np.maximum(est - np.sqrt(np.maximum(v_lo, 0.0)), 0.0)
        out[1, :, i] = np.maximum(est + np.sqrt(np.maximum(v_hi, 0.0)), 0.0)
    return out
