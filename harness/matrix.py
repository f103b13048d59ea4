"""The seed matrix: named seed streams, work units with stable ids, batches.

Seeds come from numpy SeedSequence keyed by the root seed, the source name, the level and a
purpose, so adding a source, a level or a worker never changes another source's numbers.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.spec import JobSpec, stable_hash

# purposes of a seed: the matrix itself, fresh seeds for re-evaluating chosen configurations,
# and the extra runs averaged into one objective value (run j > 0)
MATRIX, FRESH, OBJECTIVE_RUN = 0, 1, 2
EVAL_SOURCES = ("init", "order", "split", "noise", "repeat")


def source_code(name: str) -> int:
    """A stable 32-bit integer for a seed source's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def derive_seed(root: int, source: str, level: int, purpose: int = MATRIX) -> int:
    """The integer seed of one level of one named source (31 bits, fits every backend)."""
    ss = np.random.SeedSequence(entropy=root, spawn_key=(source_code(source), level, purpose))
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


@dataclass(frozen=True)
class Unit:
    """One piece of work. kind 'eval': one training of `config` under `levels`;
    kind 'study': one optimiser chain under levels (bo, init, order), then the chosen
    configuration re-trained on fresh seeds."""

    id: str
    index: int
    kind: str
    mode: str
    levels: dict[str, int]
    config: dict[str, Any] | None = None

    def seeds(self, root: int, purpose: int = MATRIX) -> dict[str, int]:
        """Seed values of this unit's levels (repeat is a label, not a seed)."""
        return {s: derive_seed(root, s, lv, purpose) for s, lv in self.levels.items() if s != "repeat"}


def _fixed_levels(spec: JobSpec) -> dict[str, int]:
    """Levels of the optional sources held fixed where they are not crossed (their first)."""
    return {s: spec.levels[s][0] for s in ("split", "noise") if s in spec.levels}


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
    s = spec.search
    study = {"search": spec.canonical()["search"], "objective_runs": spec.objective_runs}
    mode = spec.determinism.modes[0]
    for bo, init, order in itertools.product(spec.levels["bo"], spec.levels["init"][:s.chains_init],
                                             spec.levels["order"][:s.chains_order]):
        levels = {"bo": bo, "init": init, "order": order, **_fixed_levels(spec)}
        uid = stable_hash({**base, **study, "kind": "study", "mode": mode, "levels": levels})
        units.append(Unit(uid, len(units), "study", mode, levels))
    return units


def count_trainings(spec: JobSpec) -> int:
    """Trainings the whole job needs (without building the plan)."""
    per_config = int(np.prod([len(spec.levels[s]) for s in EVAL_SOURCES if s in spec.levels]))
    n_eval = len(spec.configurations) * per_config * len(spec.determinism.modes)
    s = spec.search
    chains = len(spec.levels["bo"]) * s.chains_init * s.chains_order
    return n_eval + chains * (s.max_evals * spec.objective_runs + s.reevaluate_init * s.reevaluate_order)


def batches(units: list[Unit], size: int) -> list[list[Unit]]:
    """Group units so a batch shares one configuration and mode (a trainer can reuse one
    built model); studies go alone."""
    groups: dict[str, list[Unit]] = {}
    out: list[list[Unit]] = []
    for u in units:
        if u.kind == "study":
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
    for s in ("init", "order", "split", "noise"):
        level = levels.get(s, spec.levels.get(s, (0,))[0])
        p = purpose if s in ("init", "order") else MATRIX
        if run and s in ("init", "order"):
            p = OBJECTIVE_RUN + run - 1
        out[s] = derive_seed(spec.root_seed, s, level, p)
    return out
