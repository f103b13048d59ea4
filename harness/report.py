"""reports/<job>.md from the store: header, per-configuration spread, studies."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness.matrix import count_trainings, plan
from harness.results import training_rows
from harness.spec import JobSpec
from harness.store import Store, UnitState


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _config_label(spec: JobSpec, config: dict[str, Any]) -> str:
    return ", ".join(f"{d.name}={config[d.name]}" for d in spec.search.space)


def header(spec: JobSpec, store: Store, states: dict[str, UnitState]) -> list[str]:
    units = plan(spec)
    ok = [st.ok for st in states.values() if st.ok is not None]
    failed = sum(1 for u in units if u.id in states and states[u.id].ok is None)
    env = ok[0]["env"] if ok else {}
    lv = spec.levels
    matrix = (f"{len(spec.configurations)} configurations x "
              + " x ".join(f"{len(lv[s])} {s}" for s in ("init", "order", "split", "noise", "repeat") if s in lv)
              + f" x {len(spec.determinism.modes)} determinism mode(s); "
              f"{len(lv['bo'])} bo x {spec.search.chains_init} init x {spec.search.chains_order} order chains "
              f"of {spec.search.max_evals} {spec.search.algorithm} trials "
              f"({spec.search.startup_trials} random startup), objective = mean of {spec.objective_runs} run(s)")
    rows = [("job", f"{spec.name} (`{spec.path}`)"), ("store", f"`{store.dir}`"), ("matrix", matrix),
            ("trainings planned", str(count_trainings(spec))),
            ("units", f"{sum(1 for u in units if u.id in states and states[u.id].ok)} done, {failed} failed, "
                      f"{sum(1 for u in units if u.id not in states)} pending, of {len(units)}"),
            ("engine", spec.training.engine), ("determinism", ", ".join(spec.determinism.modes)),
            ("environment", ", ".join(f"{k} {env[k]}" for k in ("backend", "keras", "tensorflow", "cuda",
                                                                "cudnn", "cpu", "host") if env.get(k))),
            ("GPUs", ", ".join(env.get("gpus") or []) or "none")]
    return [f"# Variance report: {spec.name}", "",
            tabulate(rows, headers=("", ""), tablefmt="github"), ""]


def configuration_table(spec: JobSpec, rows: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "eval":
            groups[(_config_label(spec, r), r["mode"])].append(r["accuracy"])
    if not groups:
        return []
    table = [(cfg, mode, len(v), _pct(statistics.fmean(v)), _pct(statistics.stdev(v) if len(v) > 1 else 0.0),
              _pct(min(v)), _pct(max(v))) for (cfg, mode), v in groups.items()]
    return ["## Configurations over the seed matrix", "",
            "Held-out accuracy (%) of each configuration over every init x order (x repeat) seed.", "",
            tabulate(table, headers=("configuration", "op determinism", "trainings", "mean", "std", "min", "max"),
                     tablefmt="github"), ""]


def study_table(spec: JobSpec, states: dict[str, UnitState]) -> list[str]:
    studies = sorted((st.ok for st in states.values() if st.ok and st.ok["kind"] == "study"),
                     key=lambda r: r["index"])
    if not studies:
        return []
    table = []
    for rec in studies:
        res, lv = rec["result"], rec["levels"]
        fresh = statistics.fmean(r["metrics"]["accuracy"] for r in res["reeval"])
        table.append((lv["bo"], lv["init"], lv["order"], _config_label(spec, res["chosen"]),
                      _pct(res["best_score"]), _pct(fresh), _pct(res["best_score"] - fresh)))
    chosen = Counter(_config_label(spec, r["result"]["chosen"]) for r in studies)
    top, n = chosen.most_common(1)[0]
    return ["## Studies: what each optimiser chain chose", "",
            f"{len(studies)} chains; the most frequent choice, {top}, was picked by {n} of {len(studies)}. "
            f"'best seen' is the chain's best objective during the search; 'fresh seeds' the mean of the "
            f"chosen configuration re-trained on {spec.search.reevaluate_init} x {spec.search.reevaluate_order} "
            f"unseen init x order seeds.", "",
            tabulate(table, headers=("bo", "init", "order", "chosen", "best seen", "fresh seeds", "gap"),
                     tablefmt="github"), ""]


def write_report(spec: JobSpec, store: Store, out_dir: Path) -> Path:
    """Render the report from the store alone (no training) and write it."""
    states = store.states()
    rows = training_rows(spec, states)
    lines = header(spec, store, states) + configuration_table(spec, rows) + study_table(spec, states)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.md"
    path.write_text("\n".join(lines))
    return path
