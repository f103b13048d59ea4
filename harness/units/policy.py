"""Kind `policy`: one run of the article's search under one seeding policy (its Examples 1-3, or
every source seeded by the harness), each in a fresh process (`training.policies.run_fresh`): the
article's inconsistency is across processes. The report reads these records whole; they have no
export rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.job.matrix import Unit, result_fields, training_seeds
from harness.job.seeds import derive_seed
from harness.job.spec import JobSpec, stable_hash
from harness.training.policies import run_fresh
from harness.units._base import Context, Outcome, Row, UnitKind, missing

HASHED_AS = "article"  # the kind's name in its unit ids since before it was renamed: ids (and stores) stay


class PolicyKind(UnitKind):
    name = "policy"

    def plan(self, spec: JobSpec, start: int) -> list[Unit]:
        """One unit per seeding policy and run."""
        if spec.seeding is None:
            return []
        c = spec.canonical()
        base = {**result_fields(spec), "search": c["search"], "seeding": c["seeding"], "kind": HASHED_AS}
        units: list[Unit] = []
        for p, policy in enumerate(spec.seeding.policies):
            for r in range(spec.seeding.runs):
                levels = {"policy": p, "run": r}
                units.append(Unit(stable_hash({**base, "policy": policy, "levels": levels}), start + len(units),
                                  self.name, spec.determinism.modes[0], levels))
        return units

    def trainings(self, spec: JobSpec, unit: Unit) -> int:
        assert spec.seeding is not None and spec.search is not None
        return spec.seeding.trainings(spec.seeding.policies[unit.levels["policy"]], spec.search.max_evals)

    def run_one(self, ctx: Context, unit: Unit) -> Outcome:
        spec = ctx.spec
        assert spec.seeding is not None
        policy = spec.seeding.policies[unit.levels["policy"]]
        seeds = {**training_seeds(spec, unit.levels), "bo": derive_seed(spec.root_seed, "bo", spec.levels["bo"][0])}
        result, timings = run_fresh(spec, policy, seeds["bo"], ctx.logs / f"{unit.id}.log")
        return Outcome(result, seeds, ctx.trainer.test_size(seeds["split"]), self.trainings(spec, unit), timings)

    def check(self, result: Mapping[str, Any]) -> str | None:
        return missing(result, {"policy": str, "trials": list, "best": dict, "best_score": (int, float),
                                "fixed_score": (int, float)})

    def rows(self, rec: Mapping[str, Any]) -> list[Row]:
        return []
