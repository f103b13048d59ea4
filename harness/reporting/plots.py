"""PNG figures for the report (matplotlib, no display): variance shares per configuration,
score distributions per seed source, the chains' best-so-far curves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import atomic_open
from harness.job.seeds import EVAL_SOURCES
from harness.reporting.units import Units
from harness.stats.results import Decomposition
from harness.store.records import Record
from harness.units import EVAL_ROW, REEVAL_ROW

COLOURS = {"init": "#4c72b0", "order": "#dd8452", "init:order": "#8172b3", "residual": "#937860",
           "split": "#55a868", "noise": "#c44e52", "configuration": "#8c8c8c"}


def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig: Any, path: Path) -> Path:
    """A figure as a PNG at `path`, written atomically (a full disk leaves no partial image: one
    line), then closed."""
    fig.tight_layout()
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, dpi=110, format="png")
    finally:
        _plt().close(fig)
    return path


def shares(name: str, fits: dict[tuple[str, str], dict[str, Decomposition]], out: Path,
           u: Units) -> Path | None:
    bars = [(f"{cfg}" + (f" [{eng}, {mode}]" if len(fits) > 1 else ""), fit)
            for (eng, mode), per in fits.items() for cfg, fit in per.items() if cfg != "pooled"]
    if not bars:
        return None
    plt = _plt()
    sources = list(dict.fromkeys(c.name for _, f in bars for c in f.components))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(bars) + 1.6))
    left = np.zeros(len(bars))
    for s in sources:
        vals = np.array([100 * (f[s].share if s in f.names else 0.0) for _, f in bars])
        ax.barh(range(len(bars)), vals, left=left, label=s, color=COLOURS.get(s))
        left += vals
    ax.set_yticks(range(len(bars)), [label for label, _ in bars])
    ax.invert_yaxis()
    ax.set_xlabel(f"share of the variance of held-out {u.metric} (%)")
    ax.set_ylabel("configuration")
    ax.set_xlim(0, 100)
    ax.legend(ncol=min(len(sources), 5), loc="upper center", bbox_to_anchor=(0.5, -1.1 / (0.5 * len(bars) + 1.6)),
              frameon=False)
    return save(fig, out / f"{name}_shares.png")


def distributions(name: str, rows: Sequence[dict[str, Any]], out: Path, u: Units) -> Path | None:
    """Per source: how far each of its levels moves the mean score (deviation from the configuration's mean)."""
    evals = [r for r in rows if r["kind"] == EVAL_ROW]
    reeval = [r for r in rows if r["kind"] == REEVAL_ROW]
    panels: dict[str, list[float]] = {}
    for source in EVAL_SOURCES:
        groups: dict[tuple[str, Any], list[float]] = defaultdict(list)
        for r in evals:
            if r.get(source) is not None:
                groups[(r["configuration"], r[source])].append(r[u.metric])
        if len({lv for _, lv in groups}) < 2:
            continue
        cfg_mean = {c: np.mean([r[u.metric] for r in evals if r["configuration"] == c]) for c, _ in groups}
        panels[source] = [u.scale * (np.mean(v) - cfg_mean[c]) for (c, _), v in groups.items()]
    if reeval:
        by_chain: dict[Any, list[float]] = defaultdict(list)
        for r in reeval:
            by_chain[r["unit"]].append(r[u.metric])
        overall = np.mean([r[u.metric] for r in reeval])
        panels["bo chain (tuned model)"] = [u.scale * (np.mean(v) - overall) for v in by_chain.values()]
    if not panels:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.boxplot(list(panels.values()), showmeans=True)
    for i, vals in enumerate(panels.values(), 1):
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.12, 0.12, len(vals)), vals, s=10, alpha=0.6, color="k")
    ax.set_xticks(range(1, len(panels) + 1), list(panels))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("seed source")
    ax.set_ylabel(f"level mean - configuration mean ({u.short})")
    ax.set_title("How far one seed level moves the score, per source")
    return save(fig, out / f"{name}_sources.png")


def chains(name: str, studies: Sequence[Record], out: Path, u: Units) -> Path | None:
    if not studies:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for rec in studies:
        scores = [t["score"] if t["score"] is not None else np.nan for t in rec["result"]["trials"]]
        best = u.scale * (np.fmax if u.higher_is_better else np.fmin).accumulate(np.array(scores, dtype=float))
        lv = rec["levels"]
        ax.plot(range(1, len(best) + 1), best, marker=".", lw=1,
                label=f"bo {lv['bo']}, init {lv['init']}, order {lv['order']}")
    ax.set_xlabel("trial")
    ax.set_ylabel("best held-out accuracy so far (%)" if u.points else f"best {u.metric} so far")
    ax.set_title("Optimiser chains: best so far")
    if len(studies) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return save(fig, out / f"{name}_chains.png")


def expect(name: str, rows: Sequence[dict[str, Any]], out: Path, u: Units) -> Path | None:
    """What to expect from one run: the tuned model's fresh-seed scores (per optimiser and averaging
    count, where a job compares several) beside one training of the best fixed configuration."""
    groups: dict[str, list[float]] = defaultdict(list)
    evals = [r for r in rows if r["kind"] == EVAL_ROW and r["mode"] == "on"]
    pick = max if u.higher_is_better else min
    if evals:
        best = pick({r["configuration"] for r in evals},
                    key=lambda c: np.mean([r[u.metric] for r in evals if r["configuration"] == c]))
        groups[f"one training of\n{best}"] = [u.scale * r[u.metric] for r in evals if r["configuration"] == best]
    reeval = [r for r in rows if r["kind"] == REEVAL_ROW]
    arms = len({(r.get("algorithm"), r.get("objective_runs")) for r in reeval}) > 1
    for r in reeval:
        label = f" {r.get('algorithm')} x{r.get('objective_runs')}" if arms else ""
        groups[f"tuned model{label}:\none fresh-seed training"].append(u.scale * r[u.metric])
    if len(groups) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 1.1 * len(groups) + 1.4))
    ax.violinplot(list(groups.values()), orientation="horizontal", showmedians=True)
    for i, vals in enumerate(groups.values(), 1):
        ax.scatter(vals, np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), s=8, alpha=0.5, color="k")
    ax.set_yticks(range(1, len(groups) + 1), list(groups), fontsize=8)
    ax.set_xlabel(f"held-out {u.metric}" + (" (%)" if u.points else ""))
    ax.set_title("What to expect from one run")
    return save(fig, out / f"{name}_expect.png")


def draw(name: str, rows: Sequence[dict[str, Any]], fits: dict[tuple[str, str], dict[str, Decomposition]],
         studies: Sequence[Record], out: Path, u: Units) -> list[tuple[str, str, Path]]:
    """Every figure that has data; (title, one-line caption, path) for the markdown."""
    m = f"held-out {u.metric}" + (" (%)" if u.points else "")
    figures = [
        ("What to expect from one run", f"{m[0].upper() + m[1:]} of the tuned model re-trained on fresh seeds, "
         "beside single trainings of the best fixed configuration: the spread a user sees from one run.",
         expect(name, rows, out, u)),
        ("Variance shares per configuration", f"Share (%) of the variance of one training's held-out {u.metric} "
         "that each seed source explains, per configuration.", shares(name, fits, out, u)),
        ("Score spread per seed source", f"How far each level of a seed source moves the mean held-out {u.metric} "
         f"({u.long}, relative to its configuration's mean).", distributions(name, rows, out, u)),
        ("Optimiser chains, best so far", f"Best {m} each chain had seen after each trial.",
         chains(name, studies, out, u))]
    return [(t, c, p) for t, c, p in figures if p is not None]
