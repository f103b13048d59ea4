"""The in-process executor: the same Worker, no processes; for tests and pdb."""

from __future__ import annotations

import os
import sys

from harness.dispatch.base import Batch, Done, take
from harness.dispatch.process import limit_memory, make_worker
from harness.dispatch.slots import Slot, shard_prefix
from harness.errors import UserError
from harness.job.spec import JobSpec
from harness.store.claims import BatchClaims
from harness.store.store import Store
from harness.training import determinism
from harness.training.engines.vectorized import worker_backend


class DebugExecutor:
    """Runs batches in this process through the same Worker: for tests and pdb."""

    def __init__(self, spec: JobSpec, store: Store, engine: str) -> None:
        if determinism.mode_fixed_at_start() and len(spec.determinism.modes) > 1:
            raise UserError(f"{spec.path}: determinism.ops: 'both' needs a process per mode under backend "
                            f"{determinism.backend_name()}; run with --executor local, or ops 'on' or 'off'")
        self.spec, self.store, self.engine = spec, store, engine
        self.slot = Slot(None, spec.determinism.intra_op_threads, spec.determinism.inter_op_threads)

    def execute(self, batches: list[Batch], done: Done, claims: BatchClaims) -> None:
        backend = worker_backend(self.engine)
        if backend and backend != determinism.backend_name():
            if "keras" in sys.modules:
                raise UserError(f"{self.spec.path}: engine {self.engine} trains under {backend}, and this process "
                                f"already runs keras under {determinism.backend_name()}; run with --executor local")
            os.environ["KERAS_BACKEND"] = backend
        determinism.prepare_process(self.spec.determinism.modes[0])
        worker = make_worker(self.spec, str(self.store.root), shard_prefix("debug"), self.slot, self.engine)
        limit_memory()
        try:
            for batch in batches:
                mine = take(claims, batch)
                if mine is None:
                    continue
                for uid, status, n in worker.run_batch(*mine):
                    done(uid, status, n)
                claims.release(mine[0])
        finally:
            worker.close()
