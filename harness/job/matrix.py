"""What identifies work: a unit (stable id, plan index, kind name, levels), the seeds of each
training, and an array task's part of the plan. The kinds that plan units are `harness.units`.

Seed values come from the named streams of `harness.job.seeds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.job.seeds import (
    FRESH_SOURCES,
    GIVEN_WHEN_NAMED,
    MATRIX,
    OBJECTIVE_RUN,
    OPTIONAL_SOURCES,
    TRAINING_SOURCES,
    level_seed,
)
from harness.job.spec import JobSpec


@dataclass(frozen=True)
class Unit:
    """One piece of work of kind `kind` (a name in `harness.units.KINDS`): an evaluation's
    `config` under `levels`, or a study's chain of optimiser `algorithm` (full name) whose trials
    average `runs` trainings, or a seeding-policy run."""

    id: str
    index: int
    kind: str
    mode: str
    levels: dict[str, int]
    config: dict[str, Any] | None = None
    algorithm: str | None = None   # study units only
    runs: int | None = None        # study units only

    def seeds(self, root: int, purpose: int = MATRIX) -> dict[str, int]:
        """Seed values of this unit's levels (repeat is a label, not a seed)."""
        return {s: level_seed(root, s, lv, purpose) for s, lv in self.levels.items() if s != "repeat"}


def fixed_levels(spec: JobSpec) -> dict[str, int]:
    """Levels of the optional sources held fixed where they are not crossed (their first)."""
    return {s: spec.levels[s][0] for s in OPTIONAL_SOURCES if s in spec.levels}


def result_fields(spec: JobSpec) -> dict[str, Any]:
    """What every unit's result depends on besides its own config and seeds."""
    c = spec.canonical()
    return {"data": c["data"], "model": c["model"], "training": c["training"], "root": spec.root_seed}


def array_part(units: list[Unit], index: int, count: int) -> list[Unit]:
    """Array task `index` of `count` takes every unit whose plan index is index mod count (its part
    of the plan; its records go to its own shard file)."""
    return [u for u in units if u.index % count == index]


def training_seeds(spec: JobSpec, levels: dict[str, int], purpose: int = MATRIX,
                   run: int = 0) -> dict[str, int]:
    """Seeds of one training: init and order from `levels` (fresh or per-run purposes apply to
    them), split, noise and bitflip at their level or, when not crossed, at their first level
    (bitflip only where the job names it; its level 0 is seed 0, no flip)."""
    out = {}
    for s in TRAINING_SOURCES:
        if s in GIVEN_WHEN_NAMED and s not in spec.levels:
            continue
        level = levels.get(s, spec.levels.get(s, (0,))[0])
        p = purpose if s in FRESH_SOURCES else MATRIX
        if run and s in FRESH_SOURCES:
            p = OBJECTIVE_RUN + run - 1
        out[s] = level_seed(spec.root_seed, s, level, p)
    return out
