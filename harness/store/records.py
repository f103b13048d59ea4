"""The record: the one place its fields are named and checked. A record is one JSON line of a
shard, one per attempt at a unit; `new_record` starts it, the worker completes it, `record_problem`
checks one read back, `training_rows` flattens finished ones into one row per training (what
export, the report and the notebook read).

A record keeps three things apart: what the unit *is* (unit, index, kind, mode, levels, config,
spec, job; a study's arm: algorithm, runs), what it *produced* (`result`, the same bits on every
rerun, with the seeds it trained under and the held-out size) and what it *cost* (`timings` in
seconds: wall_s, train_s; a study's optimiser_s; a policy run's process_s) and where (`env`, `time`,
`worker`, `engine`). Two ok records of one unit agree when their results are equal. An eval's
result keeps its per-example results (`result.examples`, `harness.training.perexample`): no row carries
them, so export and the variance tables never decode them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from harness.job.matrix import Unit
from harness.job.seeds import SEED_SOURCES
from harness.job.spec import JobSpec
from harness.units import KINDS, Row

Status = Literal["ok", "failed"]
METRIC_COLUMNS = ("accuracy", "loss")             # a classification's
REGRESSION_COLUMNS = ("loss", "mse", "mae")       # a regression's


class Record(TypedDict, total=False):
    """One shard line (`FIELD_TYPES` are in every record; the rest as the docstring says)."""

    format: int
    unit: str
    index: int
    kind: str
    mode: str
    levels: dict[str, int]
    config: dict[str, Any] | None
    attempt: int
    engine: str
    job: str
    spec: str
    worker: str
    status: Status
    algorithm: str | None          # a study's optimiser (full name)
    runs: int | None               # ... and trainings averaged per trial
    result: dict[str, Any]         # ok: what the unit produced
    seeds: dict[str, int]          # ok: the seeds it trained under
    test_size: int | None          # ok: held-out examples
    noise_seeding: dict[str, Any]        # ok: what the noise stream reached in a model the harness did not write
    error: str                     # failed: one line
    traceback: str                 # failed: for a bug
    timings: dict[str, float]
    env: dict[str, Any]
    time: str


# the fields every record has, with their JSON types; an ok record adds `result`, a failed one `error`
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": int, "unit": str, "index": int, "kind": str, "mode": str, "levels": dict,
    "config": (dict, type(None)), "attempt": int, "job": str, "spec": str, "worker": str, "status": str}
OUTCOME_FIELDS: dict[str, tuple[str, type]] = {"ok": ("result", dict), "failed": ("error", str)}


def new_record(spec: JobSpec, unit: Unit, attempt: int, engine: str, worker: str) -> Record:
    """A unit's record before its outcome (status and result or error are set by whoever ran it)."""
    rec = Record(unit=unit.id, index=unit.index, kind=unit.kind, mode=unit.mode, levels=unit.levels,
                 config=unit.config, attempt=attempt, engine=engine, job=spec.name, spec=spec.digest(),
                 worker=worker)
    if unit.algorithm is not None:  # a study's arm
        rec["algorithm"], rec["runs"] = unit.algorithm, unit.runs
    return rec


def failed(record: Record, error: str, traceback: str | None = None) -> Record:
    """Mark a record failed with a one-line error (and, for a bug, its traceback)."""
    record["status"] = "failed"
    record["error"] = error
    if traceback:
        record["traceback"] = traceback
    return record


def machine(record: Mapping[str, Any]) -> str:
    """The hardware a record's bits belong to (its env's CPU model and instruction-set level, GPUs
    and driver): bit-identity is claimed per machine, so records of one unit may differ across them."""
    env = record.get("env") or {}
    cpu = f"{env.get('cpu', 'unknown CPU')} [{env.get('cpu_isa', 'ISA not recorded')}]"
    gpus = ", ".join(env.get("gpus") or [])
    return cpu + (f"; {gpus} (driver {env.get('gpu_driver') or 'unknown'})" if gpus else "")


def columns(spec: JobSpec) -> list[str]:
    """CSV columns: identity, configuration values, seed levels and values, a re-evaluation's
    chain's search levels and seeds, metrics."""
    dims = list(spec.dimensions)
    seeds = [c for s in SEED_SOURCES for c in (f"{s}_level", f"{s}_seed")]
    factor = spec.search is not None and (len(spec.search.algorithms) > 1 or len(spec.runs_factor()) > 1)
    arms = ["algorithm", "objective_runs"] if factor else []  # the optimiser or averaging count is a factor
    chain = [f"search_{s}_{c}" for s in ("init", "order") for c in ("level", "seed")] if spec.search else []
    return ["kind", "unit", "mode", "engine", *arms, "trial", "run"] + dims + seeds + chain + metric_columns(spec)


def metric_columns(spec: JobSpec) -> list[str]:
    """The metrics of a training's row: the task's, the objective's, and `val_`-prefixed ones for a
    validation split."""
    names = list(REGRESSION_COLUMNS if spec.data.task == "regression" else METRIC_COLUMNS)
    if spec.objective_metric not in names:
        names.append(spec.objective_metric)
    return names + ([f"val_{n}" for n in names] if spec.data.validation else [])


def training_rows(ok_records: list[Record]) -> list[Row]:
    """One row per finished training, in plan order (each kind flattens its own records)."""
    return [r for rec in sorted(ok_records, key=lambda r: r["index"]) for r in KINDS[rec["kind"]].rows(rec)]


def record_problem(rec: object) -> str | None:
    """What makes a parsed JSON line not a record (None: it is one): missing or mistyped fields,
    an unknown kind or status, an ok record whose result its kind does not recognise."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a record"
    for name, typ in FIELD_TYPES.items():
        if name not in rec:
            return f"no '{name}' field"
        if isinstance(rec[name], bool) or not isinstance(rec[name], typ):
            return f"field '{name}' is {type(rec[name]).__name__}"
    if rec["kind"] not in KINDS:
        return f"unknown kind {rec['kind']!r} (known: {', '.join(KINDS)})"
    if rec["status"] not in OUTCOME_FIELDS:
        return f"unknown status {rec['status']!r}"
    name, typ = OUTCOME_FIELDS[rec["status"]]
    if not isinstance(rec.get(name), typ):
        return f"a{'n' if rec['status'] == 'ok' else ''} {rec['status']} record without '{name}'"
    if rec["status"] == "ok":
        for field, ftyp in (("seeds", dict), ("timings", dict)):
            if not isinstance(rec.get(field), ftyp):
                return f"an ok record without '{field}'"
        return KINDS[rec["kind"]].check(rec["result"])
    return None
