"""The optimisers side by side, and what averaging bought (the optimiser and `objective.runs` as
factors): one row per arm (optimiser x averaging count) of the same chain cells and budget.

Per arm: the tuned model's score on fresh seeds (mean, std, bootstrap CI over chains), the spread
between chains, the variance shares of bo / search init / search order / re-training, the
agreement between chains, the winner's curse and the cost (trainings, training and optimiser
seconds). Read from the study records alone; the plot is written next to the report.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.errors import UserError
from harness.job.algorithms import algorithm
from harness.job.spec import JobSpec
from harness.reporting.common import BOOTSTRAP, arm_label, config_label, curse, curse_split
from harness.reporting.plots import save
from harness.reporting.units import Units, units_of
from harness.stats import decompose
from harness.store.records import Record
from harness.store.store import UnitState
from harness.units import STUDY, study_arms

Arm = tuple[str, int]
SHARES = (("bo", "bo"), ("search_init", "search init"), ("search_order", "search order"),
          ("residual", "re-training"))


@dataclass(frozen=True)
class ArmSummary:
    """What one arm's chains gave (the job's metric in its own scale: accuracy as a fraction; times
in seconds)."""

    chains: int
    mean: float                      # over every fresh-seed re-training of every chain
    std: float                       # of one fresh-seed re-training
    mean_ci: tuple[float, float]     # 95% bootstrap over chains
    between: float                   # std of the chains' fresh-seed means (how repeatable the tuned model is)
    between_ci: tuple[float, float]
    shares: dict[str, float] | None  # variance shares of the re-trainings (None: not decomposable)
    distinct: int
    top: int
    curse: float                     # mean best-seen minus fresh-seed mean, both on common.curse_split
    trainings: int
    train_s: float
    optimiser_s: float
    noise: float                     # std of one trial's score for a fixed configuration (seed luck)
    noise_from: str


def arm_studies(spec: JobSpec, states: dict[str, UnitState]) -> dict[Arm, list[Record]]:
    """The finished study records of each arm, in the plan's arm order."""
    if spec.search is None:
        return {}
    out: dict[Arm, list[Record]] = {arm: [] for arm in study_arms(spec)}
    for st in states.values():
        rec = st.ok
        if rec and STUDY.owns(rec):
            arm = (rec.get("algorithm") or algorithm(spec.search.algorithm).name,
                   rec.get("runs") or spec.objective_runs)
            out.setdefault(arm, []).append(rec)
    return {arm: sorted(recs, key=lambda r: r["index"]) for arm, recs in out.items() if recs}


def _bootstrap(chains: list[list[float]], seed: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% intervals of the mean re-training score and of the std between chain means, resampling chains."""
    rng = np.random.default_rng(seed)
    means, stds = [], []
    for _ in range(BOOTSTRAP):
        pick = [chains[i] for i in rng.integers(0, len(chains), len(chains))]
        means.append(float(np.mean([x for c in pick for x in c])))
        stds.append(float(np.std([np.mean(c) for c in pick], ddof=1)) if len(pick) > 1 else 0.0)
    return ((float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))),
            (float(np.percentile(stds, 2.5)), float(np.percentile(stds, 97.5))))


def _metric(x: dict[str, Any], metric: str) -> float:
    """A re-training's score on the test split (its top-level metrics)."""
    return float(x["metrics"][metric])


def _shares(studies: list[Record], seed: int, metric: str) -> dict[str, float] | None:
    """Variance shares of the chosen configurations' re-trainings over bo x search init x search order,
    the fresh seeds as replication (residual: re-training)."""
    rows = [{"bo": r["levels"]["bo"], "search_init": r["levels"]["init"], "search_order": r["levels"]["order"],
             "score": _metric(x, metric)} for r in studies for x in r["result"]["reeval"]]
    factors = [f for f in ("bo", "search_init", "search_order") if len({row[f] for row in rows}) > 1]
    if not factors:
        return None
    cols: dict[str, Any] = {f: np.array([str(row[f]) for row in rows]) for f in factors}
    cols["score"] = np.array([row["score"] for row in rows], dtype=np.float64)
    try:
        fit = decompose(cols, "score", factors, seed=seed)
    except UserError:
        return None
    out = {name: 0.0 for name, _ in SHARES}
    for c in fit.components:
        key = c.name if c.name in out else "residual"  # interactions of the chain factors count as residual
        out[key] += c.share
    return out


def _noise(studies: list[Record]) -> tuple[float, str]:
    """The noise of one trial's score, measured: the same configuration tried by chains that train
    under different seeds (search init or order) scores differently only by seed luck, so the pooled
    std of a configuration's trial scores across those seed cells is the per-trial noise (chains that
    differ only in bo share training seeds and count once)."""
    cells: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in studies:
        for t in r["result"]["trials"]:
            if t["score"] is not None:
                cells[str(sorted(t["config"].items()))][(r["levels"]["init"], r["levels"]["order"])] = t["score"]
    groups = [list(g.values()) for g in cells.values() if len(g) > 1]
    if not groups:
        return float("nan"), "no configuration tried under two seed cells"
    pooled = sum((len(g) - 1) * statistics.variance(g) for g in groups) / sum(len(g) - 1 for g in groups)
    return math.sqrt(pooled), f"{len(groups)} configurations x {max(map(len, groups))} seed cells"


def summarise(spec: JobSpec, studies: list[Record]) -> ArmSummary:
    """One arm's row (scores on the test split; the winner's curse on `curse_split`)."""
    seed, u = spec.root_seed % 2**31, units_of(spec)
    metric = u.metric
    chains = [[_metric(x, metric) for x in r["result"]["reeval"]] for r in studies]
    every = [x for c in chains for x in c]
    chain_means = [statistics.fmean(c) for c in chains]
    mean_ci, between_ci = _bootstrap(chains, seed)
    chosen = Counter(config_label(spec, r["result"]["chosen"]) for r in studies)
    noise, noise_from = _noise(studies)
    return ArmSummary(
        chains=len(studies), mean=statistics.fmean(every), std=statistics.stdev(every) if len(every) > 1 else 0.0,
        mean_ci=mean_ci, between=statistics.stdev(chain_means) if len(chains) > 1 else 0.0, between_ci=between_ci,
        shares=_shares(studies, seed, metric), distinct=len(chosen), top=chosen.most_common(1)[0][1],
        curse=statistics.fmean(gap for _, gap in curse(spec, studies, metric, u.higher_is_better)),
        trainings=sum(len(t["runs"]) for r in studies for t in r["result"]["trials"])
        + sum(len(r["result"]["reeval"]) for r in studies),
        train_s=sum(r["timings"].get("train_s") or 0.0 for r in studies),
        optimiser_s=sum(r["timings"].get("optimiser_s") or 0.0 for r in studies),
        noise=noise, noise_from=noise_from)


def _ci(ci: tuple[float, float], u: Units) -> str:
    return f"[{u.value(ci[0])}, {u.value(ci[1])}]"


def _label(arm: Arm, show_runs: bool) -> str:
    return arm_label(*arm, show_runs)


def comparison_table(arms: dict[Arm, ArmSummary], show_runs: bool, u: Units, split: str) -> list[str]:
    score = [(_label(a, show_runs), s.chains, u.value(s.mean), _ci(s.mean_ci, u), u.value(s.std), u.value(s.between),
              _ci(s.between_ci, u), f"{s.distinct} / {s.chains}", f"{100 * s.top / s.chains:.0f}%", u.value(s.curse))
             for a, s in arms.items()]
    cost = [(_label(a, show_runs), *(f"{100 * s.shares[k]:.0f}%" if s.shares else "" for k, _ in SHARES),
             s.trainings, f"{s.train_s:.1f}", f"{s.optimiser_s:.1f}",
             f"{100 * s.optimiser_s / max(s.train_s + s.optimiser_s, 1e-9):.1f}%") for a, s in arms.items()]
    return [tabulate(score, headers=("optimiser", "chains", f"fresh-seed mean ({u.mean_unit})", "95% CI",
                                     f"std over re-trainings ({u.short})", f"std between chains ({u.short})", "95% CI",
                                     "distinct chosen", "top choice", f"winner's curse ({u.short}, {split})"),
                     tablefmt="github"), "",
            tabulate(cost, headers=("optimiser", *(f"share: {t}" for _, t in SHARES), "trainings", "training s",
                                    "optimiser s", "optimiser share of time"), tablefmt="github"), ""]


def _verdict(arms: dict[Arm, ArmSummary], show_runs: bool, u: Units) -> str:
    """Which arm's tuned model is most repeatable, and whether the intervals separate it."""
    ranked = sorted(arms, key=lambda a: arms[a].between)
    best, worst = ranked[0], ranked[-1]
    b, w = arms[best], arms[worst]
    apart = ("do not overlap" if b.between_ci[1] < w.between_ci[0]
             else "overlap: this many chains does not separate them")
    return (f"**Reading.** The most repeatable tuned model came from {_label(best, show_runs)}: its chains' "
            f"fresh-seed means spread by {u.value(b.between)} {u.long} (95% CI {_ci(b.between_ci, u)}), against "
            f"{u.value(w.between)} ({_ci(w.between_ci, u)}) for {_label(worst, show_runs)}; the intervals {apart}. "
            f"Mean fresh-seed {u.metric} ranges from {u.value(min(s.mean for s in arms.values()))} to "
            f"{u.value(max(s.mean for s in arms.values()))}{'%' if u.points else ''}.")


def averaging_table(arms: dict[Arm, ArmSummary], u: Units) -> list[str]:
    """Per optimiser, what each averaging count bought against the smallest."""
    table = []
    for alg in dict.fromkeys(a for a, _ in arms):
        rows = sorted((r, s) for (a, r), s in arms.items() if a == alg)
        r0, s0 = rows[0]
        for r, s in rows:
            table.append((alg, r, u.value(s.noise), s.noise_from, f"{s.noise / s0.noise:.2f}",
                          f"{math.sqrt(r0 / r):.2f}", u.value(s.mean), u.value(s.between), f"{s.distinct} / {s.chains}",
                          f"{s.trainings / s0.trainings:.2f}x", f"{s.train_s / max(s0.train_s, 1e-9):.2f}x"))
    return ["### What averaging bought", "",
            "Each trial's score is the mean of `runs` seeded trainings. Per-trial noise: the std of one "
            "configuration's trial score between chains that trained it under different seeds (pooled over the "
            "configurations tried in more than one seed cell); theory says averaging shrinks it by "
            "sqrt(smallest runs / runs). Cost multiples are against the smallest count.", "",
            tabulate(table, headers=("optimiser", "runs", f"per-trial noise ({u.short})", "measured from",
                                     "noise ratio", "theory", f"fresh-seed mean ({u.mean_unit})",
                                     f"std between chains ({u.short})",
                                     "distinct chosen", "trainings x", "training s x"), tablefmt="github"), ""]


def plot(name: str, studies: dict[Arm, list[Record]], show_runs: bool, out: Path, u: Units) -> Path:
    """Each chain's fresh-seed mean per arm (dots), with the arm's box."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [_label(a, show_runs) for a in studies]
    values = [[u.scale * statistics.fmean(_metric(x, u.metric) for x in r["result"]["reeval"]) for r in recs]
              for recs in studies.values()]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.boxplot(values, showmeans=True)
    for i, vals in enumerate(values, 1):
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.12, 0.12, len(vals)), vals, s=12, alpha=0.7, color="k")
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=15)
    ax.set_xlabel("optimiser")
    ax.set_ylabel(f"chosen configuration, fresh-seed mean ({u.mean_unit})")
    ax.set_title("Tuned model per chain, by optimiser")
    return save(fig, out / f"{name}_optimisers.png")


def section(spec: JobSpec, states: dict[str, UnitState], out_dir: Path | None) -> list[str]:
    """The side-by-side section (and its plot, unless `out_dir` is None) when the optimiser or the
    averaging count is a factor."""
    studies = arm_studies(spec, states)
    if len(studies) < 2:
        return []
    show_runs, u, split = len({r for _, r in studies}) > 1, units_of(spec), curse_split(spec)
    arms = {arm: summarise(spec, recs) for arm, recs in studies.items()}
    out = ["## Optimisers side by side", "",
           f"The same chain cells (bo x search init x search order) and budget ({spec.searched.max_evals} trials, "
           f"{spec.searched.reevaluate_init} x {spec.searched.reevaluate_order} fresh re-trainings of the chosen "
           f"configuration) under each optimiser{' and averaging count' if show_runs else ''}. Scores are the "
           f"chosen configuration's {u.metric} on fresh seeds (test split); intervals are {BOOTSTRAP}-replicate "
           f"bootstraps over chains. The winner's curse is the best score a chain saw minus its chosen "
           f"configuration's mean on the fresh seeds, both on the {split} split (as in the optimiser section's "
           f"table). Shares, fitted per arm: the tuned model's variance from the optimiser's seed, the seeds the "
           f"search ran under, and re-training (interactions of the chain factors count as re-training). Optimiser "
           f"seconds are the time inside the library's ask and tell. (The optimiser section above pools the chains "
           f"of every arm, the optimiser's seed nested in its arm.)", "",
           *comparison_table(arms, show_runs, u, split), _verdict(arms, show_runs, u), ""]
    if show_runs:
        out += averaging_table(arms, u)
    if out_dir is None:
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    path = plot(spec.name, studies, show_runs, out_dir, u)
    return out + [f"![Tuned model per chain, by optimiser]({path.name})", "",
                  f"*Each chain's chosen configuration, its mean held-out {u.metric} ({u.mean_unit}) on fresh "
                  "seeds, per optimiser: the tighter the box, the more repeatable the tuned model.*", ""]


def answer(spec: JobSpec, states: dict[str, UnitState]) -> list[str]:
    """The report's one line on which optimiser (and averaging count) gave the most repeatable tuned
    model, with the intervals that say whether this many chains separate them."""
    studies = arm_studies(spec, states)
    if len(studies) < 2 or any(not recs for recs in studies.values()):
        return []
    show_runs, u = len({r for _, r in studies}) > 1, units_of(spec)
    arms = {arm: summarise(spec, recs) for arm, recs in studies.items()}
    ranked = sorted(arms, key=lambda a: arms[a].between)
    b, w = arms[ranked[0]], arms[ranked[-1]]
    apart = "the intervals do not overlap" if b.between_ci[1] < w.between_ci[0] else (
        "the intervals overlap: this many chains does not separate them")
    seed = [f"{_label(a, show_runs)} {100 * s.shares['bo']:.0f}%" for a, s in arms.items() if s.shares]
    return [f"- The most repeatable tuned model came from {_label(ranked[0], show_runs)} (chains' fresh-seed means "
            f"spread by {u.value(b.between)} {u.long}, 95% CI {_ci(b.between_ci, u)}), the least from "
            f"{_label(ranked[-1], show_runs)} ({u.value(w.between)}, {_ci(w.between_ci, u)}); {apart} "
            f"([table](#optimisers-side-by-side))."] + ([
        f"- The optimiser's own seed, per arm (its share of that arm's tuned-model variance): {', '.join(seed)} "
        f"([table](#optimisers-side-by-side))."] if seed else [])
