"""The executor interface every executor follows (local pool, in-process debug; a Slurm array task
runs the local one on its shard)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from harness.job.matrix import Unit

Done = Callable[[str, str, int], None]  # (unit id, status, trainings) for each finished unit
Batch = tuple[list[Unit], dict[str, int]]  # units and their attempt numbers


class Executor(Protocol):
    def execute(self, batches: list[Batch], done: Done) -> None:
        """Run every batch; call `done` once per unit after its record is on disk."""
