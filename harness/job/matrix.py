"""The plan of a job: work units with stable ids and plan indices, the seeds of each training,
batches of units that share a configuration, and array shards of the plan.

Seed values come from the named streams of `harness.job.seeds`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from harness.job.algorithms import arm_algorithms
from harness.job.seeds import (
    EVAL_SOURCES,
    FRESH_SOURCES,
    MATRIX,
    OBJECTIVE_RUN,
    OPTIONAL_SOURCES,
    TRAINING_SOURCES,
    derive_seed,
)
from harness.job.spec import JobSpec, UnitKind, stable_hash


@dataclass(frozen=True)
class Unit:
    """One piece of work. kind 'eval': one training of `config` under `levels`;
    kind 'study': one chain of optimiser `algorithm` (full name) whose trials average `runs`
    trainings, under levels (bo, init, order), then the chosen configuration re-trained on fresh
    seeds."""

    id: str
    index: int
    kind: UnitKind
    mode: str
    levels: dict[str, int]
    config: dict[str, Any] | None = None
    algorithm: str | None = None   # study units only
    runs: int | None = None        # study units only

    def seeds(self, root: int, purpose: int = MATRIX) -> dict[str, int]:
        """Seed values of this unit's levels (repeat is a label, not a seed)."""
        return {s: derive_seed(root, s, lv, purpose) for s, lv in self.levels.items() if s != "repeat"}


def _fixed_levels(spec: JobSpec) -> dict[str, int]:
    """Levels of the optional sources held fixed where they are not crossed (their first)."""
    return {s: spec.levels[s][0] for s in OPTIONAL_SOURCES if s in spec.levels}


def result_fields(spec: JobSpec) -> dict[str, Any]:
    """What every unit's result depends on besides its own config and seeds."""
    c = spec.canonical()
    return {"data": c["data"], "model": c["model"], "training": c["training"], "root": spec.root_seed}


def plan(spec: JobSpec) -> list[Unit]:
    """Every unit of the job in a fixed order (evaluation units first, then studies)."""
    units: list[Unit] = []
    base = result_fields(spec)
    eval_sources = [s for s in EVAL_SOURCES if s in spec.levels]
    for mode in spec.determinism.modes:
        for config in spec.configurations:
            for combo in itertools.product(*(spec.levels[s] for s in eval_sources)):
                levels = dict(zip(eval_sources, combo, strict=True))
                uid = stable_hash({**base, "kind": "eval", "mode": mode, "config": config,
                                   "levels": levels})
                units.append(Unit(uid, len(units), "eval", mode, levels, dict(config)))
    units += _study_units(spec, base, len(units))
    return units + _article_units(spec, len(units))


def study_arms(spec: JobSpec) -> list[tuple[str, int]]:
    """(optimiser, averaging count) pairs the chains run under, optimisers outermost."""
    return list(itertools.product(arm_algorithms(spec.search), spec.runs_factor()))


def _study_units(spec: JobSpec, base: dict[str, Any], start: int) -> list[Unit]:
    """The same chain cells (bo x init x order) under each arm. With a single arm the id hashes
    what it did before the optimiser became a factor, so existing jobs keep their unit ids."""
    s, units = spec.search, []
    if s is None:
        return units
    study = {"search": spec.canonical()["search"], "objective_runs": spec.objective_runs}
    mode = spec.determinism.modes[0]
    arms = study_arms(spec)
    for (algorithm, runs), bo, init, order in itertools.product(
            arms, spec.levels["bo"], spec.levels["init"][:s.chains_init], spec.levels["order"][:s.chains_order]):
        levels = {"bo": bo, "init": init, "order": order, **_fixed_levels(spec)}
        arm = {"algorithm": algorithm, "runs": runs} if len(arms) > 1 else {}
        uid = stable_hash({**base, **study, **arm, "kind": "study", "mode": mode, "levels": levels})
        units.append(Unit(uid, start + len(units), "study", mode, levels, algorithm=algorithm, runs=runs))
    return units


def _article_units(spec: JobSpec, start: int) -> list[Unit]:
    """One unit per seeding policy and run (each run trains in a fresh process)."""
    if spec.seeding is None:
        return []
    c = spec.canonical()
    base = {**result_fields(spec), "search": c["search"], "seeding": c["seeding"], "kind": "article"}
    units = []
    for p, policy in enumerate(spec.seeding.policies):
        for r in range(spec.seeding.runs):
            levels = {"policy": p, "run": r}
            units.append(Unit(stable_hash({**base, "policy": policy, "levels": levels}), start + len(units),
                              "article", spec.determinism.modes[0], levels))
    return units


def batches(units: list[Unit], size: int) -> list[list[Unit]]:
    """Group units so a batch shares one configuration and mode (a trainer can reuse one
    built model); studies and seeding-policy runs go alone."""
    groups: dict[str, list[Unit]] = {}
    out: list[list[Unit]] = []
    for u in units:
        if u.kind != "eval":
            out.append([u])
        else:
            groups.setdefault(stable_hash([u.mode, u.config]), []).append(u)
    evals = [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]
    return out + evals  # long study chains first, for load balance


def shard(units: list[Unit], index: int, count: int) -> list[Unit]:
    """Array task `index` of `count` takes every unit whose plan index is index mod count."""
    return [u for u in units if u.index % count == index]


def training_seeds(spec: JobSpec, levels: dict[str, int], purpose: int = MATRIX,
                   run: int = 0) -> dict[str, int]:
    """Seeds of one training: init and order from `levels` (fresh or per-run purposes apply to
    them), split and noise at their level or, when not crossed, at their first level."""
    out = {}
    for s in TRAINING_SOURCES:
        level = levels.get(s, spec.levels.get(s, (0,))[0])
        p = purpose if s in FRESH_SOURCES else MATRIX
        if run and s in FRESH_SOURCES:
            p = OBJECTIVE_RUN + run - 1
        out[s] = derive_seed(spec.root_seed, s, level, p)
    return out
