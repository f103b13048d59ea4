"""The unit kinds behind one contract (`_base.UnitKind`) and their registry: `eval` (one
training), `study` (one optimiser chain and its re-evaluations), `policy` (one seeding-policy run
in a fresh process). The plan, the batches, the worker, the readers, export and report ask here;
nothing else branches on a kind's name."""

from __future__ import annotations

from harness.job.matrix import Unit
from harness.job.spec import JobSpec, stable_hash
from harness.units._base import EVAL_ROW, REEVAL_ROW, TRIAL_ROW, Context, Outcome, Row, UnitKind, row
from harness.units.eval import EvalKind
from harness.units.policy import PolicyKind
from harness.units.study import StudyKind, study_arms

EVAL, STUDY, POLICY = EvalKind(), StudyKind(), PolicyKind()
KINDS: dict[str, UnitKind] = {k.name: k for k in (EVAL, STUDY, POLICY)}  # in plan order

__all__ = ["EVAL", "EVAL_ROW", "KINDS", "POLICY", "REEVAL_ROW", "STUDY", "TRIAL_ROW", "Context", "Outcome", "Row",
           "UnitKind", "batches", "plan", "planned_trainings", "row", "study_arms"]


def plan(spec: JobSpec) -> list[Unit]:
    """Every unit of the job in a fixed order: each kind's units in turn, plan indices counting on."""
    units: list[Unit] = []
    for kind in KINDS.values():
        units += kind.plan(spec, len(units))
    return units


def planned_trainings(spec: JobSpec, units: list[Unit] | None = None) -> int:
    """Trainings the job's units hold when every one succeeds."""
    return sum(KINDS[u.kind].trainings(spec, u) for u in (plan(spec) if units is None else units))


def batches(units: list[Unit], size: int) -> list[list[Unit]]:
    """Group units so a batch shares one kind, configuration and mode (a trainer can reuse one
    built model), at most `size` each; units of a kind that does not train together go alone,
    first (long study chains first, for load balance)."""
    groups: dict[str, list[Unit]] = {}
    alone: list[list[Unit]] = []
    for u in units:
        if KINDS[u.kind].together:
            groups.setdefault(stable_hash([u.kind, u.mode, u.config]), []).append(u)
        else:
            alone.append([u])
    return alone + [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]
