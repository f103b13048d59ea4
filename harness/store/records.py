"""The record: the one place its fields are named. A record is one JSON line of a shard, one per
attempt at a unit; `new_record` builds it, `training_rows` flattens finished ones into one row per
training (what export, the report and the notebook read).

Fields of every record: format, unit, index, kind, mode, levels, config, attempt, engine, job,
spec, worker, status; then either `error` (+ `traceback` for bugs) or the result. An ok record also
has seeds (the unit's training seeds; a study's adds `bo`), test_size (held-out examples),
wall_s / train_s, time and env. A study's result holds its trials (config, score, runs: each run's
metrics and seeds), the chosen configuration, best_score, its re-evaluations, and `library_seed`:
the exact seed its optimiser library was given, and `optimiser_s` (seconds inside ask/tell). A
study record also names its arm (`algorithm`, full name, and `runs`, the trainings averaged per
trial), has `train_s` (seconds training) and its env adds `search_library` ('name version').
"""

from __future__ import annotations

from typing import Any, Literal

from harness.job.matrix import Unit
from harness.job.seeds import SEED_SOURCES
from harness.job.spec import JobSpec

Status = Literal["ok", "failed"]
Kind = Literal["eval", "study", "article"]
RowKind = Literal["eval", "trial", "reeval"]  # one row per training: a unit's, a chain trial's, a re-evaluation's
Record = dict[str, Any]
Row = dict[str, Any]
METRIC_COLUMNS = ("accuracy", "loss")             # a classification's
REGRESSION_COLUMNS = ("loss", "mse", "mae")       # a regression's


def new_record(spec: JobSpec, unit: Unit, attempt: int, engine: str, worker: str) -> Record:
    """A unit's record before its outcome (status and result or error are set by whoever ran it)."""
    arm = {"algorithm": unit.algorithm, "runs": unit.runs} if unit.kind == "study" else {}
    return {"unit": unit.id, "index": unit.index, "kind": unit.kind, "mode": unit.mode, "levels": unit.levels,
            "config": unit.config, "attempt": attempt, "engine": engine, "job": spec.name,
            "spec": spec.digest(), "worker": worker, **arm}


def machine(record: Record) -> str:
    """The hardware a record's bits belong to (its env's CPU model and instruction-set level, GPUs
    and driver): bit-identity is claimed per machine, so records of one unit may differ across them."""
    env = record.get("env") or {}
    cpu = f"{env.get('cpu', 'unknown CPU')} [{env.get('cpu_isa', 'ISA not recorded')}]"
    gpus = ", ".join(env.get("gpus") or [])
    return cpu + (f"; {gpus} (driver {env.get('gpu_driver') or 'unknown'})" if gpus else "")


def failed(record: Record, error: str, traceback: str | None = None) -> Record:
    """Mark a record failed with a one-line error (and, for a bug, its traceback)."""
    record["status"] = "failed"
    record["error"] = error
    if traceback:
        record["traceback"] = traceback
    return record


def columns(spec: JobSpec) -> list[str]:
    """CSV columns: identity, configuration values, seed levels and values, metrics."""
    dims = list(spec.dimensions)
    seeds = [c for s in SEED_SOURCES for c in (f"{s}_level", f"{s}_seed")]
    factor = spec.search is not None and (len(spec.search.algorithms) > 1 or len(spec.runs_factor()) > 1)
    arms = ["algorithm", "objective_runs"] if factor else []  # the optimiser or averaging count is a factor
    return ["kind", "unit", "mode", "engine", *arms, "trial", "run"] + dims + seeds + metric_columns(spec)


def metric_columns(spec: JobSpec) -> list[str]:
    """The metrics of a training's row: the task's, the objective's, and `val_`-prefixed ones for a
    validation split."""
    names = list(REGRESSION_COLUMNS if spec.data.task == "regression" else METRIC_COLUMNS)
    if spec.objective_metric not in names:
        names.append(spec.objective_metric)
    return names + ([f"val_{n}" for n in names] if spec.data.validation else [])


def _row(kind: RowKind, rec: Record, config: dict[str, Any], levels: dict[str, int],
         seeds: dict[str, int], metrics: dict[str, Any], **extra: Any) -> Row:
    values = {k: v for k, v in metrics.items() if k not in ("seeds", "per_class_accuracy", "validation")}
    values.update({f"val_{k}": v for k, v in (metrics.get("validation") or {}).items()})
    row: Row = {"kind": kind, "unit": rec["unit"], "mode": rec["mode"], "engine": rec.get("engine"),
                **config, **values, "test_size": rec.get("test_size"), **extra}
    for s, v in levels.items():
        row[f"{s}_level"] = v
    for s, v in seeds.items():
        row[f"{s}_seed"] = v
    return row


def _study_rows(rec: Record) -> list[Row]:
    """A chain's trials (every averaged run) and its chosen configuration's re-evaluations."""
    res, chain, bo = rec["result"], rec["levels"], rec["seeds"]["bo"]
    arm = {"algorithm": rec.get("algorithm"), "objective_runs": rec.get("runs")}
    rows = [_row("trial", rec, trial["config"], chain, {**run["seeds"], "bo": bo}, run, trial=t, run=j, **arm)
            for t, trial in enumerate(res["trials"]) for j, run in enumerate(trial["runs"])]
    rows += [_row("reeval", rec, res["chosen"], {**chain, **r["levels"]}, {**r["seeds"], "bo": bo}, r["metrics"],
                  **arm) for r in res["reeval"]]
    return rows


def training_rows(ok_records: list[Record]) -> list[Row]:
    """One row per finished training, in plan order (evaluations, chain trials, re-evaluations)."""
    rows: list[Row] = []
    for rec in sorted(ok_records, key=lambda r: r["index"]):
        if rec["kind"] == "eval":  # wall_s: for the report, not an export column
            rows.append(_row("eval", rec, rec["config"], rec["levels"], rec["seeds"], rec["result"]["metrics"],
                             wall_s=rec.get("wall_s")))
        elif rec["kind"] == "study":
            rows += _study_rows(rec)  # seeding-policy runs ("article") are read from their records
    return rows


# the fields every record has, with their JSON types; an ok record adds `result`, a failed one `error`
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": int, "unit": str, "index": int, "kind": str, "mode": str, "levels": dict,
    "config": (dict, type(None)), "attempt": int, "job": str, "spec": str, "worker": str, "status": str}
OUTCOME_FIELDS: dict[str, tuple[str, type]] = {"ok": ("result", dict), "failed": ("error", str)}


def record_problem(rec: object) -> str | None:
    """What makes a parsed JSON line not a record (None: it is one): missing or mistyped fields,
    an unknown kind or status."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a record"
    for name, typ in FIELD_TYPES.items():
        if name not in rec:
            return f"no '{name}' field"
        if isinstance(rec[name], bool) or not isinstance(rec[name], typ):
            return f"field '{name}' is {type(rec[name]).__name__}"
    if rec["kind"] not in ("eval", "study"):
        return f"unknown kind {rec['kind']!r}"
    if rec["status"] not in OUTCOME_FIELDS:
        return f"unknown status {rec['status']!r}"
    name, typ = OUTCOME_FIELDS[rec["status"]]
    if not isinstance(rec.get(name), typ):
        return f"a{'n' if rec['status'] == 'ok' else ''} {rec['status']} record without '{name}'"
    return None
