"""A worker process: its environment set before any backend import, its start-up lines in a log,
then a loop of batches from the driver over a pipe until it is told to stop."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from harness.dispatch.slots import Slot, enable_memory_growth, start_worker_env
from harness.dispatch.worker import Worker
from harness.errors import UserError
from harness.files import append_regular, open_regular
from harness.job.spec import JobSpec
from harness.store.store import Store
from harness.training import determinism

PR_SET_PDEATHSIG = 1  # linux/prctl.h
MEMORY_HEADROOM_ENV = "HARNESS_WORKER_MEMORY_HEADROOM_MB"


def die_with_parent() -> None:
    """End this worker when its driver dies, so that no orphan trains on (and a resume does not
    retrain its units): Linux kills it at once (prctl PR_SET_PDEATHSIG, SIGKILL); everywhere, a
    watch thread sees the parent change within a second and exits. Neither leaves a traceback."""
    parent = mp.parent_process()
    expected = parent.pid if parent is not None else os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != expected:  # the driver died before the prctl above
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def limit_memory() -> None:
    """With $HARNESS_WORKER_MEMORY_HEADROOM_MB set, cap this worker's address space (the debug
    executor's: its whole process) at its size after start-up plus that headroom (RLIMIT_AS): a
    guard on shared machines, and how the tests make a training run out of memory for real.
    Unset (the default): no limit."""
    headroom = os.environ.get(MEMORY_HEADROOM_ENV)
    if not headroom:
        return
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = size + int(float(headroom) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


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
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """SIGINT blocked in this thread for a while. A process started meanwhile starts with it
    blocked (the mask survives fork and exec), so a Ctrl-C during its start-up reaches only the
    driver; one that reached the driver meanwhile is delivered when the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_sigint() -> None:
    """A worker leaves Ctrl-C to its driver, which stops it (SIGTERM) and says so in one line:
    ignored from here (a SIGINT still pending from start-up is dropped), then unblocked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def worker_main(conn: Connection, spec: JobSpec, store_root: str, shard: str, slot: Slot, mode: str,
                engine: str) -> None:
    """Entry point of a worker process (started under `sigint_held`): set up once (in
    op-determinism `mode` where the backend fixes it at start), then loop over batches until
    told to stop or the driver is gone."""
    ignore_sigint()
    die_with_parent()
    start_worker_env(slot, mode, engine)
    try:
        log = Store(store_root, spec).subdir("logs", create=True) / f"{shard}.log"
        with append_regular(log) as f:  # which device and threads this worker was given, for whoever reads the log
            f.write(f"worker {shard}: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} "
                    f"threads intra={slot.intra} inter={slot.inter} pid={os.getpid()}\n".encode())
        with native_stderr_to(log):
            worker = make_worker(spec, store_root, shard, slot, engine)
    except UserError as exc:  # a full disk, a link planted in the store: the driver's one line
        conn.send(("error", str(exc)))
        return
    limit_memory()
    try:
        serve(conn, worker)
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the driver is gone: nothing to report to
        pass
    finally:
        worker.close()


def serve(conn: Connection, worker: Worker) -> None:
    """Answer the driver: ready, then each batch's results, until it says stop (None). A full
    disk, or a file in the store the harness did not make, is reported as one line and ends the
    worker."""
    conn.send(("ready", None))
    while (msg := conn.recv()) is not None:
        try:
            conn.send(("done", worker.run_batch(*msg)))
        except UserError as exc:  # a full disk (StoreFull), a link planted in the store
            conn.send(("error", str(exc)))
            return
