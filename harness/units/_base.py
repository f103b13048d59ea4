"""The unit-kind contract. A unit kind is one kind of work: it plans its units from a spec, says
how many trainings a unit holds, runs units in a worker and returns their outcomes, checks a stored
result, and flattens a record into export rows. The registry (`harness.units`) holds one instance
per kind; nothing outside it branches on a kind's name. Adding a kind is one new module here.

Call order: `plan` (driver, once), `run` (worker, per batch of one kind), `check` (every reader,
per record), `rows` (export and report, per ok record). Kinds hold no state: one instance serves
every spec and thread.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.job.matrix import Unit
from harness.job.spec import JobSpec
from harness.training.trainer import Trainer

Row = dict[str, Any]  # one training, flattened: what export writes and the report reads
EVAL_ROW, TRIAL_ROW, REEVAL_ROW = "eval", "trial", "reeval"  # a row's `kind`: what kind of training it was


@dataclass(frozen=True)
class Context:
    """What a worker lends a kind's `run`: the job, its trainer, and where logs go."""

    spec: JobSpec
    trainer: Trainer
    logs: Path


@dataclass
class Outcome:
    """What running a unit produced. `result` is the deterministic part (the same bits on every
    rerun: records of one unit agree when their results are equal); `timings` (seconds) and `env`
    describe what it cost and where it ran."""

    result: dict[str, Any]
    seeds: dict[str, int]
    test_size: int | None
    trainings: int
    timings: dict[str, float] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    noise_seeding: dict[str, Any] | None = None  # what the noise stream reached in the model (`builders.Seeding`)


class UnitKind(ABC):
    """One kind of work unit (see the module docstring)."""

    name: ClassVar[str]           # the word in unit ids, records and the plan
    together: ClassVar[bool] = False  # its units of one configuration and mode may share a batch

    @abstractmethod
    def plan(self, spec: JobSpec, start: int) -> list[Unit]:
        """This kind's units of `spec`, plan indices from `start`, in a fixed order."""

    @abstractmethod
    def trainings(self, spec: JobSpec, unit: Unit) -> int:
        """Trainings the unit holds when it succeeds."""

    def run(self, ctx: Context, units: list[Unit]) -> list[Outcome | Exception]:
        """Outcomes of a batch's units of this kind, in order, each with its `wall_s`; a unit that
        failed is its exception."""
        out: list[Outcome | Exception] = []
        for unit in units:
            start = time.perf_counter()
            try:
                outcome = self.run_one(ctx, unit)
            except Exception as exc:  # recorded by the worker, retried by the executor
                out.append(exc)
                continue
            outcome.timings["wall_s"] = round(time.perf_counter() - start, 4)
            out.append(outcome)
        return out

    @abstractmethod
    def run_one(self, ctx: Context, unit: Unit) -> Outcome:
        """One unit's outcome (raises when it fails)."""

    @abstractmethod
    def check(self, result: Mapping[str, Any]) -> str | None:
        """What is wrong with an ok record's result (None: nothing)."""

    @abstractmethod
    def rows(self, rec: Mapping[str, Any]) -> list[Row]:
        """One row per training of an ok record, in training order."""

    def owns(self, rec: Mapping[str, Any]) -> bool:
        """Whether a record is of this kind."""
        return bool(rec.get("kind") == self.name)


def row(kind: str, rec: Mapping[str, Any], config: Mapping[str, Any], levels: Mapping[str, int],
        seeds: Mapping[str, int], metrics: Mapping[str, Any], **extra: Any) -> Row:
    """One training's row: identity, configuration, metrics (validation ones `val_`-prefixed),
    then each seed source's level and seed."""
    values = {k: v for k, v in metrics.items() if k not in ("seeds", "per_class_accuracy", "validation")}
    values.update({f"val_{k}": v for k, v in (metrics.get("validation") or {}).items()})
    out: Row = {"kind": kind, "unit": rec["unit"], "mode": rec["mode"], "engine": rec.get("engine"),
                **config, **values, "test_size": rec.get("test_size"), **extra}
    for s, v in levels.items():
        out[f"{s}_level"] = v
    for s, v in seeds.items():
        out[f"{s}_seed"] = v
    return out


def missing(result: Mapping[str, Any], fields: Mapping[str, type | tuple[type, ...]]) -> str | None:
    """The first of `fields` a result lacks or holds with another JSON type."""
    for name, typ in fields.items():
        if name not in result:
            return f"its result has no '{name}'"
        if isinstance(result[name], bool) or not isinstance(result[name], typ):
            return f"its result's '{name}' is {type(result[name]).__name__}"
    return None
