"""The seeding-policy section ("The article"): the article's three examples and the harness's seeding, each run several
times in fresh processes, as one table, and the causes of the inconsistency that the table shows.
A cause is named only when the measured numbers show it; the sentence says what they are."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from harness.job.algorithms import algorithm, effective_options
from harness.job.spec import JobSpec
from harness.reporting.common import config_label, pts
from harness.store.records import Record

NAMES = {"none": "Ex. 1, no seeds", "global": "Ex. 2, tf + np seeds", "average3": "Ex. 3, mean of 3 seeds",
         "harness": "every source seeded (harness)"}


def _std(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def _by_policy(records: Sequence[Record]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r["index"]):
        out[rec["result"]["policy"]].append({**rec["result"], **rec["timings"]})  # process_s: its cost
    return dict(out)


def _sequences(runs: Sequence[dict[str, Any]]) -> int:
    return len({tuple(tuple(sorted(t["config"].items())) for t in r["trials"]) for r in runs})


def _agree(spec: JobSpec, runs: Sequence[dict[str, Any]]) -> int:
    return Counter(config_label(spec, r["best"]) for r in runs).most_common(1)[0][1]


def _row(spec: JobSpec, policy: str, runs: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    return (NAMES[policy], len(runs), f"{_sequences(runs)}/{len(runs)}", pts(_std([r["best_score"] for r in runs])),
            f"{_agree(spec, runs)}/{len(runs)}", pts(_std([r["fixed_score"] for r in runs])),
            f"{statistics.fmean(r['process_s'] for r in runs):.0f}")


def _repeat_pair(runs: Sequence[dict[str, Any]]) -> tuple[str, float, float] | None:
    """A configuration proposed more than once (in any runs) that scored differently."""
    scores: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in runs:
        for t in r["trials"]:
            scores[tuple(sorted(t["config"].items()))].append(t["score"])
    for key, vals in scores.items():
        if len(set(vals)) > 1:
            return ", ".join(f"{k}={v}" for k, v in key), min(vals), max(vals)
    return None


def _cause_seeds(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    g = runs.get("global")
    if not g:
        return []
    starts = len({r["fixed_init_hash"] for r in g})
    if starts > 1:
        return [f"1. **Example 2's seeds do not reach Keras 3's initialisers.** Under `tf.random.set_seed(42)` and "
                f"`np.random.seed(42)` the fixed configuration started from {starts} different sets of initial "
                f"weights in {len(g)} runs: Keras 3's default initialisers take their seeds from Python's "
                f"`random`, which neither call seeds."]
    return []


def _cause_rstate(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    free = [(p, _sequences(rs), len(rs)) for p, rs in runs.items() if p != "harness" and _sequences(rs) > 1]
    if not free:
        return []
    seeded = runs.get("harness")
    contrast = (f"; with `rstate` from the bo stream, {_sequences(seeded)} sequence in {len(seeded)} runs"
                if seeded and _sequences(seeded) == 1 else "")
    listed = ", ".join(f"{NAMES[p]}: {k} different sequences in {n} runs" for p, k, n in free)
    return [f"2. **`fmin` without `rstate` proposes differently in every process** ({listed}){contrast}."]


def _cause_startup(spec: JobSpec) -> list[str]:
    s = spec.searched
    alg = algorithm(s.algorithm)
    startup = effective_options(s, s.algorithm).get(alg.startup or "", 0)
    if not alg.startup or s.max_evals > startup:
        return []
    return [f"3. **{s.max_evals} trials are below TPE's {startup} random start-up trials**, so every "
            f"search above was a random search: TPE never modelled anything."]


def _cause_noise(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    seeded = runs.get("harness")
    pair = _repeat_pair([r for p, rs in runs.items() if p in ("none", "global") for r in rs])
    if not seeded or _sequences(seeded) != 1 or pair is None:
        return []
    label, lo, hi = pair
    return [f"4. **A fully seeded search is repeatable, but it still compares noisy single trainings.** With every "
            f"source seeded all {len(seeded)} runs proposed the same sequence and the same best score; yet the same "
            f"configuration proposed twice without seeds ({label}) scored {pts(lo)}% and {pts(hi)}%: seeding "
            f"freezes one draw of that noise, it does not remove it."]


def _cause_average(spec: JobSpec, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    avg, one = runs.get("average3"), runs.get("none") or runs.get("global")
    if not avg or not one:
        return []
    a, b = _std([r["fixed_score"] for r in avg]), _std([r["fixed_score"] for r in one])
    cost = statistics.fmean(r["process_s"] for r in avg) / statistics.fmean(r["process_s"] for r in one)
    if b == 0 or a >= b:
        return [f"5. **Averaging 3 seeds did not narrow the fixed configuration's spread here** ({pts(a)} vs "
                f"{pts(b)} points std) and cost {cost:.1f}x the time."]
    still = (f"; runs still agreed on the best configuration only {_agree(spec, avg)} of {len(avg)} times"
             if _agree(spec, avg) < len(avg) else "")
    return [f"5. **Averaging 3 seeds cut the fixed configuration's std from {pts(b)} to {pts(a)} points** (ratio "
            f"{a / b:.2f}; theory for independent runs 1/sqrt(3) = {1 / math.sqrt(3):.2f}) at {cost:.1f}x the "
            f"time{still}."]


def policy_section(spec: JobSpec, records: Sequence[Record]) -> list[str]:
    """The table of the seeding policies and the causes it shows (empty without policy runs)."""
    runs = _by_policy(records)
    if not runs or spec.seeding is None:
        return []
    fixed = config_label(spec, spec.seeding.fixed)
    table = [_row(spec, p, runs[p]) for p in spec.seeding.policies if p in runs]
    causes = (_cause_seeds(runs) + _cause_rstate(runs) + _cause_startup(spec) + _cause_noise(runs)
              + _cause_average(spec, runs))
    return ["## The article", "",
            f"The article's examples, each run {spec.seeding.runs} times in fresh processes: a "
            f"{spec.searched.max_evals}-trial hyperopt search over its space, then the fixed configuration ({fixed}) "
            f"trained once under the same seeding. Accuracy in points; s/run includes the process start.", "",
            tabulate(table, headers=("policy", "runs", "proposal sequences that differ", "best accuracy std",
                                     "runs agreeing on the best configuration", f"fixed ({fixed}) accuracy std",
                                     "s/run"), tablefmt="github"), "",
            "What these numbers show:" if causes else "The numbers show none of the article's causes here.", "",
            *causes, ""]


def policy_answer(spec: JobSpec, records: Sequence[Record]) -> list[str]:
    """One line for the report's answer: how much the article's seeding moves a tuned result."""
    runs = _by_policy(records)
    loose = {p: rs for p, rs in runs.items() if p != "harness"}
    if not loose:
        return []
    stds = [_std([r["best_score"] for r in rs]) for rs in loose.values()]
    agree = [_agree(spec, rs) for rs in loose.values()]
    n = len(next(iter(loose.values())))
    seeded = runs.get("harness")
    tail = (f"; with every source seeded all {len(seeded)} runs were identical" if seeded and _sequences(seeded) == 1
            and _std([r["best_score"] for r in seeded]) == 0 else "")
    return [f"- **The article's seeding, run in fresh processes**: the best accuracy of a "
            f"{spec.searched.max_evals}-trial search had a std of {pts(min(stds))} to {pts(max(stds))} points "
            f"and runs agreed on the best configuration {min(agree)} to {max(agree)} of {n} times{tail} "
            f"([table](#the-article))."]
