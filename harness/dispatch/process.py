"""A worker process: its environment set before any backend import, its start-up lines in a log,
then a loop of batches from the driver over a pipe until it is told to stop."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from harness.dispatch.slots import Slot, enable_memory_growth, start_worker_env
from harness.dispatch.worker import Worker
from harness.job.spec import JobSpec
from harness.store.store import Store
from harness.training import determinism


def make_worker(spec: JobSpec, store_root: str, shard: str, slot: Slot, engine: str) -> Worker:
    """A worker in this process, its device memory and threads set up (after `start_worker_env`)."""
    enable_memory_growth()
    determinism.apply_threads(slot.intra, slot.inter)
    return Worker(spec, Store(store_root, spec), shard, engine)


@contextlib.contextmanager
def native_stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 to `path` for a while: TensorFlow's C++ start-up lines (oneDNN,
    cuInit), which no log level silences, go to a log instead of across the progress bar.
    Python exceptions are printed after it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def worker_main(conn: Connection, spec: JobSpec, store_root: str, shard: str, slot: Slot, mode: str,
                engine: str) -> None:
    """Entry point of a worker process: set up once (in op-determinism `mode` where the backend
    fixes it at start), then loop over batches."""
    start_worker_env(slot, mode)
    log = Store(store_root, spec).dir / "logs" / f"{shard}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:  # which device and threads this worker was given, for whoever reads the log
        f.write(f"worker {shard}: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} "
                f"threads intra={slot.intra} inter={slot.inter} pid={os.getpid()}\n")
    with native_stderr_to(log):
        worker = make_worker(spec, store_root, shard, slot, engine)
    conn.send(("ready", None))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        units, attempts = msg
        conn.send(("done", worker.run_batch(units, attempts)))
    worker.close()
