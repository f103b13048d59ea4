"""The "Each source alone" section (Summers & Dinneen, ICML 2021; Jordan, ICLR 2024): per arm of
evaluation trainings in which one seed source varies and every other sits at its first level (and
the arm where all vary together, training j at level j of each), the std of accuracy with its
95% interval, the mean churn and the independent-errors share. Shown wherever the records carry
per-example results and an arm has at least MIN_TRAININGS trainings (design `alone` plans them;
a crossed matrix holds the one-source arms too). The only reader that decodes `result.examples`."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from tabulate import tabulate

from harness.job.seeds import EVAL_SOURCES
from harness.job.spec import JobSpec
from harness.reporting.common import config_label
from harness.stats.examples import ALPHA, ArmStats, arm_stats
from harness.store.records import Record
from harness.store.store import UnitState
from harness.training import perexample
from harness.units import EVAL

MIN_TRAININGS = 3    # an arm's std interval needs two degrees of freedom
ALL = "all"          # the arm where every varied source moves together
ARM_SOURCES = tuple(s for s in EVAL_SOURCES if s != "split")  # churn compares one test split


def _groups(spec: JobSpec, states: dict[str, UnitState]) -> dict[tuple[str, str, str, int], list[Record]]:
    """Ok eval records with per-example results by (configuration, engine, mode, split level)."""
    out: dict[tuple[str, str, str, int], list[Record]] = defaultdict(list)
    for st in states.values():
        rec = st.ok
        if rec is not None and EVAL.owns(rec) and "examples" in rec["result"]:
            key = (config_label(spec, rec["config"] or {}), str(rec.get("engine")), rec["mode"],
                   rec["levels"].get("split", 0))
            out[key].append(rec)
    return out


def arms(spec: JobSpec, records: Sequence[Record]) -> dict[str, list[Record]]:
    """Each varied source's arm (the others at their first level) and, where more than one source
    varies, the arm "all" (every varied source at the same level position); in plan order."""
    present = [s for s in ARM_SOURCES if s in spec.levels]
    base = {s: spec.levels[s][0] for s in present}
    varied = [s for s in present if len({r["levels"].get(s) for r in records}) > 1]
    recs = sorted(records, key=lambda r: r["index"])
    out = {s: [r for r in recs if all(r["levels"].get(o) == base[o] for o in present if o != s)] for s in varied}
    if len(varied) > 1:
        out[ALL] = [r for r in recs if len({spec.levels[s].index(r["levels"][s]) for s in varied}) == 1]
    return {name: rs for name, rs in out.items() if len(rs) >= MIN_TRAININGS}


def _stats(records: Sequence[Record]) -> ArmStats:
    decoded = [perexample.decode(r["result"]["examples"]) for r in records]
    return arm_stats(np.stack([d.correct for d in decoded]), np.stack([d.predicted for d in decoded]))


def _ratio_ci(a: ArmStats, b: ArmStats) -> tuple[float, float, float]:
    """std(a) / std(b) and its 95% interval (F distribution, independent normal arms)."""
    from scipy import special  # fdtri(dfn, dfd, p): the F quantile with lower tail p
    r = a.std / b.std
    lo, hi = (special.fdtri(a.m - 1, b.m - 1, p) for p in (1 - ALPHA, ALPHA))
    return r, r / math.sqrt(lo), r / math.sqrt(hi)


def _pts(x: float) -> str:
    return f"{100 * x:.2f}"


def _table(stats: dict[str, ArmStats]) -> str:
    rows = [(f"{name} alone" if name != ALL else "all together", s.m, _pts(s.std),
             f"[{_pts(s.std_ci[0])}, {_pts(s.std_ci[1])}]", f"{100 * s.churn:.2f}%",
             "n/a (no spread)" if math.isnan(s.share) else
             f"{100 * s.share:.0f}% [{100 * s.share_ci[0]:.0f}, {100 * s.share_ci[1]:.0f}]")
            for name, s in stats.items()]
    return tabulate(rows, headers=("arm", "trainings", "std of accuracy (pts)", "95% CI (pts)", "mean churn",
                                   "independent-errors share [95% CI]"), tablefmt="github", disable_numparse=True)


def verdict(stats: dict[str, ArmStats]) -> str:
    """One sentence: whether each source alone matches all together, with the numbers."""
    if ALL not in stats or stats[ALL].std == 0:
        return "No arm varies every source together here, so the sources alone are not compared with all together."
    every = stats[ALL]
    parts, alike = [], []
    for name, s in stats.items():
        if name == ALL:
            continue
        r, lo, hi = _ratio_ci(s, every)
        alike.append(lo <= 1 <= hi)
        parts.append(f"{name} {_pts(s.std)} ({r:.2f}x, 95% CI [{lo:.2f}, {hi:.2f}])" if s.std > 0 else
                     f"{name} 0.00 (every training scored the same)")
    answer = ("each source alone matches all together, as Summers & Dinneen found" if all(alike) else
              "not every source alone matches all together (Summers & Dinneen found they do)" if any(alike) else
              "no source alone matches all together, unlike Summers & Dinneen's finding")
    return (f"On this model {answer}: std of accuracy with all sources varying {_pts(every.std)} pts; alone "
            f"(pts, ratio to all together): {'; '.join(parts)}.")


def section(spec: JobSpec, states: dict[str, UnitState]) -> list[str]:
    """The section's markdown lines (none where no group has an arm to show)."""
    out: list[str] = []
    for (cfg, engine, mode, split), records in sorted(_groups(spec, states).items()):
        found = arms(spec, records)
        if not found:
            continue
        stats = {name: _stats(rs) for name, rs in found.items()}
        title = f"{cfg} ({engine}, op determinism {mode}" + (f", split level {split})" if "split" in spec.levels
                                                               else ")")
        out += [f"### {title}", "", _table(stats), "", verdict(stats), ""]
    if not out:
        return []
    return ["## Each source alone", "",
            "Trainings in which one seed source varies and every other stays at its first level (an arm), and the "
            "arm in which all vary together. Std of test accuracy with a chi-square 95% interval (normal scores); "
            "mean churn: the share of test examples whose predicted class differs, over every pair of the arm's "
            "trainings; independent-errors share: the variance of accuracy that independent per-example errors "
            "predict, sum p_i(1-p_i)/n², with each p_i(1-p_i) estimated without bias as k_i(m-k_i)/(m(m-1)) from "
            "the m trainings (k_i right on example i), over the observed variance, its interval from the std's "
            "(Jordan, ICLR 2024: near 100%, "
            "the spread is test-set sampling of per-example coin flips, not a change in the model's true "
            "accuracy). A source matches all together when the 95% interval of its std's ratio to all together's "
            "(F distribution) holds 1.", "", *out]
