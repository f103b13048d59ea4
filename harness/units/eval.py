"""Kind `eval`: one configuration trained once under given seed levels. Units are independent;
those of one configuration and mode share a batch, which a batched engine trains as one run."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

from harness.job.matrix import Unit, result_fields, training_seeds
from harness.job.seeds import EVAL_SOURCES
from harness.job.spec import JobSpec, stable_hash
from harness.training.metrics import Metrics
from harness.units._base import EVAL_ROW, Context, Outcome, Row, UnitKind, missing, row


class EvalKind(UnitKind):
    name, together = "eval", True

    def plan(self, spec: JobSpec, start: int) -> list[Unit]:
        """Per determinism mode and configuration, every combination of the crossed seed levels
        (design `alone`: each arm's levels, `JobSpec.alone_cells`)."""
        units: list[Unit] = []
        base = result_fields(spec)
        for mode in spec.determinism.modes:
            for config in spec.configurations:
                for levels in _cells(spec):
                    uid = stable_hash({**base, "kind": self.name, "mode": mode, "config": config, "levels": levels})
                    units.append(Unit(uid, start + len(units), self.name, mode, levels, dict(config)))
        return units

    def trainings(self, spec: JobSpec, unit: Unit) -> int:
        return 1

    def run(self, ctx: Context, units: list[Unit]) -> list[Outcome | Exception]:
        """Under a batched engine the batch's units (one configuration) train as one run, each
        timed at an equal share; else one by one."""
        if not ctx.trainer.engine.batched:
            return super().run(ctx, units)
        start = time.perf_counter()
        seeds = [training_seeds(ctx.spec, u.levels) for u in units]
        train_start = time.perf_counter()
        try:
            results: list[Metrics | Exception] = ctx.trainer.train_many(units[0].config or {}, seeds)
        except Exception as exc:  # the whole run failed: every unit records it
            return [exc] * len(units)
        end = time.perf_counter()
        train_s, wall_s = (end - train_start) / len(units), (end - start) / len(units)
        return [m if isinstance(m, Exception) else self._outcome(ctx, s, m, train_s, wall_s)
                for s, m in zip(seeds, results, strict=True)]

    def run_one(self, ctx: Context, unit: Unit) -> Outcome:
        seeds = training_seeds(ctx.spec, unit.levels)
        start = time.perf_counter()
        metrics = ctx.trainer.train(unit.config or {}, seeds)
        return self._outcome(ctx, seeds, metrics, time.perf_counter() - start)

    @staticmethod
    def _outcome(ctx: Context, seeds: dict[str, int], metrics: Metrics, train_s: float,
                 wall_s: float | None = None) -> Outcome:
        """`wall_s`: a batched run's equal share (else `run` times the unit)."""
        timings = {"train_s": round(train_s, 4), **({} if wall_s is None else {"wall_s": round(wall_s, 4)})}
        examples = {} if metrics.examples is None else {"examples": metrics.examples}
        return Outcome({"metrics": metrics.as_dict(), **examples}, seeds, ctx.trainer.test_size(seeds["split"]), 1,
                       timings, noise_seeding=metrics.noise_seeding)

    def check(self, result: Mapping[str, Any]) -> str | None:
        return missing(result, {"metrics": dict})

    def rows(self, rec: Mapping[str, Any]) -> list[Row]:
        """Its one training (wall_s: for the report's timings, not an export column)."""
        return [row(EVAL_ROW, rec, rec["config"], rec["levels"], rec["seeds"], rec["result"]["metrics"],
                    wall_s=rec["timings"].get("wall_s"))]


def _cells(spec: JobSpec) -> list[dict[str, int]]:
    """The seed levels of a configuration's evaluation units, in plan order."""
    if spec.design == "alone":
        return spec.alone_cells()
    sources = [s for s in EVAL_SOURCES if s in spec.levels]
    return [dict(zip(sources, combo, strict=True)) for combo in itertools.product(*(spec.levels[s] for s in sources))]
