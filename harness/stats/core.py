"""Random-effects variance components of a long table: balanced ANOVA with 95% intervals.

Public API (pure numpy + numba; TensorFlow is never imported here)::

    decompose(columns, value, factors, *, nested=(), ci="none", draws=0, bootstrap=0, seed=0)
        -> Decomposition
    decompose_groups(columns, value, factors, group, *, nested=(), ci="none", draws=0, bootstrap=0,
                     seed=0) -> GroupedDecomposition   # one Decomposition per level of `group`, in one pass
    Codes(codes, levels)                 # an already-encoded factor column (fast path)

`columns` maps a column name to a 1-d array (or a `Codes`); `value` names the numeric column (NaN =
missing, e.g. a failed training); `factors` the random factors, all crossed unless `nested` lists
"B:A" (factor B nested in A; B's labels may repeat across A's levels). Factor levels are strings,
ordered naturally ("c2" < "c10"). Sources are named by their columns: "A", interactions "A:B", B
within A "B:A", and "residual" last; repeats within a grid cell are the replication.

Records: `Decomposition.components` (residual last) of `Component(name, variance, std, share, ci,
share_ci, truncated, df, ms)`, `icc` / `icc_ci` per factor (the correlation of two observations that
share the factor's level and those it is nested in), `method`, `missing`; `to_json_obj()` gives
{"components": {NAME: {"variance", "std", "share", "ci", "share_ci", "truncated", "df", "ms"}}, "icc",
"method", "ci_method", ...} ("ci" only with intervals), `to_markdown()` a table; GroupedDecomposition maps a
group label to its Decomposition and wraps them as {"group", "groups": {LABEL: ...}}.

Balanced input (every grid cell holds the same number n of observations): one pass of cell sums
(numba; a bit-identical numpy version when numba is not loaded yet and no numba interval is asked, which
spares a one-shot CLI process numba's second of start-up), then sums of squares by sweeping
marginal means of the centred cell means, degrees of freedom, mean squares, expected-mean-square
coefficients (`Layout.build`) and the method-of-moments solution of the expected mean squares of the all-random model.
A negative estimate is set to zero and flagged `truncated`; the other components, the residual
included, keep their unbiased moment values (no re-fit, no pooling); shares are of the sum of the
reported (non-negative) components. With n == 1 the full interaction is the residual. For balanced
data with positive estimates these are the REML estimates (lme4 and statsmodels agree; see tests).

`ci` picks the 95% intervals (variance, share, intraclass correlation; see `intervals`): "gpq"
(generalized pivotal quantities from `draws` chi-square draws per mean square, default 5000; the
default of the CLI and the report: near-nominal coverage in bench/RESULTS-coverage.md), "mls"
(closed form, variances only), "bootstrap" (`draws` replicates, default 1000, that resample the
levels of every random factor independently, with replacement, nested factors within each drawn
parent level, the observations of a drawn cell moving with it: 55-85% coverage at 4-12 levels) or
"none". `bootstrap=B` > 0 is short for ci="bootstrap", draws=B. Seeded and bit-identical for any
number of numba threads.

Unbalanced input (cells missing or short) is never treated as balanced: the short cells are listed
and the table is fitted by REML (`reml`: lme4's profiled criterion, several starts, a convergence
check, boundary estimates flagged), with GPQ or MLS intervals on Henderson III mean squares
(`unbalanced`; the bootstrap needs a balanced grid and gives way to GPQ there). A table whose
values are all equal gets an honest record (zeros, no shares); too few rows for the components, a
factor with one level and empty or missing labels are UserErrors.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from harness.errors import UserError
from harness.stats import intervals
from harness.stats.design import Design, Layout
from harness.stats.results import Component, Decomposition, GroupedDecomposition

__all__ = ["Codes", "Component", "Decomposition", "GroupedDecomposition", "decompose", "decompose_groups"]

SHOW_MISSING = 5


@dataclass(frozen=True)
class Codes:
    """A factor column encoded as int32 codes into `levels` (strings in natural order)."""

    codes: np.ndarray
    levels: tuple[str, ...]


def natural_key(label: str) -> tuple[str | int, ...]:
    """Sort key that orders digit runs by value: "c2" < "c10", "9" < "10"."""
    parts = re.split(r"(\d+)", label)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def sort_levels(codes: np.ndarray, labels: Sequence[str]) -> Codes:
    """Re-number codes so that their labels are in natural order."""
    order = sorted(range(len(labels)), key=lambda i: natural_key(labels[i]))
    levels = tuple(labels[i] for i in order)
    if order == list(range(len(labels))):
        return Codes(codes.astype(np.int32, copy=False), levels)
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return Codes(rank[codes], levels)


MISSING_LABELS = {"", "nan", "none", "na", "<na>"}  # what NaN, None and pandas' NA become as text


def as_codes(name: str, column: object) -> Codes:
    """Encode any 1-d column as Codes (its values as strings); empty or missing labels are refused."""
    if isinstance(column, Codes):
        codes = column
    else:
        arr = np.asarray(column)
        if arr.ndim != 1:
            raise UserError("column must be one-dimensional", key=name)
        # integers are unique'd as numbers (much faster than as strings); non-negative ones then are
        # already in the labels' natural order
        whole = arr.dtype.kind in "iu"
        uniq, inv = np.unique(arr if whole else arr.astype(str), return_inverse=True)
        labels = [str(u) for u in uniq.tolist()]
        if whole and (uniq.size == 0 or uniq[0] >= 0):
            codes = Codes(inv.reshape(-1).astype(np.int32), tuple(labels))
        else:
            codes = sort_levels(inv.reshape(-1), labels)
    bad = [k for k, label in enumerate(codes.levels) if label.strip().lower() in MISSING_LABELS]
    if bad:
        rows = np.flatnonzero(np.isin(codes.codes, bad))
        if rows.size:
            many = "rows have" if rows.size > 1 else "row has"
            raise UserError(f"{rows.size} {many} an empty or missing label (data row {rows[0] + 1}); "
                            "label or drop them", key=name)
    return codes


def _values(name: str, column: object) -> np.ndarray:
    try:
        arr = np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError("value column is not numeric", key=name) from None
    if arr.ndim != 1:
        raise UserError("column must be one-dimensional", key=name)
    return arr


def _parse_nested(nested: Sequence[str], factors: Sequence[str]) -> tuple[int, ...]:
    """Transitive ancestor masks per factor from "B:A" (B nested in A; "C:A:B" = C in A x B cells)."""
    parents = [0] * len(factors)
    for spec in nested:
        names = spec.split(":")
        for n in names:
            if n not in factors:
                raise UserError(f"nested {spec!r}: {n!r} is not one of the factors {', '.join(factors)}")
        if len(names) < 2 or len(set(names)) != len(names):
            raise UserError(f"nested {spec!r}: expected CHILD:PARENT with distinct factors")
        child = factors.index(names[0])
        for n in names[1:]:
            parents[child] |= 1 << factors.index(n)
    ancestors = list(parents)
    for _ in factors:
        for f in range(len(factors)):
            for a in range(len(factors)):
                if ancestors[f] >> a & 1:
                    ancestors[f] |= ancestors[a]
    if any(ancestors[f] >> f & 1 for f in range(len(factors))):
        raise UserError(f"nested {', '.join(nested)}: the nesting has a cycle")
    return tuple(ancestors)


@dataclass
class _Table:
    """The validated input: values, grid axis codes per factor, groups, and the grid's design."""

    values: np.ndarray
    axes: tuple[np.ndarray, ...]
    design: Design
    group_codes: np.ndarray
    group_labels: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    slot_codes: tuple[np.ndarray | None, ...]


def _order(ancestors: tuple[int, ...]) -> list[int]:
    return sorted(range(len(ancestors)), key=lambda f: bin(ancestors[f]).count("1"))


def _prepare(columns: Mapping[str, object], value: str, factors: Sequence[str], nested: Sequence[str],
             group: str | None) -> _Table:
    factors = list(factors)
    if not factors:
        raise UserError("no factors given")
    for name in [value, *factors] + ([group] if group else []):
        if name not in columns:
            raise UserError(f"no column {name!r} (columns: {', '.join(map(str, columns))})")
    if len(set(factors)) != len(factors) or value in factors or group in factors or group == value:
        raise UserError("value, factor and group columns must all be different")
    y = _values(value, columns[value])
    if y.size == 0:
        raise UserError("no rows")
    coded = [as_codes(f, columns[f]) for f in factors]
    for fname, c in zip(factors, coded, strict=True):
        if c.codes.shape != y.shape:
            raise UserError(f"{c.codes.size} rows, the value column has {y.size}", key=fname)
    ancestors = _parse_nested(nested, factors)
    axes: list[np.ndarray] = [c.codes for c in coded]
    sizes = [len(c.levels) for c in coded]
    slot_codes: list[np.ndarray | None] = [None] * len(factors)
    for f in _order(ancestors):
        if ancestors[f]:
            axes[f], sizes[f], slot_codes[f] = _nest(axes, sizes, ancestors[f], coded[f].codes,
                                                    len(coded[f].levels))
        if sizes[f] < 2:
            within = " within each level of " + "/".join(
                factors[a] for a in range(len(factors)) if ancestors[f] >> a & 1) if ancestors[f] else ""
            raise UserError(f"factor has one level{within}; a variance needs at least two", key=factors[f])
    glabels: tuple[str, ...]
    if group is None:
        gcodes, glabels = np.zeros(0, np.int32), ("",)
    else:
        g = as_codes(group, columns[group])
        if g.codes.shape != y.shape:
            raise UserError(f"{g.codes.size} rows, the value column has {y.size}", key=group)
        gcodes, glabels = g.codes, g.levels
    design = Design(tuple(factors), tuple(sizes), ancestors)
    return _Table(y, tuple(a.astype(np.int32, copy=False) for a in axes), design, gcodes, glabels,
                  tuple(c.levels for c in coded), tuple(slot_codes))


def _nest(axes: list[np.ndarray], sizes: list[int], anc: int, codes: np.ndarray,
          nlevels: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Grid coordinate of a nested factor: the rank of its label among those seen in the parent cell.

    Returns the coordinates, the axis size (most labels in any parent cell) and, per slot
    (parent cell, rank), the label code or -1.
    """
    parent = np.zeros(codes.shape, np.int64)
    pcells = 1
    for a in range(len(sizes)):
        if anc >> a & 1:
            parent = parent * sizes[a] + axes[a]
            pcells *= sizes[a]
    pairs, inverse = np.unique(parent * nlevels + codes, return_inverse=True)
    owner = pairs // nlevels
    first = np.searchsorted(owner, owner)
    rank = np.arange(pairs.size) - first
    size = int(rank.max()) + 1
    slots = np.full(pcells * size, -1, np.int64)
    slots[owner * size + rank] = pairs % nlevels
    return rank[inverse.reshape(-1)].astype(np.int32), size, slots


def _cell_label(table: _Table, cell: int) -> str:
    d = table.design
    coords = np.unravel_index(cell, d.sizes)
    parts = []
    for f, name in enumerate(d.factors):
        slots = table.slot_codes[f]
        if slots is None:
            parts.append(f"{name}={table.labels[f][coords[f]]}")
            continue
        slot = 0
        for a in range(len(d.factors)):
            if d.ancestors[f] >> a & 1:
                slot = slot * d.sizes[a] + int(coords[a])
        code = slots[slot * d.sizes[f] + int(coords[f])]
        parts.append(f"{name}={table.labels[f][code]}" if code >= 0 else f"{name}=(none #{coords[f] + 1})")
    return " ".join(parts)


def _missing(table: _Table, counts: np.ndarray, full: int) -> tuple[tuple[str, ...], int]:
    short = np.flatnonzero(counts < full)
    shown = tuple(f"{_cell_label(table, int(c))}: {counts[c]} of {full}" for c in short[:SHOW_MISSING])
    return shown, int(short.size)


def _group_key(label: str) -> int:
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "little")


def _anova(layout: Layout, means: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean squares and variance components (untruncated), shape (groups, sources).

    Sums of squares come from effects swept off the marginal means of the centred cell means.
    """
    d = layout.design
    full = d.terms[-1]
    # annotated: numpy's stubs infer a 0-d shape for a reshape to a concatenated tuple
    marginal: dict[int, np.ndarray] = {full: means.reshape((means.shape[0],) + d.sizes)}
    for mask in reversed(d.terms[:-1]):
        # average one more axis out of the marginal of a term with one more factor
        f = min((f for f in range(len(d.sizes)) if not mask >> f & 1 and (d.ancestors[f] & ~mask) == 0),
                key=lambda f: bin(d.ancestors[f]).count("1"))
        marginal[mask] = marginal[mask | 1 << f].mean(axis=1 + f, keepdims=True)
    effects: dict[int, np.ndarray] = {}
    ss = np.empty((means.shape[0], len(layout.sources)))
    index = {m: i for i, m in enumerate(layout.masks)}
    for mask in d.terms:
        eff = marginal[mask]
        for u, e in effects.items():
            if (u & mask) == u:
                eff = eff - e
        effects[mask] = eff
        if mask:
            col = index.get(mask, len(layout.sources) - 1)
            ss[:, col] = (eff * eff).reshape(eff.shape[0], -1).sum(axis=1) * (layout.n * d.cells
                                                                               / d.term_cells(mask))
    if layout.n > 1:
        ss[:, -1] = within
    ms = ss / layout.df
    return ms, ms @ layout.kinv.T


def _boot_inputs(layout: Layout) -> dict[str, np.ndarray]:
    """Static index tables of the bootstrap kernel for a layout."""
    d = layout.design
    coords = d.cell_coords()
    k = len(d.factors)
    keys = np.empty((k, d.cells), np.int64)
    slot_start = np.zeros(k + 1, np.int64)
    for f in range(k):
        slot = np.zeros(d.cells, np.int64)
        nslots = 1
        for a in range(k):
            if d.ancestors[f] >> a & 1 or a == f:
                slot = slot * d.sizes[a] + coords[a]
                nslots *= d.sizes[a]
        keys[f] = slot + slot_start[f]
        slot_start[f + 1] = slot_start[f] + nslots
    mid = d.terms[1:-1]
    term_start = np.zeros(len(mid) + 1, np.int64)
    termmap = np.empty((len(mid), d.cells), np.int64)
    for t, m in enumerate(mid):
        termmap[t] = d.term_slots(m) + term_start[t]
        term_start[t + 1] = term_start[t] + d.term_cells(m)
    return dict(keys=keys, slot_start=slot_start, levels=np.array(d.sizes, np.int64), strides=d.strides,
                termmap=termmap, term_start=term_start, qscale=_qscale(layout), mobius=layout.mobius,
                df=layout.df, kinv=layout.kinv)


def _replicates(layout: Layout, means: np.ndarray, within: np.ndarray, gkeys: np.ndarray, seed: int,
                nrep: int) -> np.ndarray:
    """Truncated variance components of the bootstrap replicates: (groups, nrep, sources)."""
    from harness.stats import kernels as kern

    d = layout.design
    if len(d.factors) == 2 and not any(d.ancestors):
        return kern.bootstrap_crossed2(means, within, gkeys, seed, nrep, d.sizes[0], d.sizes[1],
                                       _qscale(layout), layout.mobius, layout.df, layout.kinv)
    return kern.bootstrap(means, within, gkeys, seed, nrep, **_boot_inputs(layout))


def _qscale(layout: Layout) -> np.ndarray:
    """Scale of each term's sum of squared marginal sums into its uncorrected sum of squares."""
    d = layout.design
    return np.array([layout.n * d.term_cells(m) / d.cells for m in d.terms])


def _shares(var: np.ndarray) -> np.ndarray:
    """Each component over the sum along the last axis (NaN where the sum is zero)."""
    total = var.sum(axis=-1, keepdims=True)
    return np.divide(var, total, out=np.full(var.shape, np.nan), where=total > 0)


@dataclass
class _LayoutEstimates:
    """Estimates of the balanced groups that share one layout: arrays (groups, sources)."""

    layout: Layout
    ms: np.ndarray
    variance: np.ndarray
    truncated: np.ndarray
    share: np.ndarray
    icc: np.ndarray
    ci: np.ndarray | None
    ci_method: str
    draws: int
    seed: int

    def decomposition(self, i: int) -> Decomposition:
        """The record of the i-th group (built on demand: 200 groups cost milliseconds)."""
        lay, d = self.layout, self.layout.design
        s = len(lay.sources)
        # no intervals: empty bounds, so `if lo` and `ratios` are false
        lo: list[float] = self.ci[0, i].tolist() if self.ci is not None else []
        hi: list[float] = self.ci[1, i].tolist() if self.ci is not None else []
        ratios = len(lo) > s  # MLS bounds the variances only
        v, t, sh, m = (a[i].tolist() for a in (self.variance, self.truncated, self.share, self.ms))
        comps = tuple(Component(name, v[j], v[j] ** 0.5, sh[j],
                                (lo[j], hi[j]) if lo else None, (lo[s + j], hi[s + j]) if ratios else None,
                                t[j], int(lay.df[j]), m[j]) for j, name in enumerate(lay.sources))
        icc_ci = {f: (lo[2 * s + j], hi[2 * s + j]) for j, f in enumerate(d.factors)} if ratios else None
        return Decomposition(comps, dict(zip(d.factors, self.icc[i].tolist(), strict=True)), icc_ci, "anova",
                             d.cells * lay.n, lay.n, dict(zip(d.factors, d.sizes, strict=True)),
                             ci_method=self.ci_method, draws=self.draws, seed=self.seed)


def _balanced(table: _Table, layout: Layout, gidx: np.ndarray, means: np.ndarray, m2: np.ndarray,
              method: tuple[str, int], seed: int) -> _LayoutEstimates:
    """Moment estimates (and intervals by `method`: name, draws) of the balanced groups `gidx`
    sharing `layout`."""
    mc = means[gidx]
    mc = mc - mc.mean(axis=1, keepdims=True)
    within = m2[gidx]
    ms, var = _anova(layout, mc, within.sum(axis=1))
    pos = np.maximum(var, 0.0)
    share = _shares(pos)
    weights = layout.icc_weights()
    ci, draws = None, method[1]
    if method[0] == "gpq":
        ci = intervals.gpq(layout.df, layout.kinv, ms, weights, seed, draws)
    elif method[0] == "mls":
        ci = intervals.mls(layout.df, layout.kinv, ms)
    elif method[0] == "bootstrap":
        gkeys = np.array([_group_key(table.group_labels[g]) if table.group_codes.size else 0 for g in gidx],
                         np.uint64)
        from harness.stats import kernels as kern

        reps = _replicates(layout, mc, within, gkeys, seed, draws)
        rshare = _shares(reps)
        ci = kern.percentiles(np.concatenate([reps, rshare, rshare @ weights.T], axis=2), 0.025, 0.975)
    return _LayoutEstimates(layout, ms, pos, var < 0, share, share @ weights.T, ci, method[0], draws, seed)


def _unbalanced(table: _Table, g: int, counts: np.ndarray, means: np.ndarray, m2: np.ndarray,
                method: tuple[str, int], seed: int) -> Decomposition:
    """REML fit of one unbalanced group, its short cells named."""
    full = int(counts.max())
    where = f" (group {table.group_labels[g]})" if table.group_codes.size else ""
    if full == 0:
        raise UserError(f"no numeric values{where}")
    layout = _cached_layout(table.design, full)
    from harness.stats.unbalanced import decompose_cells

    fit = decompose_cells(layout, counts, means, float(m2.sum()), method, seed, where)
    fit.missing, fit.n_missing = _missing(table, counts, full)
    fit.missing_rows = int(full * counts.size - counts.sum())
    return fit


def _layout(design: Design, n: int) -> Layout:
    layout = Layout.build(design, n)
    if len(layout.sources) == 1:
        raise UserError(f"one observation per level of {design.factors[0]!r}: the residual cannot be "
                        "separated from it; add repeats or another factor")
    return layout


_cached_layout = lru_cache(maxsize=32)(_layout)  # for the unbalanced groups, fitted one at a time


def _constant(table: _Table, counts: np.ndarray, means: np.ndarray, m2: np.ndarray) -> Decomposition | None:
    """An honest record for a group whose values are all equal (up to rounding), else None."""
    seen = counts > 0
    if not seen.any():
        return None
    scale = float(np.abs(means[seen]).max())
    spread = float(np.ptp(means[seen])) + (float(m2.sum()) / counts.sum()) ** 0.5
    if spread > 1e-12 * scale or (scale == 0.0 and spread > 0.0):
        return None
    d = table.design
    full = int(counts.max())
    layout = _layout(d, full)
    comps = tuple(Component(name, 0.0, 0.0, float("nan")) for name in layout.sources)
    missing, nshort = _missing(table, counts, full)
    return Decomposition(comps, dict.fromkeys(d.factors, float("nan")), None, "none", int(counts.sum()), full,
                         dict(zip(d.factors, d.sizes, strict=True)), missing, nshort,
                         missing_rows=int(full * counts.size - counts.sum()),
                         notes=(f"All {int(counts.sum())} values are equal ({means[seen][0]:.6g}): every "
                                "component is 0 and shares are undefined.",))


def _cell_stats(table: _Table, ngroups: int, numba: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and within sum of squares per (group, cell): the numba kernel, or the same
    arithmetic in the same order with numpy (bit-identical; spares a fresh process numba's start-up).
    """
    d = table.design
    if numba:
        from harness.stats import kernels as kern

        return kern.cell_stats(table.values, table.group_codes, table.axes, d.strides, ngroups, d.cells)
    size = ngroups * d.cells
    cell = np.zeros(table.values.size, np.int64)
    for axis, stride in zip(table.axes, d.strides.tolist(), strict=True):
        cell += axis.astype(np.int64) * stride
    if table.group_codes.size:
        cell += table.group_codes.astype(np.int64) * d.cells
    ok = ~np.isnan(table.values)
    y, cell = (table.values, cell) if ok.all() else (table.values[ok], cell[ok])
    count = np.bincount(cell, minlength=size)
    first = np.full(size, y.size, np.int64)
    np.minimum.at(first, cell, np.arange(y.size))
    shift = np.zeros(size)
    seen = count > 0
    shift[seen] = y[first[seen]]
    dev = y - shift[cell]
    s1 = np.bincount(cell, dev, minlength=size)
    s2 = np.bincount(cell, dev * dev, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen, shift + s1 / count, np.nan)
        m2 = np.where(seen, np.maximum(s2 - s1 * s1 / count, 0.0), 0.0)
    return count, mean, m2


def _unset() -> Decomposition:
    raise AssertionError("every group is balanced, constant or fitted by REML")


def _run(columns: Mapping[str, object], value: str, factors: Sequence[str], nested: Sequence[str],
         group: str | None, method: tuple[str, int], seed: int
         ) -> tuple[_Table, list[Decomposition | Callable[[], Decomposition]]]:
    table = _prepare(columns, value, factors, nested, group)
    d = table.design
    ngroups = len(table.group_labels)
    numba = method[0] in ("gpq", "bootstrap") or "numba" in sys.modules
    counts, means, m2 = _cell_stats(table, ngroups, numba=numba)
    counts, means, m2 = (a.reshape(ngroups, d.cells) for a in (counts, means, m2))
    lo, hi = counts.min(axis=1), counts.max(axis=1)
    results: list[Decomposition | Callable[[], Decomposition]] = [_unset] * ngroups
    balanced = (lo == hi) & (lo > 0)
    for n in np.unique(hi[balanced]).tolist():
        layout = _layout(d, n)
        gidx = np.flatnonzero(balanced & (hi == n))
        estimates = _balanced(table, layout, gidx, means, m2, method, seed)
        for i, g in enumerate(gidx.tolist()):
            results[g] = partial(estimates.decomposition, i)
    for g in range(ngroups):
        constant = _constant(table, counts[g], means[g], m2[g])
        if constant is not None:
            results[g] = constant
        elif not balanced[g]:
            results[g] = _unbalanced(table, g, counts[g], means[g], m2[g], method, seed)
    return table, results


def decompose(columns: Mapping[str, object], value: str, factors: Sequence[str], *,
              nested: Sequence[str] = (), ci: str = "none", draws: int = 0, bootstrap: int = 0,
              seed: int = 0) -> Decomposition:
    """Variance components of `value` over the random `factors` of the whole table."""
    fit = _run(columns, value, factors, nested, None, intervals.resolve(ci, draws, bootstrap), seed)[1][0]
    return fit if isinstance(fit, Decomposition) else fit()


def decompose_groups(columns: Mapping[str, object], value: str, factors: Sequence[str], group: str, *,
                     nested: Sequence[str] = (), ci: str = "none", draws: int = 0, bootstrap: int = 0,
                     seed: int = 0) -> GroupedDecomposition:
    """Variance components for each level of `group` (e.g. each configuration), computed in one pass.

    Every group shares the grid of the whole table: a factor level absent from a group makes that
    group unbalanced. Each group's bootstrap stream depends on the seed and its label only; its GPQ
    interval on the seed and its mean squares only.
    """
    table, results = _run(columns, value, factors, nested, group, intervals.resolve(ci, draws, bootstrap), seed)
    return GroupedDecomposition(group, dict(zip(table.group_labels, results, strict=True)))
