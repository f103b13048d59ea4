"""reports/<job>.md (+ PNG plots) from the store alone: where the spread of the score comes from.

Sections: header; decomposition per configuration and pooled; the optimiser (chosen configuration
re-evaluated over bo x seeds, agreement, winner's curse); determinism; decisions; configurations.
Every number is read from the store; nothing is trained. Engines and determinism modes are never
mixed in one decomposition: each (engine, mode) is its own block.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.errors import UserError
from harness.files import atomic_write, disk_full_as_error, under
from harness.job.algorithms import arm_algorithms, startup_count
from harness.job.seeds import EVAL_SOURCES, TRAINING_SOURCES
from harness.job.spec import Dimension, JobSpec
from harness.reporting import alone, optimisers, plots
from harness.reporting.common import (
    ARM,
    BOOTSTRAP,
    CI,
    SOURCES_TEXT,
    Row,
    all_blocks,
    binomial_se,
    config_label,
    crossed,
    curse,
    curse_split,
    identical_modes,
    nested,
    source_text,
    trainings_needed,
    tuned_fit,
    value_text,
)
from harness.reporting.common import blocks as _blocks
from harness.reporting.common import columns as _columns
from harness.reporting.common import factors as _factors
from harness.reporting.common import safe_fit as _fit
from harness.reporting.policies import policy_section
from harness.reporting.summary import summary
from harness.reporting.units import Units, units_of
from harness.stats import Decomposition, decompose, decompose_groups
from harness.store.records import Record, machine, training_rows
from harness.store.store import Store, UnitState
from harness.units import POLICY, REEVAL_ROW, STUDY, plan, planned_trainings

SEED_FACTORS = (*TRAINING_SOURCES, "bo", "search_init", "search_order")


def component_table(fit: Decomposition, u: Units) -> str:
    """source | variance (units^2) | std (units) | share | 95% CI of the std."""
    table = []
    for c in fit.components:
        ci = "" if c.ci is None else f"[{u.value(math.sqrt(max(c.ci[0], 0)))}, {u.value(math.sqrt(max(c.ci[1], 0)))}]"
        table.append((c.name + (" (truncated at 0)" if c.truncated else ""), u.variance(c.variance),
                      u.value(c.std), f"{100 * c.share:.1f}%", ci))
    table.append(("total", u.variance(fit.total), u.value(math.sqrt(fit.total)), "100.0%", ""))
    return tabulate(table, headers=("source", f"variance ({u.short}²)", f"std ({u.short})", "share",
                                    f"{fit.ci_header} of std ({u.short})"), tablefmt="github")


def reading(fit: Decomposition, what: str, u: Units, residual: str | None = None) -> str:
    """One plain-language paragraph for a decomposition; `residual` names what the residual is
    when it is not repeats with every seed equal."""
    texts = {**SOURCES_TEXT, **({"residual": residual} if residual else {})}
    parts = sorted(fit.components, key=lambda c: -c.share)
    named = [f"{texts.get(c.name) or (source_text(c.name) if nested(c.name) else c.name.replace(':', ' x '))} "
             f"{100 * c.share:.0f}%" for c in parts
             if c.share >= 0.005]
    total = math.sqrt(fit.total)
    text = (f"For {what}, one seeded training's held-out {u.metric} has a standard deviation of "
            f"{u.value(total)} {u.long}. Of that variance: {'; '.join(named) or 'nothing measurable'}.")
    res = fit["residual"] if "residual" in fit.names else None
    if residual is None and fit.per_cell == 1:
        text += (" With one training per seed cell, 'residual' is the highest-order interaction of the seeds, "
                 "not a separate measure of implementation noise.")
    elif residual is None and res is not None and res.variance == 0:
        text += (" Repeats with every seed equal gave identical scores: with these determinism settings "
                 "the implementation adds no noise, so all of the spread is seed luck.")
    top, factors = parts[0], crossed(parts[0].name)
    if len(factors) == 1 and factors[0] in (*TRAINING_SOURCES, "bo") and top.share > 0.4:
        text += (f" The largest source is {source_text(top.name)}: averaging over more of its seeds narrows "
                 f"the spread most.")
    elif len(factors) > 1 and top.share > 0.4:
        text += (f" The largest source is the interaction {' x '.join(factors)}: the seeds act "
                 f"together, so no single seed fixes the score; average over all of them.")
    return text


# ------------------------------------------------------------------ sections

def _chains(spec: JobSpec) -> str:
    """The search part of the matrix line: every arm (optimiser x averaging count)."""
    s = spec.search
    if s is None:
        return "no search"
    algorithms, runs = arm_algorithms(s), spec.runs_factor()
    arms = "".join(f"{n} {what} x " for n, what in ((len(algorithms), "optimisers"), (len(runs), "averaging counts"))
                   if n > 1)
    under = f"{algorithms[0]} trials" if len(algorithms) == 1 else f"trials under each of {', '.join(algorithms)}"
    startup = ", ".join(f"{name} {n}" if len(algorithms) > 1 else str(n)
                        for name in algorithms if (n := startup_count(s, name)) is not None)
    return (f"{arms}{len(spec.levels['bo'])} bo x {s.chains_init} init x {s.chains_order} order chains "
            f"of {s.max_evals} {under}" + (f" ({startup} random startup)" if startup else "")
            + f", objective = mean of {' or '.join(map(str, runs))} run(s)")


def header(spec: JobSpec, store: Store, states: dict[str, UnitState], rows: Sequence[Row]) -> list[str]:
    units = plan(spec)
    ok = [st.ok for st in states.values() if st.ok is not None]
    env = ok[0]["env"] if ok else {}
    machines = Counter(machine(r) for r in ok)
    lv = spec.levels
    matrix = (f"{len(spec.configurations)} configurations x "
              + " x ".join(f"{len(lv[s])} {s}" for s in EVAL_SOURCES if s in lv)
              + f" x {len(spec.determinism.modes)} determinism mode(s); " + _chains(spec))
    done = sum(1 for u in units if u.id in states and states[u.id].ok)
    failed = sum(1 for u in units if u.id in states and states[u.id].ok is None)
    engines = sorted({str(r["engine"]) for r in rows}) or [spec.training.engine]
    table = [("job", f"{spec.name} (`{spec.path}`)"), ("store", f"`{store.dir}`"), ("matrix", matrix),
             ("trainings", f"{len(rows)} recorded of {planned_trainings(spec, units)} planned"),
             ("units", f"{done} done, {failed} failed, {len(units) - done - failed} pending, of {len(units)}"),
             ("engine", ", ".join(engines)), ("op determinism", ", ".join(spec.determinism.modes)),
             ("environment", ", ".join(f"{k} {env[k]}" for k in ("backend", "keras", "tensorflow", "jax", "cuda",
                                                                 "cudnn", "host") if env.get(k))),
             ("hardware", "; ".join(f"{m} ({n} units)" for m, n in machines.most_common()) or "none recorded"),
             ("test split", _test_sizes(rows)), ("scores", _scores(spec))]
    seeding = next((r["noise_seeding"] for r in ok if r.get("noise_seeding")), None)
    if seeding is not None:
        table.append(("noise stream", _seeding(seeding)))
    out = [f"# Variance report: {spec.name}", "", tabulate(table, headers=("", ""), tablefmt="github"), ""]
    if failed or done < len(units):
        out += [f"> {len(units) - done} units have no result yet; tables use what is recorded.", ""]
    if len(machines) > 1:
        out += [f"> This store mixes {len(machines)} machines. Bit-identity is claimed per machine: the same seeds "
                f"on another CPU or GPU may differ in the last bits.", ""]
    return out


def _scores(spec: JobSpec) -> str:
    """Which split each score comes from."""
    metric = f"{spec.objective_metric} ({'higher' if spec.objective_direction == 'max' else 'lower'} is better)"
    if spec.search is None:
        return f"{metric} on the test split; no search"
    if spec.data.validation:
        return (f"{metric}; chains select on the validation split ({100 * spec.data.validation:g}% of train); "
                f"decompositions and tables use the test split")
    return (f"{metric} on the test split, which the chains also select on (no validation split: the best scores "
            f"seen are optimistic, see the winner's curse)")


def _seeding(seeding: dict[str, list[str]]) -> str:
    """What the noise stream reaches in a model the harness did not write (from its records)."""
    text = (f"reseeds {len(seeding['reseeded'])} build-time SeedGenerator(s) ({', '.join(seeding['reseeded'])})"
            if seeding["reseeded"] else "reaches no SeedGenerator of the model")
    if seeding["fixed"]:
        text += (f"; seeded by the model's own code, moved by neither init nor noise: "
                 f"{', '.join(seeding['fixed'])}")
    return text


def _test_sizes(rows: Sequence[Row]) -> str:
    """The held-out split's size as the records give it (one per split seed)."""
    sizes = sorted({int(r["test_size"]) for r in rows if r.get("test_size") is not None})
    return f"{' / '.join(map(str, sizes))} examples" if sizes else "unknown"


def decomposition_section(spec: JobSpec, rows: Sequence[Row],
                          fits: dict[tuple[str, str], dict[str, Decomposition]]) -> list[str]:
    u = units_of(spec)
    blocks = _blocks(rows, u.metric)
    if not blocks:
        return []
    unit_text = "accuracy points" if u.points else f"{u.metric}'s own units"
    out = ["## Where the spread comes from", "",
           f"Variance components of held-out {u.metric} (test split) for a fixed configuration (balanced "
           f"random-effects ANOVA over the seed factors, repeats as replication; 95% intervals from generalized "
           f"pivotal quantities (GPQ), which cover 93.5-97.9% from 4 levels per factor in "
           f"bench/RESULTS-coverage.md, where a cluster bootstrap covers 55-84% for the larger components). Std "
           f"and variance in {unit_text}.", ""]
    if len(blocks) > 1:
        out += [f"Each engine and determinism mode is decomposed separately ({len(blocks)} blocks).", ""]
    out += [f"Op determinism off gave bit-identical scores to op determinism on (engine `{e}`): its tables are "
            f"shown once, under 'on'.\n" for e in identical_modes(all_blocks(rows), u.metric)]
    for (engine, mode), block in blocks.items():
        factors = _factors(block, TRAINING_SOURCES)
        if not factors:
            continue
        per = fits.setdefault((engine, mode), {})
        columns = _columns(block, factors + ["configuration"], u.metric)
        try:
            grouped = decompose_groups(columns, u.metric, factors, "configuration", ci=CI,
                                       seed=spec.root_seed % 2**31)
        except UserError as exc:  # e.g. one training per level of a lone factor: no residual to separate
            out += [f"> Not decomposed (engine `{engine}`, op determinism {mode}): {exc}", ""]
            continue
        configs = list(dict.fromkeys(r["configuration"] for r in block))
        title = f"engine `{engine}`, op determinism {mode}"
        if len(configs) > 1:
            pooled = _fit(partial(decompose, columns, u.metric, ["configuration"] + factors,
                                  ci=CI, seed=spec.root_seed % 2**31))
            out += [f"### Pooled over configurations ({title})", "",
                    "The configuration is a factor here: its row is the spread *between* configurations; "
                    "the others are the seed effects pooled over them.", "",
                    *_fit_lines(pooled, "a configuration picked from this list", u=u)]
            if isinstance(pooled, Decomposition):
                per["pooled"] = pooled
        counts = Counter(r["configuration"] for r in block)
        most = max(counts.values())
        for cfg in configs:
            fit = _fit(partial(grouped.__getitem__, cfg))
            short = [f"> {most - counts[cfg]} of {most} trainings missing here (their units failed or have not "
                     f"run; `harness status` counts them): the fit is of the {counts[cfg]} there are.", ""] \
                if counts[cfg] < most else []
            out += [f"### {cfg} ({title})", "", *short, *_fit_lines(fit, cfg, u=u)]
            if isinstance(fit, Decomposition) and math.isfinite(fit.total):  # a lone training has no spread
                per[cfg] = fit
    return out


def _fit_lines(fit: Decomposition | str, what: str, u: Units, residual: str | None = None) -> list[str]:
    if isinstance(fit, str):
        return [f"> Not decomposed: {fit}", ""]
    note = [f"> {fit.summary()}", ""] if fit.method != "anova" else []
    warn = [line for w in fit.warnings(dict.fromkeys(SEED_FACTORS, "seeds"), scale=u.scale)
            for line in (f"> {w}", "")]
    return [*note, component_table(fit, u), "", *warn, reading(fit, what, u, residual), ""]


def _studies(states: dict[str, UnitState]) -> list[Record]:
    return sorted((st.ok for st in states.values() if st.ok and STUDY.owns(st.ok)),
                  key=lambda r: r["index"])


def optimiser_section(spec: JobSpec, rows: Sequence[Row], states: dict[str, UnitState],
                      fit: Decomposition | str | None) -> list[str]:
    """The chains: `fit` is the tuned model's decomposition (common.tuned_fit), agreement, winner's curse."""
    studies = _studies(states)
    if not studies:
        return []
    out = ["## The optimiser", ""]
    u = units_of(spec)
    if fit is not None:
        out += ["Each chain's chosen configuration, re-trained on the same fresh init x order seeds: how much "
                "of the tuned model's score depends on the optimiser's seed (`bo`) and on the seeds the search "
                "ran under (`search_init`, `search_order`). The residual is the re-training's own seed spread "
                "(the fresh seeds are its replication).", "", *_arm_note(fit),
                *_fit_lines(fit, "the tuned model (search, then re-training)",
                            residual="re-training the chosen configuration on fresh seeds", u=u)]
    trials = [t for r in studies for t in r["result"]["trials"]]
    failed = [t for t in trials if t.get("error")]
    if failed:
        out += [f"**Failed trials.** {len(failed)} of {len(trials)} trials failed and were told to the optimiser as "
                f"failed, as KerasTuner does (first: {failed[0]['error']}); their chains went on.", ""]
    chosen = Counter(config_label(spec, r["result"]["chosen"]) for r in studies)
    top, n = chosen.most_common(1)[0]
    out += [f"**Agreement.** {len(studies)} chains chose {len(chosen)} different configuration(s); the most "
            f"frequent, {top}, by {n} of {len(studies)} ({100 * n / len(studies):.0f}%).", ""]
    out += [tabulate([_spread(d, [r["result"]["chosen"][d.name] for r in studies if d.name in r["result"]["chosen"]])
                      for d in spec.searched.space],
                     headers=("hyperparameter", "min", "median", "max", "distinct"), tablefmt="github"), ""]
    return out + _winners_curse(spec, studies, u)


def _arm_note(fit: Decomposition | str | None) -> list[str]:
    """What `arm` and `bo:arm` mean, when the fit has them."""
    if not isinstance(fit, Decomposition) or ARM not in fit.names:
        return []
    return [f"The chains of every arm (optimiser x averaging count) are pooled: `{ARM}` is the spread between "
            f"arms, and the optimiser's seed is nested in the arm (`bo:{ARM}`, the optimiser's seed within an arm), "
            f"as no bo level is shared by two optimisers. Per-arm shares are under Optimisers side by side.", ""]


def _spread(d: Dimension, vals: list[Any]) -> tuple[str, str, str, str, int]:
    """A hyperparameter's chosen values: min, median and max of a number; the most frequent option of
    a choice; "inactive" where no chain's chosen configuration used it (a hypermodel's conditional)."""
    if not vals:
        return d.name, "", "inactive", "", 0
    texts = [value_text(v, d) for v in vals]
    if d.kind == "choice" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return d.name, "", Counter(texts).most_common(1)[0][0], "", len(set(texts))
    return (d.name, value_text(min(vals), d), value_text(float(statistics.median(vals)), d), value_text(max(vals), d),
            len(set(texts)))


def _winners_curse(spec: JobSpec, studies: list[Record], u: Units) -> list[str]:
    """Best score seen vs the chosen configuration's mean on fresh seeds, both on the split the search
    scored (`curse_split`); a gap is how much better the best looked. One row per chain, its arm first
    when there are several."""
    s, split = spec.searched, curse_split(spec)
    algorithms, runs = arm_algorithms(s), spec.runs_factor()
    arm = (["optimiser"] if len(algorithms) > 1 else []) + (["runs"] if len(runs) > 1 else [])
    test = [] if split == "test" else ["fresh seeds (test)"]  # the tuned model, when the search scored another split
    table, gaps = [], []
    for rec, (fresh, gap) in zip(studies, curse(spec, studies, u.metric, u.higher_is_better), strict=True):
        res, lv = rec["result"], rec["levels"]
        gaps.append(gap)
        tuned = [u.value(statistics.fmean(r["metrics"][u.metric] for r in res["reeval"]))] if test else []
        table.append((*([rec.get("algorithm")] if len(algorithms) > 1 else []),
                      *([rec.get("runs")] if len(runs) > 1 else []), lv["bo"], lv["init"], lv["order"],
                      config_label(spec, res["chosen"]), u.value(res["best_score"]), u.value(fresh), u.value(gap),
                      *tuned))
    better = "above" if u.higher_is_better else "below"
    return [f"**Winner's curse.** The best score a chain saw is on average {u.value(statistics.fmean(gaps))} "
            f"{u.long} {better} the same configuration's mean on {s.reevaluate_init} x {s.reevaluate_order} fresh "
            f"seeds (range {u.value(min(gaps))} to {u.value(max(gaps))}), both on the {split} split, which the "
            f"search selected on: the search reports a lucky draw, not the configuration's quality."
            + (" The last column is the same re-trainings on the test split: the tuned model's score." if test else ""),
            "", tabulate(table, headers=(*arm, "bo", "init", "order", "chosen", f"best seen ({split})",
                                         f"fresh seeds ({split})", f"gap ({u.short})", *test), tablefmt="github"), ""]


def determinism_section(rows: Sequence[Row], fits: dict[tuple[str, str], dict[str, Decomposition]],
                        u: Units) -> list[str]:
    blocks = all_blocks(rows)
    same = identical_modes(blocks, u.metric)
    modes = {mode for _, mode in blocks}
    if modes != {"on", "off"}:
        return []
    table = []
    for engine in sorted({e for e, _ in blocks}):
        # medians: a worker's first training of a configuration also compiles (seconds under jax)
        walls = {m: statistics.median(r["wall_s"] for r in blocks[(engine, m)]) for m in ("on", "off")
                 if (engine, m) in blocks}
        res = {m: statistics.fmean(f["residual"].variance for k, f in fits.get((engine, m), {}).items()
                                   if k != "pooled") for m in walls if fits.get((engine, m))}
        if engine in same and "on" in res:  # shown once: the off block's scores are the on block's
            res["off"] = res["on"]
        table.append((engine, u.variance(res.get("on", float("nan")), 4), u.variance(res.get("off", float("nan")), 4),
                      f"{walls.get('on', float('nan')):.3f}", f"{walls.get('off', float('nan')):.3f}",
                      f"{walls['on'] / walls['off']:.2f}x" if len(walls) == 2 else ""))
    return ["## Determinism", "",
            "The same matrix with op determinism on and off: the residual (repeats with every seed equal) is the "
            "implementation noise each mode leaves, and the median wall time per training its cost on this device. "
            "Bit-identity is claimed per machine (the header's hardware): a rerun there repeats every bit; "
            "another CPU or GPU may differ in the last bits.", "",
            tabulate(table, headers=("engine", f"residual on ({u.short}²)", f"residual off ({u.short}²)",
                                     "s/training on", "s/training off", "slowdown"), tablefmt="github"), ""]


def _paired_win(a: dict[tuple, float], b: dict[tuple, float], seed: int, reps: int = BOOTSTRAP
                ) -> tuple[float, float, float] | None:
    """P(A beats B) over matched seed cells (ties count half), with a bootstrap CI over cells."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        return None
    diff = np.array([a[k] - b[k] for k in keys])
    wins = (diff > 0) + 0.5 * (diff == 0)
    rng = np.random.default_rng(seed)
    boot = wins[rng.integers(0, len(wins), size=(reps, len(wins)))].mean(axis=1)
    return float(wins.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def decisions_section(spec: JobSpec, rows: Sequence[Row],
                      fits: dict[tuple[str, str], dict[str, Decomposition]]) -> list[str]:
    blocks = _blocks(rows, units_of(spec).metric)
    if not blocks:
        return []
    (engine, mode), block = next(iter(blocks.items()))
    per = {k: v for k, v in fits.get((engine, mode), {}).items() if k != "pooled"}
    if not per:
        return []
    u = units_of(spec)
    var = statistics.fmean(f.total for f in per.values())
    # differences in accuracy points, or in multiples of the std for any other metric
    diffs = [(d, d / 100) for d in (0.25, 0.5, 1, 2)] if u.points else \
        [(f"{m:g} std = {u.value(m * math.sqrt(var))}", m * math.sqrt(var)) for m in (0.25, 0.5, 1, 2)]
    out = ["## Decisions", "",
           f"Seeded trainings needed per configuration to detect a true {u.metric} difference between two "
           f"configurations (two-sided alpha 0.05, power 0.8), from the mean within-configuration variance "
           f"({u.value(math.sqrt(var))} {u.long} std; engine `{engine}`, op determinism {mode}):", ""]
    need = [(f"{d:g}" if u.points else d, trainings_needed(var, x) if x else "")
            for d, x in diffs]
    out += [tabulate(need, headers=(f"difference ({u.short})", "trainings each"), tablefmt="github"), ""]
    means = {cfg: statistics.fmean(r[u.metric] for r in block if r["configuration"] == cfg) for cfg in per}
    ranked = sorted(means, key=lambda c: -means[c] if u.higher_is_better else means[c])
    if len(ranked) >= 2:
        sign = 1.0 if u.higher_is_better else -1.0
        cells = {cfg: {(r["init_level"], r["order_level"], r.get("repeat_level")): sign * r[u.metric]
                       for r in block if r["configuration"] == cfg} for cfg in ranked[:2]}
        win = _paired_win(cells[ranked[0]], cells[ranked[1]], spec.root_seed)
        if win is not None:
            out += [f"**Top two.** {ranked[0]} (mean {u.value(means[ranked[0]])}) vs {ranked[1]} "
                    f"(mean {u.value(means[ranked[1]])}): with the same seeds, A beats B in {100 * win[0]:.0f}% of "
                    f"trainings (95% bootstrap CI {100 * win[1]:.0f}% to {100 * win[2]:.0f}%).", ""]
    if u.points:
        n = min(int(r["test_size"]) for r in block)
        p = statistics.fmean(means.values())
        out += [f"**Binomial floor.** With {n} test examples at accuracy {u.value(p)}%, the test split alone "
                f"gives a standard error of sqrt(p(1-p)/n) = {u.value(binomial_se(p, n))} points: "
                f"differences below it are not resolved by this test set, however many seeds.", ""]
    return out


def configuration_table(rows: Sequence[Row], u: Units) -> list[str]:
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for block in _blocks(rows, u.metric).values():
        for r in block:
            groups[(r["configuration"], str(r["engine"]), r["mode"])].append(r[u.metric])
    if not groups:
        return []
    table = [(cfg, eng, mode, len(v), u.value(statistics.fmean(v)),
              u.value(statistics.stdev(v) if len(v) > 1 else 0.0), u.value(min(v)), u.value(max(v)))
             for (cfg, eng, mode), v in groups.items()]
    what = "accuracy (%)" if u.points else u.metric
    return ["## Configurations over the seed matrix", "",
            f"Held-out {what} on the test split over every seed combination.", "",
            tabulate(table, headers=("configuration", "engine", "op determinism", "trainings", "mean", "std",
                                     "min", "max"), tablefmt="github"), ""]


def report_rows(spec: JobSpec, states: dict[str, UnitState]) -> list[Row]:
    """Training rows with a configuration label and the chain's cell on re-evaluations."""
    chains = {st.ok["unit"]: st.ok["levels"] for st in states.values() if st.ok and STUDY.owns(st.ok)}
    rows = []
    for r in training_rows([st.ok for st in states.values() if st.ok is not None]):
        r = {**r, "configuration": config_label(spec, r)}
        for s in (*EVAL_SOURCES, "bo"):
            r[s] = r.get(f"{s}_level")
        if r["kind"] == REEVAL_ROW:
            r["chain_init"], r["chain_order"] = chains[r["unit"]]["init"], chains[r["unit"]]["order"]
        rows.append(r)
    return rows


def render(spec: JobSpec, store: Store, out_dir: Path | None) -> str:
    """The report's markdown, built from the store alone (no training), the answer first; its plots
    are written into `out_dir`, which the markdown links to (None: no plots)."""
    states = store.states()
    rows = report_rows(spec, states)
    fits: dict[tuple[str, str], dict[str, Decomposition]] = {}
    body = decomposition_section(spec, rows, fits)
    body += alone.section(spec, states)
    tuned = tuned_fit(spec, rows, units_of(spec).metric)  # the section and the answer share it
    body += optimiser_section(spec, rows, states, tuned)
    body += optimisers.section(spec, states, out_dir)
    body += determinism_section(rows, fits, units_of(spec))
    body += decisions_section(spec, rows, fits)
    body += configuration_table(rows, units_of(spec))
    policy_runs = [st.ok for st in states.values() if st.ok and POLICY.owns(st.ok)]
    body += policy_section(spec, policy_runs)
    answer = summary(spec, rows, _studies(states), fits, policy_runs, optimisers.answer(spec, states), units_of(spec),
                     tuned)
    figures: list[str] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        images = plots.draw(spec.name, rows, fits, _studies(states), out_dir, units_of(spec))
        figures = ["## Plots", ""] + [line for title, caption, path in images
                                       for line in (f"![{title}]({path.name})", "", f"*{caption}*", "")]
    head = header(spec, store, states, rows)
    return "\n".join(head[:2] + answer + head[2:] + body + (figures if len(figures) > 2 else []))


def write_report(spec: JobSpec, store: Store, out_dir: Path) -> Path:
    """Render the report and its plots and write `out_dir/<job>.md` (atomically)."""
    path = under(out_dir, f"{spec.name}.md", what="report")
    with disk_full_as_error(out_dir, "the report"):  # its directory; the files are written atomically
        text = render(spec, store, out_dir)
        atomic_write(path, text)
    return path
