"""What the report's sections and its summary share: units, plain-language names of the sources,
the blocks evaluation rows are decomposed in, and the arithmetic of decisions."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.job.spec import Dimension, JobSpec
from harness.stats import Decomposition, decompose
from harness.store.records import Record
from harness.units import EVAL_ROW, REEVAL_ROW

Row = dict[str, Any]
BOOTSTRAP = 1000  # replicates of the paired-win bootstrap in the decisions section
CI = "gpq"  # interval method of every decomposition table (bench/RESULTS-coverage.md measures it)
Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided alpha 0.05, power 0.8
SOURCES_TEXT = {"init": "weight initialisation", "order": "batch order", "split": "the data split",
                "noise": "dropout/noise", "residual": "the residual",
                "bo": "the optimiser's seed", "search_init": "the init seed during the search",
                "search_order": "the order seed during the search", "configuration": "the configuration",
                "arm": "the arm (optimiser x averaging count)"}
ARM = "arm"  # the tuned model's factor when several arms ran: the optimiser's seed (bo) is nested in it


def pts(x: float | None, digits: int = 2) -> str:
    """An accuracy (fraction) in percentage points."""
    return "" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def source_text(name: str, residual: str = "implementation noise (repeats with every seed equal)") -> str:
    """A variance source in plain words (interactions as 'a x b'; bo nested in the arm as 'within an arm')."""
    if name == "residual":
        return residual
    parts = crossed(name)
    return " x ".join(SOURCES_TEXT.get(p, p) for p in parts) + (f" within an {ARM}" if nested(name) else "")


def crossed(name: str) -> list[str]:
    """A source's crossed factors: 'a:b' is a x b; in 'bo:arm' (and 'bo:x:arm') the arm is where bo is
    nested, not a crossed factor."""
    parts = name.split(":")
    return [p for p in parts if p != ARM] if nested(name) else parts


def nested(name: str) -> bool:
    """A source that is bo (or an interaction with it) within an arm."""
    parts = name.split(":")
    return "bo" in parts and ARM in parts


def value_text(value: Any, dim: Dimension | None = None) -> str:
    """A hyperparameter's value as every table and sentence prints it: a choice's option as the job
    wrote it (a library's 1 for true is True), a whole number as is, a float on its dimension's step
    rounded to that step, any other float to 4 significant digits."""
    if dim is not None and dim.kind == "choice":
        value = next((o for o in dim.args if o == value), value)
    if not isinstance(value, float):
        return str(value)
    step = float(dim.args[2]) if dim is not None and dim.kind in ("quniform", "qloguniform") else 0.0
    if step and math.isclose(value / step, round(value / step), rel_tol=0, abs_tol=1e-6):
        return f"{round(value, max(0, -int(Decimal(repr(step)).normalize().as_tuple().exponent))):g}"
    return f"{value:.4g}"


def config_label(spec: JobSpec, config: dict[str, Any]) -> str:
    """A configuration as every table and sentence names it (values by `value_text`; a hypermodel's
    hyperparameter its build left inactive, absent from the configuration, is left out)."""
    dims = {d.name: d for d in spec.search.space} if spec.search else {}
    return ", ".join(f"{name}={value_text(config[name], dims.get(name))}" for name in spec.dimensions
                     if name in config)


def arm_label(algorithm: str, runs: int, show_runs: bool) -> str:
    """An arm as the report names it: the optimiser, and its averaging count when that varies."""
    return algorithm + (f", runs {runs}" if show_runs else "")


def curse_split(spec: JobSpec) -> str:
    """The split a winner's curse is measured on: the one the search scored (validation where there is one)."""
    return "validation" if spec.data.validation else "test"


def factors(rows: Sequence[Row], candidates: Sequence[str]) -> list[str]:
    """The candidate factors with more than one level in these rows."""
    return [f for f in candidates if len({r[f] for r in rows}) > 1]


def columns(rows: Sequence[Row], names: Sequence[str], metric: str) -> dict[str, Any]:
    cols: dict[str, Any] = {n: np.array([str(r[n]) for r in rows]) for n in names}
    cols[metric] = np.array([r[metric] for r in rows], dtype=np.float64)
    return cols


def blocks(rows: Sequence[Row], metric: str) -> dict[tuple[str, str], list[Row]]:
    """Evaluation rows by (engine, determinism mode): never decomposed together. An op-determinism
    'off' block whose scores are bit-identical to its engine's 'on' block is left out (shown once;
    `identical_modes` names them)."""
    out = all_blocks(rows)
    same = identical_modes(out, metric)
    return dict(sorted(((k, v) for k, v in out.items() if not (k[1] == "off" and k[0] in same)),
                       key=lambda kv: (kv[0][0], kv[0][1] != "on")))


def _scores(block: Sequence[Row], metric: str) -> list[tuple[str, str, float]]:
    return sorted((r["configuration"], str(sorted((k, v) for k, v in r.items() if k.endswith("_level"))),
                   r[metric]) for r in block)


def identical_modes(by_block: dict[tuple[str, str], list[Row]], metric: str) -> list[str]:
    """Engines whose op-determinism 'off' rows gave exactly the scores (`metric`) of their 'on' rows."""
    return sorted(e for e, m in by_block if m == "off" and (e, "on") in by_block
                  and _scores(by_block[(e, "on")], metric) == _scores(by_block[(e, "off")], metric))


def all_blocks(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    """Every (engine, mode) block, identical ones included (for timings)."""
    out: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r["kind"] == EVAL_ROW:
            out[(str(r["engine"]), str(r["mode"]))].append(r)
    return dict(out)


def trainings_needed(variance: float, difference: float) -> int:
    """Seeded trainings per configuration to detect a true accuracy `difference` (a fraction)
    between two configurations with this within-configuration variance (alpha 0.05, power 0.8)."""
    return math.ceil(2 * (Z_ALPHA + Z_POWER) ** 2 * variance / difference ** 2)


def binomial_se(p: float, n: int) -> float:
    """The test split's own standard error of an accuracy p on n examples."""
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / n)


def safe_fit(make: Callable[[], Decomposition]) -> Decomposition | str:
    """A decomposition, or the reason it could not be made (e.g. an unbalanced table without
    statsmodels): a report shows the reason instead of failing."""
    try:
        return make()
    except UserError as exc:
        return str(exc)


def tuned_fit(spec: JobSpec, rows: Sequence[Row], metric: str) -> Decomposition | str | None:
    """The chosen configurations' fresh-seed scores decomposed over the chain cells (bo x search init
    x search order; the fresh seeds are the replication); None without chains. With several arms the
    arm is a factor and bo is nested in it: bo level 0 of one optimiser is not bo level 0 of another."""
    reeval = [dict(r, search_init=r["chain_init"], search_order=r["chain_order"],
                   arm=f"{r.get('algorithm')}, runs {r.get('objective_runs')}")
              for r in rows if r["kind"] == REEVAL_ROW]
    names = factors(reeval, (ARM, "bo", "search_init", "search_order"))
    if not names or len(reeval) < 2:
        return None
    nested = [f"bo:{ARM}"] if {"bo", ARM} <= set(names) else []
    return safe_fit(partial(decompose, columns(reeval, names, metric), metric, names, nested=nested, ci=CI,
                            seed=spec.root_seed % 2**31))


def curse(spec: JobSpec, studies: Sequence[Record], metric: str, higher_is_better: bool
          ) -> list[tuple[float, float]]:
    """Per chain: (the chosen configuration's mean on fresh seeds, the winner's curse: how much better
    its best score looked), both on the split the search scored (`curse_split`)."""
    sign = 1.0 if higher_is_better else -1.0
    out = []
    for rec in studies:
        res = rec["result"]
        fresh = statistics.fmean((r["metrics"].get("validation") or r["metrics"])[metric] for r in res["reeval"])
        out.append((fresh, sign * (res["best_score"] - fresh)))
    return out
