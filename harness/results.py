"""Store records -> one flat row per training (the table export, the report and the
statistics read). No TensorFlow here."""

from __future__ import annotations

from typing import Any

from harness.matrix import training_seeds
from harness.spec import SEED_SOURCES, JobSpec
from harness.store import UnitState

KINDS = ("eval", "trial", "reeval")


def columns(spec: JobSpec) -> list[str]:
    """CSV columns: identity, configuration values, seed levels and values, metrics."""
    dims = [d.name for d in spec.search.space]
    seeds = [c for s in SEED_SOURCES for c in (f"{s}_level", f"{s}_seed")]
    return (["kind", "unit", "mode", "engine", "trial", "run"] + dims + seeds
            + ["accuracy", "loss"])


def _row(kind: str, rec: dict[str, Any], config: dict[str, Any], levels: dict[str, int],
         seeds: dict[str, int], metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": kind, "unit": rec["unit"], "mode": rec["mode"], "engine": rec.get("engine"),
                           **config, "accuracy": metrics["accuracy"], "loss": metrics["loss"], **extra}
    for s, v in levels.items():
        row[f"{s}_level"] = v
    for s, v in seeds.items():
        row[f"{s}_seed"] = v
    return row


def training_rows(spec: JobSpec, states: dict[str, UnitState]) -> list[dict[str, Any]]:
    """One row per finished training, in plan order (evaluations, chain trials, re-evaluations)."""
    rows: list[dict[str, Any]] = []
    done = sorted((st.ok for st in states.values() if st.ok is not None), key=lambda r: r["index"])
    for rec in done:
        res = rec["result"]
        if rec["kind"] == "eval":
            rows.append(_row("eval", rec, rec["config"], rec["levels"], rec["seeds"], res["metrics"],
                             wall_s=rec.get("wall_s")))  # for the report; not an export column
            continue
        chain = rec["levels"]
        for t, trial in enumerate(res["trials"]):
            for j, run in enumerate(trial["runs"]):
                seeds = {**training_seeds(spec, chain, run=j), "bo": rec["seeds"]["bo"]}
                rows.append(_row("trial", rec, trial["config"], chain, seeds, run, trial=t, run=j))
        for r in res["reeval"]:
            rows.append(_row("reeval", rec, res["chosen"], {**chain, **r["levels"]},
                             {**r["seeds"], "bo": rec["seeds"]["bo"]}, r["metrics"]))
    return rows
