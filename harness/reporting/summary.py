"""The answer at the top of a report: how much the score moves, where it comes from, what to do,
and the warnings the data supports. Every sentence is computed from the same numbers as a table
further down, links to it, and is only said when those numbers say it."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

from harness.job.algorithms import algorithm, arm_algorithms, effective_options
from harness.job.spec import JobSpec
from harness.reporting.common import (
    ARM,
    Row,
    all_blocks,
    binomial_se,
    blocks,
    config_label,
    curse,
    curse_split,
    identical_modes,
    pts,
    source_text,
    trainings_needed,
)
from harness.reporting.policies import policy_answer
from harness.reporting.units import Units
from harness.stats import Component, Decomposition
from harness.store.records import Record
from harness.units import REEVAL_ROW

Fits = dict[tuple[str, str], dict[str, Decomposition]]
SPREAD, OPTIMISER, DETERMINISM, DECISIONS = ("#where-the-spread-comes-from", "#the-optimiser", "#determinism",
                                             "#decisions")
SMALL_SHARE = 0.10  # below this share of the tuned model's variance, a source "matters little"


def _link(text: str, anchor: str) -> str:
    return f"{text} ([table]({anchor}))"


def _share(c: Component, fit: Decomposition) -> str:
    """A source's share with its interval; the residual named for what it is in this design."""
    ci = f" [{100 * c.share_ci[0]:.0f}-{100 * c.share_ci[1]:.0f}%]" if c.share_ci else ""
    name = source_text(c.name) if fit.per_cell > 1 else source_text(
        c.name, "the seeds' highest interaction (one training per seed cell)")
    return f"{name} {100 * c.share:.0f}%{ci}"


def _main(rows: Sequence[Row], fits: Fits, metric: str) -> tuple[tuple[str, str], list[Row], dict[str, Decomposition]]:
    """The first evaluation block (engine, op determinism on first): its key, rows and
    per-configuration fits."""
    for key, block in blocks(rows, metric).items():
        per = {k: f for k, f in fits.get(key, {}).items() if k != "pooled"}
        if per:
            return key, block, per
    return ("", ""), [], {}


def fixed_spread(rows: Sequence[Row], fits: Fits, u: Units) -> list[str]:
    """How much one training's score moves for a fixed configuration, and from which sources."""
    key, block, per = _main(rows, fits, u.metric)
    if not per:
        return []
    stds = {cfg: math.sqrt(f.total) for cfg, f in per.items()}
    worst = max(stds, key=stds.__getitem__)
    accs = [r[u.metric] for r in block]
    pct = "%" if u.points else ""
    moves = (f"{u.value(stds[worst])} {u.long}" if len(stds) == 1 else
             f"{u.value(min(stds.values()))} to {u.value(max(stds.values()))} {u.long} over the "
             f"{len(stds)} configurations "
             f"(most for {worst})")
    out = [_link(f"- **For a fixed configuration, one seeded training's held-out {u.metric} has a std of {moves}**; "
                 f"single trainings scored {u.value(min(accs))}{pct} to {u.value(max(accs))}{pct}.", SPREAD)]
    fit = per[worst]
    seeds = sorted(fit.components, key=lambda c: -c.share)
    ranked = "; ".join(_share(c, fit) for c in seeds if c.share >= 0.05) or "nothing measurable"
    out.append(_link(f"- **Where it comes from** (the noisiest configuration, {worst}; share of the variance, "
                     f"95% CI): {ranked}.{_others(per, worst)}", SPREAD))
    return out


def _others(per: dict[str, Decomposition], worst: str) -> str:
    """The largest source in each of the other configurations, counted."""
    tops = Counter(source_text(max(f.components, key=lambda c: c.share).name) for cfg, f in per.items()
                   if cfg != worst)
    if not tops:
        return ""
    return " In the other configurations the largest source is " + ", ".join(
        f"{name} ({n} of {len(per) - 1})" for name, n in tops.most_common()) + "."


def _chain_means(rows: Sequence[Row], metric: str) -> dict[str, float]:
    by_unit: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == REEVAL_ROW:
            by_unit[r["unit"]].append(r[metric])
    return {u: statistics.fmean(v) for u, v in by_unit.items()}


def tuned_spread(spec: JobSpec, rows: Sequence[Row], fit: Decomposition | str | None, u: Units
                 ) -> list[str]:
    """How much the tuned model's score moves between searches, and what moves it."""
    means = _chain_means(rows, u.metric)
    pct = "%" if u.points else ""
    if len(means) < 2:
        return []
    out = [_link(f"- **The tuned model's score moves by a std of {u.value(statistics.stdev(means.values()))} {u.long} "
                 f"between searches**: {len(means)} chains, each chosen configuration re-trained on "
                 f"{spec.searched.reevaluate_init} x {spec.searched.reevaluate_order} fresh seeds, averaged "
                 f"{u.value(min(means.values()))}{pct} to {u.value(max(means.values()))}{pct}.", OPTIMISER)]
    if isinstance(fit, Decomposition):
        parts = sorted(fit.components, key=lambda c: -c.share)[:3]
        ranked = "; ".join(f"{source_text(c.name, 're-training on fresh seeds')} {100 * c.share:.0f}%"
                           + (f" [{100 * c.share_ci[0]:.0f}-{100 * c.share_ci[1]:.0f}%]" if c.share_ci else "")
                           for c in parts if c.share >= 0.05)
        out.append(_link(f"- **What moves the tuned model**: {ranked}.", OPTIMISER))
    return out


def what_to_do(rows: Sequence[Row], fits: Fits, tuned: Decomposition | str | None, arms: Sequence[str],
               u: Units) -> list[str]:
    out = _averaging(rows, fits, u) + _determinism(rows, fits, u) + _optimiser_seed(tuned) + list(arms)
    return (["- **What to do:**"] + [f"  {line}" for line in out]) if out else []


def _averaging(rows: Sequence[Row], fits: Fits, u: Units) -> list[str]:
    _, block, per = _main(rows, fits, u.metric)
    if not per:
        return []
    var = statistics.fmean(f.total for f in per.values())
    if not u.points:  # differences in the metric's own units: one and one half std of one training
        d = math.sqrt(var)
        return [_link(f"- Compare configurations on the mean of {trainings_needed(var, d)} seeded trainings each to "
                      f"tell a difference of one training's std ({u.value(d)} {u.long}); "
                      f"{trainings_needed(var, d / 2)} for half of it.", DECISIONS)]
    n1, n05 = trainings_needed(var, 0.01), trainings_needed(var, 0.005)
    p = statistics.fmean(r[u.metric] for r in block)
    n_test = min(int(r["test_size"]) for r in block)
    return [_link(f"- Compare configurations on the mean of {n1} seeded trainings each to tell a 1-point "
                  f"difference ({n05} for 0.5 points); one training each cannot.", DECISIONS),
            _link(f"- The test split ({n_test} examples) has a binomial floor of {pts(binomial_se(p, n_test))} "
                  f"points: no number of seeds resolves differences below it.", DECISIONS)]


def _determinism(rows: Sequence[Row], fits: Fits, u: Units) -> list[str]:
    everything = all_blocks(rows)
    out = []
    for engine in sorted({e for e, _ in everything}):
        modes = {m for e, m in everything if e == engine}
        res = [f["residual"].variance for f in fits.get((engine, "on"), {}).values() if "residual" in f.names]
        walls = {m: statistics.median(r["wall_s"] for r in everything[(engine, m)]) for m in modes}
        cost = f" (time {walls['on'] / walls['off']:.2f}x)" if len(walls) == 2 and walls["off"] else ""
        if engine in identical_modes(everything, u.metric):
            out.append(_link(f"- Op determinism removes no noise here (engine `{engine}`): with it off the scores "
                             f"were bit-identical{cost}.", DETERMINISM))
        elif modes == {"on", "off"}:
            off = [f["residual"].variance for f in fits.get((engine, "off"), {}).values() if "residual" in f.names]
            if off and res:
                out.append(_link(f"- Op determinism changes the implementation noise from "
                                 f"{u.value(math.sqrt(statistics.fmean(off)))} to "
                                 f"{u.value(math.sqrt(statistics.fmean(res)))}"
                                 f" points (std of repeats){cost}.", DETERMINISM))
        elif res and max(res) == 0:
            out.append(_link(f"- Repeats with every seed equal gave identical scores (engine `{engine}`, op "
                             f"determinism {sorted(modes)[0]}): all of the spread is seed luck.", SPREAD))
    return out


def _optimiser_seed(fit: Decomposition | str | None) -> list[str]:
    """Whether the optimiser's seed matters (with several arms: its share within an arm, pooled)."""
    if not isinstance(fit, Decomposition):
        return []
    name = next((n for n in ("bo", f"bo:{ARM}") if n in fit.names), None)
    if name is None:
        return []
    bo = fit[name].share
    seeds = sum(fit[n].share for n in ("search_init", "search_order") if n in fit.names)
    who = "The optimiser's own seed" + (" (within an arm, pooled over the arms)" if name != "bo" else "")
    if bo < SMALL_SHARE:
        than = "more" if seeds > bo else "less still" if seeds < bo else "as much"
        text = (f"- {who} matters little ({100 * bo:.0f}% of the tuned model's variance); the seeds the search "
                f"trained under matter {than} ({100 * seeds:.0f}%).")
    else:
        text = (f"- {who} matters: {100 * bo:.0f}% of the tuned model's variance; run several searches with "
                f"different seeds before trusting a configuration.")
    return [_link(text, OPTIMISER)]


def warnings(spec: JobSpec, rows: Sequence[Row], studies: Sequence[Record], fits: Fits,
             u: Units) -> list[str]:
    """Only what the data (or the job's own settings) shows."""
    out: list[str] = []
    for name in arm_algorithms(spec.searched) if studies else ():
        s = spec.searched
        alg = algorithm(name)
        startup = effective_options(s, name).get(alg.startup or "", 0)
        if alg.startup and s.max_evals <= startup:
            out.append(f"- Every {name} search was random search in disguise: max_evals {s.max_evals} does not "
                       f"exceed its {startup} random start-up trials.")
    chosen = Counter(config_label(spec, r["result"]["chosen"]) for r in studies)
    if len(chosen) > 1:
        top, n = chosen.most_common(1)[0]
        out.append(_link(f"- The chains disagree: {len(studies)} searches chose {len(chosen)} configurations "
                         f"(the most frequent, {top}, {n} times).", OPTIMISER))
    out += _curse_and_floor(spec, rows, studies, fits, u)
    return (["- **Warnings:**"] + [f"  {line}" for line in out]) if out else []


def _curse_and_floor(spec: JobSpec, rows: Sequence[Row], studies: Sequence[Record], fits: Fits,
                     u: Units) -> list[str]:
    """Winner's curse and test-set floor, each against the gap between the two best configurations."""
    _, block, per = _main(rows, fits, u.metric)
    means = sorted((statistics.fmean(r[u.metric] for r in block if r["configuration"] == c) for c in per),
                   reverse=u.higher_is_better)
    if len(means) < 2:
        return []
    gap, out = abs(means[0] - means[1]), []
    gaps = [g for _, g in curse(spec, studies, u.metric, u.higher_is_better)]
    if gaps and statistics.fmean(gaps) > gap:
        out.append(_link(f"- The winner's curse ({u.value(statistics.fmean(gaps))} {u.long}: best score seen "
                         f"minus fresh-seed mean, both on the {curse_split(spec)} split) is larger than the gap "
                         f"between the two best configurations ({u.value(gap)} {u.long}, test split): a search's "
                         f"best score cannot rank them.", OPTIMISER))
    if not u.points:
        return out
    n_test = min(int(r["test_size"]) for r in block)
    floor = math.sqrt(2) * binomial_se(statistics.fmean(means), n_test)
    if 1.96 * floor > gap:
        out.append(_link(f"- The test split ({n_test} examples) is too small to resolve the two best "
                         f"configurations: their gap, {pts(gap)} points, is below 1.96 x the binomial standard "
                         f"error of a difference ({pts(1.96 * floor)} points).", DECISIONS))
    return out


def summary(spec: JobSpec, rows: Sequence[Row], studies: Sequence[Record], fits: Fits,
            policy_runs: Sequence[Record], arms: Sequence[str], u: Units,
            tuned: Decomposition | str | None = None) -> list[str]:
    """The report's opening section (empty when nothing is recorded yet); `arms`: the optimisers'
    line (reporting.optimisers.answer), when the optimiser or averaging count is a factor."""
    body = (fixed_spread(rows, fits, u) + tuned_spread(spec, rows, tuned, u) + policy_answer(spec, policy_runs)
            + what_to_do(rows, fits, tuned, arms, u) + warnings(spec, rows, studies, fits, u))
    return ["## The answer", "", *body, ""] if body else []
