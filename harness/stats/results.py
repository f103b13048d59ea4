"""Result records of a variance decomposition, and their JSON and markdown forms."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

from harness.stats.intervals import CI_BASIS_UNBALANCED, CI_COVERAGE, CI_COVERAGE_UNBALANCED, CI_LABEL, CI_TEXT

Interval = tuple[float, float]
FEW_LEVELS = 3  # a factor with this many levels or fewer gets a warning
ADVISED_LEVELS = 6  # GPQ's median std interval spans 4x there, 8x at 4 levels (bench/RESULTS-coverage.md)


def _num(x: float | None) -> float | None:
    """JSON has no NaN or infinity: write them as null."""
    return x if x is not None and math.isfinite(x) else None


def _interval(ci: Interval | None) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


def _fmt(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _pct(x: float) -> str:
    return "" if not math.isfinite(x) else f"{100 * x:.1f}%"


@dataclass(slots=True)
class Component:
    """One variance source: its estimate, share of the total and 95% intervals of both (the std's
    is the square root of the variance's; `share_ci` is None when the method bounds variances only).

    `truncated`: the moment estimate was negative and is reported as zero; `boundary`: the REML
    estimate is zero, on the edge of the parameter space. `df` and `ms` (mean square) are None for a
    REML fit.
    """

    name: str
    variance: float
    std: float
    share: float
    ci: Interval | None = None
    share_ci: Interval | None = None
    truncated: bool = False
    df: int | None = None
    ms: float | None = None
    boundary: bool = False

    def to_json_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variance": _num(self.variance), "std": _num(self.std),
                               "share": _num(self.share)}
        if self.ci is not None:
            out["ci"] = _interval(self.ci)
            out["share_ci"] = _interval(self.share_ci)
        out.update(truncated=self.truncated, df=self.df, ms=_num(self.ms))
        return out


@dataclass(slots=True)
class Decomposition:
    """Variance components of one table (or one group of it), residual last.

    method: "anova" (balanced; method of moments, equal to REML when no estimate is truncated),
    "reml" (unbalanced; `converged` says whether the fit passed its convergence check) or "none"
    (all values equal: nothing to estimate).
    icc[factor]: correlation of two observations that share the factor's level (and the levels it is
    nested in) and nothing else. `missing`: the first short cells; `n_missing` short cells,
    `missing_rows` observations missing from a full grid. `notes`: lines the table ends with.
    """

    components: tuple[Component, ...]
    icc: dict[str, float]
    icc_ci: dict[str, Interval] | None
    method: str
    n_obs: int
    per_cell: int
    levels: dict[str, int]
    missing: tuple[str, ...] = ()
    n_missing: int = 0
    ci_method: str = "none"
    draws: int = 0
    seed: int = 0
    missing_rows: int = 0
    converged: bool = True
    notes: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    @property
    def total(self) -> float:
        return sum(c.variance for c in self.components)

    def to_json_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "components": {c.name: c.to_json_obj() for c in self.components},
            "icc": {f: {"value": _num(v)} | ({"ci": _interval(self.icc_ci[f])} if self.icc_ci else {})
                    for f, v in self.icc.items()},
            "method": self.method, "n_obs": self.n_obs, "per_cell": self.per_cell, "levels": self.levels,
        }
        out["ci_method"] = self.ci_method
        if self.ci_method == "bootstrap":
            out.update(bootstrap=self.draws, seed=self.seed)
        elif self.ci_method == "gpq":
            out.update(draws=self.draws, seed=self.seed)
        if self.method == "reml":
            for c in self.components:
                out["components"][c.name]["boundary"] = c.boundary
            out.update(converged=self.converged, boundary=[c.name for c in self.components if c.boundary])
            if self.ci_method != "none":
                out["ci_mean_squares"] = "henderson3-satterthwaite"
        if self.n_missing:
            out.update(n_missing_cells=self.n_missing, missing_cells=list(self.missing),
                       n_missing_rows=self.missing_rows)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    @property
    def ci_header(self) -> str:
        """The interval column's title, naming the method: "95% CI (GPQ)"."""
        label = CI_LABEL.get(self.ci_method, "")
        return f"95% CI ({label})" if label else "95% CI"

    def warnings(self, units: Mapping[str, str] | None = None, scale: float = 1.0) -> list[str]:
        """One line per factor with 2-3 levels: no interval method makes its component informative.

        `units` names a factor's levels in the reader's words (the report: {"init": "seeds"});
        `scale` multiplies the std bounds quoted (the report: 100, accuracy points).
        """
        out = []
        for f, k in self.levels.items():
            unit = (units or {}).get(f, "levels")
            comp = min((c for c in self.components if c.name.split(":")[0] == f),
                       key=lambda c: c.name.count(":"), default=None)
            if k > FEW_LEVELS or comp is None:
                continue
            span = ""
            if comp.ci is not None:
                lo, hi = (scale * math.sqrt(max(x, 0.0)) for x in comp.ci)
                span = f"the 95% interval of its std spans [{_fmt(lo)}, {_fmt(hi)}]"
                span += f" ({hi / lo:.0f}x)" if lo > 0 else " (from zero)"
                span += "; "
            out.append(f"Warning: only {k} {f} {unit}: {span}no interval method makes a component "
                       f"estimated from {k - 1} degree(s) of freedom informative; use at least {ADVISED_LEVELS} "
                       "(a std's interval then spans about 4x; with 12, 2.4x).")
        return out

    def _ci_text(self, basis: str = "") -> str:
        """"; 95% intervals: ..." naming the method, its draws and seed, and its measured coverage."""
        ci = {"bootstrap": f"; 95% intervals: {CI_TEXT['bootstrap']}, B={self.draws}, seed {self.seed}",
              "gpq": f"; 95% intervals: {CI_TEXT['gpq']}{basis}, {self.draws} draws, seed {self.seed}",
              "mls": f"; 95% intervals of the variances: {CI_TEXT['mls']}{basis}"}.get(self.ci_method, "")
        coverage = (CI_COVERAGE_UNBALANCED if basis else CI_COVERAGE).get(self.ci_method)
        return f"{ci} ({coverage})" if ci and coverage else ci

    def summary(self) -> str:
        """One line: size of the design, how it was fitted and how the intervals were made."""
        grid = " x ".join(f"{f} {n}" for f, n in self.levels.items())
        head = f"{self.n_obs} observations; levels {grid}; {self.per_cell} per cell"
        short = ""
        if self.n_missing:
            shown = "; ".join(self.missing)
            extra = self.n_missing - len(self.missing)
            more = f"; {extra} more" if extra > 0 else ""
            short = (f". Unbalanced: {self.n_missing} of {prod(self.levels.values())} cells short ({shown}{more}), "
                     f"{self.missing_rows} observation{'s' * (self.missing_rows != 1)} missing")
        if self.method == "none":
            return f"{head}{short}. No estimates: the values do not vary."
        if self.method == "reml":
            fit = "converged" if self.converged else "NOT converged: the estimates may be off"
            zero = [c.name for c in self.components if c.boundary]
            edge = f"; boundary estimate: {', '.join(zero)} at 0" if zero else ""
            return (f"{head}{short}; REML (restricted maximum likelihood, {fit}){edge}"
                    f"{self._ci_text(CI_BASIS_UNBALANCED)}.")
        return f"{head}. Balanced random-effects ANOVA (method of moments){self._ci_text()}."

    def to_markdown(self) -> str:
        rows = [f"| source | variance | std | share | {self.ci_header} | df | mean square |",
                "|---|---:|---:|---:|---|---:|---:|"]
        for c in self.components:
            ci = f"[{_fmt(c.ci[0])}, {_fmt(c.ci[1])}]" if c.ci else ""
            var = _fmt(c.variance) + (" (truncated)" if c.truncated else "") + (" (boundary)" if c.boundary else "")
            df = "" if c.df is None else str(c.df)
            rows.append(f"| {c.name} | {var} | {_fmt(c.std)} | {_pct(c.share)} | {ci} | {df} "
                        f"| {_fmt(c.ms)} |")
        icc = ", ".join(f"{f} {_fmt(v)}" + (f" [{_fmt(self.icc_ci[f][0])}, {_fmt(self.icc_ci[f][1])}]"
                                           if self.icc_ci else "") for f, v in self.icc.items())
        icc_line = [f"Intraclass correlation: {icc}."] if self.method != "none" else []
        notes = [self.summary(), "", *rows, "", *icc_line, *self.notes, *self.warnings()]
        if any(c.truncated for c in self.components):
            notes.append("Truncated: a negative moment estimate is reported as zero; "
                         "the other components keep their unbiased moment values.")
        return "\n".join(notes)


@dataclass
class GroupedDecomposition:
    """One Decomposition per level of a grouping column (e.g. per configuration), in level order.

    Records are built on first access; `fits` maps a label to a Decomposition or to a function
    returning it.
    """

    group: str
    fits: dict[str, Decomposition | Callable[[], Decomposition]] = field(repr=False)

    def __getitem__(self, label: str) -> Decomposition:
        fit = self.fits[label]
        if not isinstance(fit, Decomposition):
            fit = self.fits[label] = fit()
        return fit

    def __iter__(self) -> Iterator[str]:
        return iter(self.fits)

    def __len__(self) -> int:
        return len(self.fits)

    def items(self) -> Iterator[tuple[str, Decomposition]]:
        return ((label, self[label]) for label in self.fits)

    def to_json_obj(self) -> dict[str, Any]:
        return {"group": self.group, "groups": {k: d.to_json_obj() for k, d in self.items()}}

    def to_markdown(self) -> str:
        return "\n\n".join(f"### {self.group} = {k}\n\n{d.to_markdown()}" for k, d in self.items())
