"""The executor interface every executor follows (local pool, in-process debug; a Slurm array task
runs the local one on its shard)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from harness.job.matrix import Unit
from harness.store.claims import BatchClaims

Done = Callable[[str, str, int], None]  # (unit id, status, trainings) for each finished unit
Batch = tuple[list[Unit], dict[str, int]]  # units and their attempt numbers


def take(claims: BatchClaims, batch: Batch) -> Batch | None:
    """The part of a batch to train now (see `BatchClaims.take`); None when nothing is left."""
    units = claims.take(batch[0])
    return (units, {u.id: batch[1][u.id] for u in units if u.id in batch[1]}) if units else None


class Executor(Protocol):
    def execute(self, batches: list[Batch], done: Done, claims: BatchClaims) -> None:
        """Run every batch; call `done` once per unit after its record is on disk. Before a batch
        trains, `claims.take` narrows it to the units this process should train (claimed here,
        not recorded elsewhere); once their records are written, `claims.release` lets them go."""
