"""Numba kernels of the statistics engine: per-cell sums and the multi-way cluster bootstrap.

Random draws come from a counter-based generator (the SplitMix64 finaliser applied to a key
built from seed, group, replicate, factor and draw number), so a replicate's draws do not depend on
which thread runs it. Each replicate writes its own output slot and there are no cross-thread
reductions, so results are bit-identical for any NUMBA_NUM_THREADS. No fastmath.
"""

from __future__ import annotations

import os

# numba's default OpenMP layer spent milliseconds per parallel region here; respect a user's choice.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FACTOR = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)


@nb.njit(cache=True)
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@nb.njit(cache=True)
def cell_stats(values, groups, codes, strides, ngroups, cells):
    """Count, mean and within sum of squares of the non-NaN values in each (group, grid cell).

    One pass with sums shifted by the cell's first value (stable for values like 0.9 +- 1e-3).
    `groups` may be empty (one group). Returns arrays of shape (ngroups * cells,).
    """
    size = ngroups * cells
    count = np.zeros(size, np.int64)
    shift = np.zeros(size)
    s1 = np.zeros(size)
    s2 = np.zeros(size)
    grouped = groups.shape[0] > 0
    for i in range(values.shape[0]):
        y = values[i]
        if np.isnan(y):
            continue
        c = 0
        for f in range(len(codes)):
            c += strides[f] * codes[f][i]
        if grouped:
            c += cells * groups[i]
        k = count[c]
        if k == 0:
            shift[c] = y
        d = y - shift[c]
        s1[c] += d
        s2[c] += d * d
        count[c] = k + 1
    mean = np.empty(size)
    m2 = np.zeros(size)
    for c in range(size):
        k = count[c]
        if k == 0:
            mean[c] = np.nan
        else:
            mean[c] = shift[c] + s1[c] / k
            m2[c] = max(s2[c] - s1[c] * s1[c] / k, 0.0)
    return count, mean, m2


@nb.njit(cache=True)
def _draw(fkey, slot, nlevels):
    """The level drawn for one slot of one factor (Lemire's multiply-shift onto [0, nlevels))."""
    h = mix64(fkey + _GOLDEN * np.uint64(slot + 1))
    return np.int64(((h >> _S32) * np.uint64(nlevels)) >> _S32)


@nb.njit(cache=True)
def _replicate_key(seed64, gkey, rep):
    return mix64(mix64(seed64 ^ gkey) + _GOLDEN * np.uint64(rep + 1))


@nb.njit(cache=True)
def _factor_key(base, f):
    return mix64(base + _FACTOR * np.uint64(f + 1))


@nb.njit(cache=True)
def _solve(q, sse, mobius, df, kinv, ms, out):
    """Sums of squares from uncorrected ones, mean squares, and the truncated moment solution."""
    nsrc = df.shape[0]
    for i in range(nsrc):
        s = 0.0
        for j in range(q.shape[0]):
            s += mobius[i, j] * q[j]
        if i == nsrc - 1:
            s += sse
        ms[i] = s / df[i]
    for i in range(nsrc):
        v = 0.0
        for j in range(nsrc):
            v += kinv[i, j] * ms[j]
        out[i] = max(v, 0.0)


@nb.njit(cache=True)
def _crossed2_counts(base, a, b, u, v):
    """How often each level of A (u) and of B (v) was drawn in one replicate (A's slots first)."""
    u[:] = 0.0
    v[:] = 0.0
    fkey = _factor_key(base, 0)
    for s in range(a):
        u[_draw(fkey, s, a)] += 1.0
    fkey = _factor_key(base, 1)
    for s in range(b):
        v[_draw(fkey, a + s, b)] += 1.0


@nb.njit(cache=True)
def _crossed2_moments(means, within, a, b, u, v, qscale, col, sqj, wj, q):
    """The replicate's uncorrected sums of squares (q) over the original cells, weighted by the
    multiplicities u, v, skipping undrawn rows; returns its within-cell sum of squares."""
    col[:] = 0.0
    sqj[:] = 0.0
    wj[:] = 0.0
    tot = 0.0
    qa = 0.0
    for i in range(a):
        ui = u[i]
        if ui == 0.0:
            continue
        row = 0.0
        for j in range(b):
            m = means[i * b + j]
            row += v[j] * m
            col[j] += ui * m
            sqj[j] += ui * m * m
            wj[j] += ui * within[i * b + j]
        tot += ui * row
        qa += ui * row * row
    qb = 0.0
    qab = 0.0
    sse = 0.0
    for j in range(b):
        qb += v[j] * col[j] * col[j]
        qab += v[j] * sqj[j]
        sse += v[j] * wj[j]
    q[0] = qscale[0] * tot * tot
    q[1] = qscale[1] * qa
    q[2] = qscale[2] * qb
    q[3] = qscale[3] * qab
    return sse


@nb.njit(cache=True, parallel=True)
def bootstrap_crossed2(means, within, gkeys, seed, nrep, a, b, qscale, mobius, df, kinv):
    """`bootstrap` for two crossed factors, from level multiplicities instead of a gathered grid.

    Same draws as `bootstrap` (A's slots first, then B's); sums run over the original cells
    weighted by how often their row and column were drawn, skipping undrawn rows.
    """
    ngroups = means.shape[0]
    nsrc = df.shape[0]
    out = np.empty((ngroups, nrep, nsrc))
    total = ngroups * nrep
    block = 16
    nblocks = (total + block - 1) // block
    seed64 = mix64(np.uint64(seed))
    for blk in nb.prange(nblocks):
        u = np.empty(a)
        v = np.empty(b)
        col = np.empty(b)
        sqj = np.empty(b)
        wj = np.empty(b)
        q = np.empty(4)
        ms = np.empty(nsrc)
        for task in range(blk * block, min(total, (blk + 1) * block)):
            g = task // nrep
            rep = task - g * nrep
            _crossed2_counts(_replicate_key(seed64, gkeys[g], rep), a, b, u, v)
            sse = _crossed2_moments(means[g], within[g], a, b, u, v, qscale, col, sqj, wj, q)
            _solve(q, sse, mobius, df, kinv, ms, out[g, rep])
    return out


@nb.njit(cache=True, parallel=True)
def percentiles(reps, plo, phi):
    """Linear-interpolated percentiles plo, phi along axis 1 of (G, B, C), as numpy.quantile does.

    Selects the few order statistics needed by bounded insertion: (2, G, C).
    """
    ngroups, nrep, ncol = reps.shape
    out = np.empty((2, ngroups, ncol))
    hlo = plo * (nrep - 1)
    hhi = phi * (nrep - 1)
    klo = int(np.floor(hlo))
    khi = int(np.floor(hhi))
    nlow = min(klo + 2, nrep)
    nhigh = nrep - khi
    for task in nb.prange(ngroups * ncol):
        g = task // ncol
        c = task - g * ncol
        low = np.empty(nlow)
        high = np.empty(nhigh)
        nl = 0
        nh = 0
        for r in range(nrep):
            x = reps[g, r, c]
            if nl < nlow or x < low[nl - 1]:
                i = min(nl, nlow - 1)
                while i > 0 and low[i - 1] > x:
                    low[i] = low[i - 1]
                    i -= 1
                low[i] = x
                nl = min(nl + 1, nlow)
            if nh < nhigh or x > high[0]:
                if nh < nhigh:
                    i = nh
                    nh += 1
                    while i > 0 and high[i - 1] > x:
                        high[i] = high[i - 1]
                        i -= 1
                else:
                    i = 0
                    while i + 1 < nhigh and high[i + 1] < x:
                        high[i] = high[i + 1]
                        i += 1
                high[i] = x
        out[0, g, c] = _lerp(low[klo], low[min(klo + 1, nlow - 1)], hlo - klo)
        out[1, g, c] = _lerp(high[0], high[min(1, nhigh - 1)], hhi - khi)
    return out


@nb.njit(cache=True)
def _lerp(a, b, t):
    """numpy's interpolation (exact at both ends)."""
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


@nb.njit(cache=True, parallel=True)
def bootstrap(means, within, gkeys, seed, nrep, keys, slot_start, levels, strides,
              termmap, term_start, qscale, mobius, df, kinv):
    """Variance components (truncated at zero) of `nrep` cluster-bootstrap replicates per group.

    means, within: (G, P) centred cell means and within-cell sums of squares of each group's grid.
    A replicate draws, for each factor, one level per slot (crossed: one slot per position of its
    axis; nested: one per position of its axis within each position of its ancestors), rebuilds the
    grid from the drawn cells and solves the moment equations. keys[f, p] is the slot (offset by
    slot_start[f]) that sets factor f's level of grid cell p; termmap[t, p] the marginal cell of
    middle term t (offset by term_start[t]). Returns (G, nrep, sources).
    """
    ngroups, cells = means.shape
    nfac = keys.shape[0]
    nterms = qscale.shape[0]
    nmid = termmap.shape[0]
    nsrc = df.shape[0]
    out = np.empty((ngroups, nrep, nsrc))
    total = ngroups * nrep
    block = 16
    nblocks = (total + block - 1) // block
    seed64 = mix64(np.uint64(seed))
    for blk in nb.prange(nblocks):
        off = np.empty(slot_start[nfac], np.int64)
        acc = np.empty(term_start[nmid])
        q = np.empty(nterms)
        ms = np.empty(nsrc)
        for task in range(blk * block, min(total, (blk + 1) * block)):
            g = task // nrep
            rep = task - g * nrep
            base = _replicate_key(seed64, gkeys[g], rep)
            for f in range(nfac):
                fkey = _factor_key(base, f)
                for slot in range(slot_start[f], slot_start[f + 1]):
                    off[slot] = _draw(fkey, slot, levels[f]) * strides[f]
            acc[:] = 0.0
            tot = 0.0
            sq = 0.0
            sse = 0.0
            for p in range(cells):
                src = 0
                for f in range(nfac):
                    src += off[keys[f, p]]
                m = means[g, src]
                tot += m
                sq += m * m
                sse += within[g, src]
                for t in range(nmid):
                    acc[termmap[t, p]] += m
            q[0] = qscale[0] * tot * tot
            for t in range(nmid):
                s = 0.0
                for j in range(term_start[t], term_start[t + 1]):
                    s += acc[j] * acc[j]
                q[t + 1] = qscale[t + 1] * s
            q[nterms - 1] = qscale[nterms - 1] * sq
            _solve(q, sse, mobius, df, kinv, ms, out[g, rep])
    return out


_UNIT = 2.0 ** -53
_ATTEMPT = np.uint64(0x8CB92BA72F3D8DD7)


@nb.njit(cache=True)
def _uniform(h):
    """A uniform in (0, 1) from the top 53 bits of a hash (never exactly 0 or 1)."""
    return (np.float64(h >> np.uint64(11)) + 0.5) * _UNIT


@nb.njit(cache=True)
def _gamma(key, shape):
    """A Gamma(shape, 1) variate from the counter-based stream `key` (Marsaglia and Tsang 2000).

    Attempt j uses the hashes of key + j * _ATTEMPT (a Box-Muller normal and an acceptance uniform);
    shape < 1 boosts a Gamma(shape + 1) by U^(1 / shape), U from key + _FACTOR.
    """
    a = shape + 1.0 if shape < 1.0 else shape
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    j = np.uint64(0)
    while True:
        u1 = _uniform(mix64(key + _ATTEMPT * (j + np.uint64(1))))
        u2 = _uniform(mix64(key + _ATTEMPT * (j + np.uint64(2))))
        u3 = _uniform(mix64(key + _ATTEMPT * (j + np.uint64(3))))
        j += np.uint64(3)
        x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if np.log(u3) < 0.5 * x * x + d - d * v + d * np.log(v):
            break
    g = d * v
    if shape < 1.0:
        g *= _uniform(mix64(key + _FACTOR)) ** (1.0 / shape)
    return g


@nb.njit(cache=True, parallel=True)
def pivots(seed, df, ndraw):
    """(ndraw, sources) draws of df / chi2(df) per source: the pivot of a mean square's expectation,
    E[MS] = MS * df / chi2(df). Draw (d, k) depends on seed, k and d only."""
    nsrc = df.shape[0]
    out = np.empty((ndraw, nsrc))
    seed64 = mix64(np.uint64(seed))
    for d in nb.prange(ndraw):
        for k in range(nsrc):
            key = mix64(mix64(seed64 + _FACTOR * np.uint64(k + 1)) + _GOLDEN * np.uint64(d + 1))
            out[d, k] = df[k] / (2.0 * _gamma(key, 0.5 * df[k]))
    return out


@nb.njit(cache=True, parallel=True)
def gpq(ms, w, kinv, weights, plo, phi):
    """Generalized pivotal quantity intervals: (2, G, 2 * sources + rows of weights), low then high.

    ms: (G, sources) mean squares; w: (draws, sources) from `pivots`, shared by every group (each
    group's interval is valid on its own). Draw d's components solve the expected mean squares
    kinv @ (ms * w[d]), truncated at zero like the point estimates; its shares divide them by their
    sum and its intraclass correlations sum the shares `weights` (rows, sources) selects. Columns:
    variances, shares, intraclass correlations; percentiles plo, phi as numpy.quantile's linear ones.
    """
    ngroups, nsrc = ms.shape
    ndraw = w.shape[0]
    nfac = weights.shape[0]
    ncol = 2 * nsrc + nfac
    out = np.empty((2, ngroups, ncol))
    for g in nb.prange(ngroups):
        buf = np.empty((ncol, ndraw))
        scratch = np.empty(ndraw)
        e = np.empty(nsrc)
        for d in range(ndraw):
            for j in range(nsrc):
                e[j] = ms[g, j] * w[d, j]
            tot = 0.0
            for i in range(nsrc):
                v = 0.0
                for j in range(nsrc):
                    v += kinv[i, j] * e[j]
                v = max(v, 0.0)
                buf[i, d] = v
                tot += v
            for i in range(nsrc):
                buf[nsrc + i, d] = buf[i, d] / tot if tot > 0.0 else np.nan
            for f in range(nfac):
                s = 0.0
                for j in range(nsrc):
                    s += weights[f, j] * buf[nsrc + j, d]
                buf[2 * nsrc + f, d] = s
        for c in range(ncol):
            out[0, g, c], out[1, g, c] = _quantile_pair(buf[c], plo, phi, scratch)
    return out


@nb.njit(cache=True)
def _quantile_pair(x, plo, phi, scratch):
    """numpy.quantile's linear percentiles plo <= phi of x (reordered in place); NaN if x holds one.

    `scratch` (as long as x) holds the few values near each percentile (see `_order_pair`).
    """
    n = x.shape[0]
    for i in range(n):
        if np.isnan(x[i]):
            return np.nan, np.nan
    hlo = plo * (n - 1)
    hhi = phi * (n - 1)
    klo = int(np.floor(hlo))
    khi = int(np.floor(hhi))
    a, b = _order_pair(x, klo, scratch)
    lo = _lerp(a, b, hlo - klo)
    a, b = _order_pair(x, khi, scratch)
    return lo, _lerp(a, b, hhi - khi)


@nb.njit(cache=True)
def _order_pair(x, k, scratch):
    """The k-th and (k+1)-th smallest of x (the k-th twice when k is the last), exactly.

    Brackets them with order statistics of x's first eighth (draws are exchangeable), copies the
    values inside the bracket into `scratch` in one pass and selects there; falls back to selecting
    in all of x (reordering it) when the bracket misses.
    """
    n = x.shape[0]
    k1 = min(k + 1, n - 1)
    m = n // 8
    if m >= 64:
        r = k * m / n
        margin = 4.0 * np.sqrt(m * (k / n) * (1.0 - k / n)) + 2.0
        lo_r = max(int(r - margin), 0)
        hi_r = min(int(r + margin) + 1, m - 1)
        sample = scratch[:m]
        sample[:] = x[:m]
        lo_v = _select(sample, 0, lo_r) if lo_r > 0 else -np.inf
        hi_v = _select(sample, lo_r + 1 if lo_r > 0 else 0, hi_r) if hi_r < m - 1 else np.inf
        below = 0
        inside = 0
        for i in range(n):
            v = x[i]
            if v < lo_v:
                below += 1
            elif v <= hi_v:
                scratch[inside] = v
                inside += 1
        if below <= k and k1 < below + inside:
            if lo_v == hi_v:  # ties, e.g. draws truncated at zero
                return lo_v, lo_v
            part = scratch[:inside]
            a = _select(part, 0, k - below)
            return a, _next(part, k - below) if k1 > k else a
    a = _select(x, 0, k)
    return a, _next(x, k) if k1 > k else a
@nb.njit(cache=True)
def _next(x, k):
    """The order statistic after x[k] once x[:k + 1] holds the k + 1 smallest (x[k] the largest)."""
    if k + 1 >= x.shape[0]:
        return x[k]
    m = x[k + 1]
    for i in range(k + 2, x.shape[0]):
        m = min(m, x[i])
    return m


@nb.njit(cache=True)
def _select(x, left, k):
    """Put the k-th smallest of x[left:] at x[k], smaller ones before it and larger after
    (Hoare partitioning with a median-of-three pivot: fast with many ties, e.g. zeros)."""
    lo = left
    hi = x.shape[0] - 1
    while True:
        if hi <= lo + 1:
            if hi == lo + 1 and x[hi] < x[lo]:
                x[lo], x[hi] = x[hi], x[lo]
            return x[k]
        mid = (lo + hi) >> 1
        x[mid], x[lo + 1] = x[lo + 1], x[mid]
        if x[lo] > x[hi]:
            x[lo], x[hi] = x[hi], x[lo]
        if x[lo + 1] > x[hi]:
            x[lo + 1], x[hi] = x[hi], x[lo + 1]
        if x[lo] > x[lo + 1]:
            x[lo], x[lo + 1] = x[lo + 1], x[lo]
        i = lo + 1
        j = hi
        a = x[lo + 1]
        while True:
            i += 1
            while x[i] < a:
                i += 1
            j -= 1
            while x[j] > a:
                j -= 1
            if j < i:
                break
            x[i], x[j] = x[j], x[i]
        x[lo + 1] = x[j]
        x[j] = a
        if j >= k:
            hi = j - 1
        if j <= k:
            lo = i


@nb.njit(cache=True)
def _upper_cholesky(s):
    """Upper factor U of s = U'U (right-looking, row updates that vectorise), or an empty matrix
    when s is not numerically positive definite. The updates run on row views from index 0: a loop
    from i over the matrix itself did not vectorise (LLVM could not rule out negative indices)."""
    n = s.shape[0]
    a = s.copy()
    for j in range(n):
        d = a[j, j]
        if not d > 0.0:
            return np.zeros((0, 0))
        d = np.sqrt(d)
        a[j, j] = d
        for k in range(j + 1, n):
            a[j, k] /= d
        for i in range(j + 1, n):
            f = a[j, i]
            src, dst = a[j, i:], a[i, i:]
            for k in range(n - i):
                dst[k] -= f * src[k]
    for i in range(n):
        for k in range(i):
            a[i, k] = 0.0
    return a


@nb.njit(cache=True)
def _inverse_from_upper(u):
    """(s^-1, lower half filled) from the upper Cholesky factor: X = U'^-1 by row updates, then X'X."""
    n = u.shape[0]
    x = np.zeros((n, n))
    for k in range(n):
        x[k, k] += 1.0
        inv = 1.0 / u[k, k]
        for j in range(k + 1):
            x[k, j] *= inv
        for i in range(k + 1, n):
            f = u[k, i]
            for j in range(k + 1):
                x[i, j] -= f * x[k, j]
    out = np.zeros((n, n))
    for h in range(n):
        for i in range(h + 1):
            f = x[h, i]
            for j in range(i + 1):
                out[i, j] += f * x[h, j]
    return out


@nb.njit(cache=True)
def _reml_schur(t1, d2, m22, vals, pv):
    """The Schur complement S of block 2 and T = sum_j t1^2 / a1_j^2 m21_j m21_j' (for the trace of
    block 1's part of A^-1), both from the per-count products pv (lower halves for T)."""
    q2 = m22.shape[0]
    tt = t1 * t1
    s = np.zeros((q2, q2))
    tw = np.zeros((q2, q2))
    for u in range(vals.size):
        g = tt / (1.0 + tt * vals[u])
        h = g / (1.0 + tt * vals[u])
        for i in range(q2):
            for k in range(i + 1):
                s[i, k] -= g * pv[u, i, k]
                tw[i, k] += h * pv[u, i, k]
    for i in range(q2):
        for k in range(i + 1):
            s[i, k] = d2[i] * (m22[i, k] + s[i, k]) * d2[k]
            s[k, i] = s[i, k]
        if i < q2 - 1:
            s[i, i] += 1.0
    return s, tw


@nb.njit(cache=True)
def _reml_solve(up, t1, d2, a1, m21, c):
    """A^-1 b (b = D c) by blocks, from the upper Cholesky factor of S: (s1, s2, b1, b2)."""
    q2, q1 = m21.shape
    b1 = t1 * c[:q1]
    b2 = d2 * c[q1:]
    z = b1 / a1
    y = b2.copy()  # b2 - W b1, W = A21 / a1
    for i in range(q2):
        v = 0.0
        for j in range(q1):
            v += m21[i, j] * z[j]
        y[i] -= d2[i] * t1 * v
    for k in range(q2):  # U' y = (b2 - W b1), by row updates (on views from 0, as in _upper_cholesky)
        y[k] /= up[k, k]
        f = y[k]
        row, rest = up[k, k + 1:], y[k + 1:]
        for i in range(q2 - k - 1):
            rest[i] -= f * row[i]
    s2 = np.zeros(q2)  # U s2 = y
    for i in range(q2 - 1, -1, -1):
        v = y[i]
        for k in range(i + 1, q2):
            v -= up[i, k] * s2[k]
        s2[i] = v / up[i, i]
    ds2 = d2 * s2
    mds = np.zeros(q1)  # m21' D2 s2, row by row
    for i in range(q2):
        f = ds2[i]
        for j in range(q1):
            mds[j] += m21[i, j] * f
    s1 = (b1 - t1 * mds) / a1
    return s1, s2, b1, b2


@nb.njit(cache=True)
def _reml_gradient(theta, term_of, t1, d2, a1, m1, m21, m22, c, sinv, tw, s1, s2, scale):
    """d/dtheta of log|A| + dof log r2: 2 sum (1 - (A^-1)_jj) / theta over a term's effects, and
    `scale` (2 dof / r2) times sum s_j (M D s - c)_j."""
    q2, q1 = m21.shape
    grad = np.zeros(theta.size)
    ds1, ds2 = t1 * s1, d2 * s2
    if t1 != 0.0:  # block 1: sum of (A^-1)_jj = 1 / a1_j + tr(S^-1 D2 T D2)
        tr = 0.0
        for i in range(q2):
            tr += sinv[i, i] * tw[i, i] * d2[i] * d2[i]
            for k in range(i):
                tr += 2.0 * sinv[i, k] * tw[i, k] * d2[i] * d2[k]
        for j in range(q1):
            tr += 1.0 / a1[j]
        grad[term_of[0]] += 2.0 * (q1 - tr) / t1
    mds1 = m1 * ds1  # (M D s)_j on block 1, row by row
    for i in range(q2):
        f = ds2[i]
        for j in range(q1):
            mds1[j] += m21[i, j] * f
    for j in range(q1):
        grad[term_of[j]] += scale * s1[j] * (mds1[j] - c[j])
    for i in range(q2 - 1):  # block 2: (A^-1)_ii = (S^-1)_ii
        k = term_of[q1 + i]
        if d2[i] != 0.0:
            grad[k] += 2.0 * (1.0 - sinv[i, i]) / d2[i]
        mds = 0.0
        for j in range(q1):
            mds += m21[i, j] * ds1[j]
        for h in range(q2):
            mds += m22[i, h] * ds2[h]
        grad[k] += scale * s2[i] * (mds - c[q1 + i])
    return grad


@nb.njit(cache=True)
def reml_deviance(theta, term_of, m1, m21, m22, vals, pv, c, yy, dof):
    """Profiled REML deviance (without its constant), its gradient in the relative factors theta and
    the penalised residual sum of squares r2 (inf, zeros, nan where A is not positive definite).

    The random effects come in two blocks: block 1 (m1: the diagonal of its cross-product, one term)
    is eliminated first, leaving the Schur complement of block 2 (m22: the other terms' effects and
    the intercept, last); m21 is their cross-product, c = [Z'y; X'y], term_of the term of every
    random effect (block 1 first). Block 1 enters the Schur complement as m21 diag(f(m1)) m21', so
    the products pv[v] = m21 diag(m1 == vals[v]) m21' are summed over the few distinct counts
    instead of over block 1. The deviance is even in each theta, so its gradient is 0 at 0.
    Plain loops (no BLAS: its threads contended on the shared 2-core machine), inner loops row
    updates that vectorise without reassociation.
    """
    q1, q2 = m1.size, m22.shape[0]
    t1 = theta[term_of[0]] if q1 > 0 else 0.0
    d2 = np.ones(q2)
    for i in range(q2 - 1):
        d2[i] = theta[term_of[q1 + i]]
    a1 = t1 * t1 * m1 + 1.0
    s, tw = _reml_schur(t1, d2, m22, vals, pv)
    up = _upper_cholesky(s)
    if up.shape[0] == 0:
        return np.inf, np.zeros(theta.size), np.nan
    s1, s2, b1, b2 = _reml_solve(up, t1, d2, a1, m21, c)
    r2 = yy - b1 @ s1 - b2 @ s2
    if not r2 > 0.0:
        return np.inf, np.zeros(theta.size), np.nan
    logdet = 0.0
    for j in range(q1):
        logdet += np.log(a1[j])
    for i in range(q2):
        logdet += 2.0 * np.log(up[i, i])
    sinv = _inverse_from_upper(up)
    grad = _reml_gradient(theta, term_of, t1, d2, a1, m1, m21, m22, c, sinv, tw, s1, s2, 2.0 * dof / r2)
    return logdet + dof * np.log(r2), grad, r2


@nb.njit(cache=True)
def reml_minimise(x0, term_of, m1, m21, m22, vals, pv, c, yy, dof, maxiter, gtol, ftol, target, radius):
    """BFGS with a backtracking (Armijo) line search on `reml_deviance` from x0, until the gradient
    is below gtol, an iteration gains less than ftol * (1 + |deviance|), or |theta| comes within
    `radius` of `target` (a minimum another start found: this start ends in its basin; radius 0:
    never); theta is left free in sign (the deviance is even in each theta) and returned as |theta|,
    with its deviance and gradient."""
    k = x0.size
    x = x0.copy()
    f, g, _ = reml_deviance(x, term_of, m1, m21, m22, vals, pv, c, yy, dof)
    h = np.eye(k)
    for it in range(maxiter):
        if np.max(np.abs(g)) <= gtol:
            break
        p = -(h @ g)
        slope = g @ p
        if not slope < 0.0:
            h = np.eye(k)
            p = -g
            slope = g @ p
        # the first direction is the gradient: a step of at most 1 in theta (not 1 x the gradient)
        step = min(1.0, 1.0 / np.max(np.abs(p))) if it == 0 else 1.0
        while True:
            xn = x + step * p
            fn, gn, _ = reml_deviance(xn, term_of, m1, m21, m22, vals, pv, c, yy, dof)
            if fn <= f + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-14:
                return np.abs(x), f, g
        s = xn - x
        yv = gn - g
        sy = s @ yv
        if sy > 1e-12 * np.sqrt((s @ s) * (yv @ yv)):
            if it == 0:
                h = np.eye(k) * (sy / (yv @ yv))
            hy = h @ yv
            rho = 1.0 / sy
            h = h - rho * (np.outer(s, hy) + np.outer(hy, s)) + (rho * rho * (yv @ hy) + rho) * np.outer(s, s)
        gain = f - fn
        x, f, g = xn, fn, gn
        if gain <= ftol * (1.0 + abs(f)):
            break
        if radius > 0.0 and np.max(np.abs(np.abs(x) - target)) <= radius:
            break
    return np.abs(x), f, g


@nb.njit(cache=True)
def extend_basis(basis, cols, tol):
    """`basis` (rows, r; orthonormal columns) extended by the parts of `cols` outside its span:
    classical Gram-Schmidt applied twice (as stable as the modified one); a column whose remainder is
    below tol times its norm adds nothing. The basis is kept in both layouts, so the projections and
    the updates both run along contiguous memory and vectorise without reassociation."""
    rows, r = basis.shape
    width = r + cols.shape[1]
    out = np.empty((rows, width))
    out[:, :r] = basis
    trans = np.empty((width, rows))  # out transposed
    trans[:r] = basis.T
    k = r
    v = np.empty(rows)
    dots = np.empty(width)
    for j in range(cols.shape[1]):
        norm0 = 0.0
        for i in range(rows):
            v[i] = cols[i, j]
            norm0 += v[i] * v[i]
        if norm0 == 0.0:
            continue
        for _ in range(2):
            dots[:k] = 0.0
            for i in range(rows):
                f = v[i]
                for b in range(k):
                    dots[b] += out[i, b] * f
            for b in range(k):
                f = dots[b]
                for i in range(rows):
                    v[i] -= f * trans[b, i]
        norm = 0.0
        for i in range(rows):
            norm += v[i] * v[i]
        if norm <= tol * tol * norm0:
            continue
        norm = np.sqrt(norm)
        for i in range(rows):
            out[i, k] = trans[k, i] = v[i] / norm
        k += 1
    return out[:, :k].copy()


@nb.njit(cache=True)
def cross_products(weights, index, offset):
    """G' diag(weights) G for the one-hot blocks G_k (index[k]: each cell's column, from offset[k]),
    summed cell by cell in order (as np.bincount sums)."""
    k, cells = index.shape
    out = np.zeros((offset[k], offset[k]))
    for c in range(cells):
        w = weights[c]
        for a in range(k):
            i = offset[a] + index[a, c]
            for b in range(k):
                out[i, offset[b] + index[b, c]] += w
    return out
