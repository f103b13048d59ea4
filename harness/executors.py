"""Executors share one interface: `execute(batches) -> None`, reporting each finished unit to
a progress callback. `DebugExecutor` trains in this process; `LocalExecutor` keeps persistent
worker processes (TensorFlow imported and data loaded once each), pinned to GPUs or splitting
the CPU cores."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from harness.errors import UserError
from harness.matrix import Unit
from harness.spec import JobSpec
from harness.store import Store

STOP_EXITCODES = (-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP)
Done = Callable[[str, str, int], None]  # (unit id, status, trainings) for each finished unit
Batch = tuple[list[Unit], dict[str, int]]  # units and their attempt numbers


class Executor(Protocol):
    def execute(self, batches: list[Batch], done: Done) -> None:
        """Run every batch; call `done` once per unit after its record is on disk."""


def shard_prefix(kind: str) -> str:
    """Shard names: one per Slurm array task (kept across requeues), else per host and process."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"slurm-{job}-{task}"
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def discover_gpus() -> list[str]:
    """GPU ids visible to this process without importing a framework: CUDA_VISIBLE_DEVICES as
    set (e.g. by Slurm), else nvidia-smi's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if os.environ.get("SLURM_JOB_ID"):  # a Slurm job given no GPUs must not take the node's
        return []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


@dataclass(frozen=True)
class Slot:
    """Where one worker process runs: a GPU id (or None for CPU) and its thread counts."""

    gpu: str | None
    intra: int | None
    inter: int | None


def usable_cores() -> int:
    """Cores this process may use: Slurm's allocation when inside a job (clusters without CPU
    affinity show the whole node), else the affinity mask."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def plan_slots(spec: JobSpec, workers: int | None) -> list[Slot]:
    """k workers per GPU when there are GPUs, else CPU workers that split the cores."""
    det = spec.determinism
    gpus = discover_gpus()
    if gpus:
        n = workers or len(gpus) * spec.dispatch.workers_per_gpu
        return [Slot(gpus[i % len(gpus)], det.intra_op_threads, det.inter_op_threads) for i in range(n)]
    cores = usable_cores()
    n = workers or spec.dispatch.cpu_workers or cores
    per = max(1, cores // n)
    return [Slot(None, det.intra_op_threads or per, det.inter_op_threads or 1) for _ in range(n)]


def start_worker_env(slot: Slot, mode: str) -> None:
    """Process environment of a worker, set before any backend import."""
    from harness import determinism
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu if slot.gpu is not None else "-1"
    if slot.intra:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(slot.intra)
    determinism.prepare_process(mode)


def _enable_memory_growth() -> None:
    from harness.determinism import backend_name
    if backend_name() == "tensorflow":
        import tensorflow as tf
        for g in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(g, True)
    elif backend_name() == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _make_worker(spec: JobSpec, store_root: str, shard: str, slot: Slot) -> Any:
    from harness import determinism
    from harness.worker import Worker
    _enable_memory_growth()
    determinism.apply_threads(slot.intra, slot.inter)
    return Worker(spec, Store(store_root, spec), shard)


@contextlib.contextmanager
def _native_stderr_to(path: Path) -> Iterator[None]:
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


def _worker_main(conn: Connection, spec: JobSpec, store_root: str, shard: str, slot: Slot, mode: str) -> None:
    """Entry point of a worker process: set up once (in op-determinism `mode` where the backend
    fixes it at start), then loop over batches."""
    start_worker_env(slot, mode)
    log = Store(store_root, spec).dir / "logs" / f"{shard}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:  # which device and threads this worker was given, for whoever reads the log
        f.write(f"worker {shard}: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} "
                f"threads intra={slot.intra} inter={slot.inter} pid={os.getpid()}\n")
    with _native_stderr_to(log):
        worker = _make_worker(spec, store_root, shard, slot)
    conn.send(("ready", None))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        units, attempts = msg
        conn.send(("done", worker.run_batch(units, attempts)))
    worker.close()


class DebugExecutor:
    """Runs batches in this process through the same Worker: for tests and pdb."""

    def __init__(self, spec: JobSpec, store: Store, threads: int | None = None) -> None:
        from harness import determinism
        if determinism.mode_fixed_at_start() and len(spec.determinism.modes) > 1:
            raise UserError(f"{spec.path}: determinism.ops: 'both' needs a process per mode under backend "
                            f"{determinism.backend_name()}; run with --executor local, or ops 'on' or 'off'")
        self.spec, self.store = spec, store
        self.slot = Slot(None, spec.determinism.intra_op_threads or threads,
                         spec.determinism.inter_op_threads)

    def execute(self, batches: list[Batch], done: Done) -> None:
        from harness import determinism
        determinism.prepare_process(self.spec.determinism.modes[0])
        worker = _make_worker(self.spec, str(self.store.dir.parent.parent), shard_prefix("debug"), self.slot)
        try:
            for units, attempts in batches:
                for uid, status, n in worker.run_batch(units, attempts):
                    done(uid, status, n)
        finally:
            worker.close()


@dataclass
class _Live:
    """A running worker process as the driver sees it."""

    name: str
    proc: Any
    conn: Connection
    slot: Slot
    mode: str                    # its op-determinism mode at start (binding where fixed at start)
    batch: Batch | None = None   # the batch it is training
    trained: int = 0             # trainings since it started
    ready: bool = False          # it has said it is ready (started up)


def successor_mode(queued: list[str], mode: str, others: list[str], per_process: bool) -> str | None:
    """The mode a fresh worker in the slot of a worker in `mode` starts in, or None when the slot
    is not needed: its own mode while batches of it are queued (or any batch at all where a
    process switches modes itself); else the other queued mode, if its batches outnumber the
    other live workers already in it (`queued`: the modes of the queued batches)."""
    if not queued:
        return None
    if not per_process or mode in queued:
        return mode
    other = queued[-1]
    return other if queued.count(other) > others.count(other) else None


class LocalExecutor:
    """Persistent worker processes (spawned, so each sets its device and threads before
    importing TensorFlow). A worker that dies has its in-flight units recorded as failed by the
    driver and is replaced. Under engine `fit`, whose fresh model per training grows a process by
    ~5 MB, a worker is replaced after `RECYCLE_FIT_TRAININGS` trainings (the others stay flat).
    Where the backend fixes op determinism at process start (jax), a worker trains batches of its
    own mode and is replaced by one of the other mode when only those are left."""

    RECYCLE_FIT_TRAININGS = 150
    MAX_FAILED_STARTS = 3  # workers in a row that die before they are ready: the run stops

    def __init__(self, spec: JobSpec, store: Store, workers: int | None = None) -> None:
        from harness import determinism, engines
        self.spec, self.store = spec, store
        engine = engines.resolve(spec.training.engine, determinism.backend_name(), spec.model.builder,
                                 spec.training.xla)  # its fallback notice, here on the driver's stderr
        self.recycle_after = self.RECYCLE_FIT_TRAININGS if engine == "fit" else None
        self.mode_per_process = determinism.mode_fixed_at_start()
        self.slots = plan_slots(spec, workers)
        self.prefix = shard_prefix("local")
        self._spawned = 0
        self._ctx = mp.get_context("spawn")

    def _spawn(self, slot: Slot, mode: str) -> _Live:
        parent, child = self._ctx.Pipe()
        name = f"{self.prefix}-w{self._spawned}"
        self._spawned += 1
        proc = self._ctx.Process(target=_worker_main, name=name, daemon=True,
                                 args=(child, self.spec, str(self.store.dir.parent.parent), name, slot, mode))
        proc.start()
        child.close()
        return _Live(name, proc, parent, slot, mode)

    def _next(self, queue: list[Batch], mode: str) -> Batch | None:
        """The next batch for a worker in `mode`: the queue's next one, or (one mode per process)
        the next one of its mode; None when there is none for it."""
        if not self.mode_per_process:
            return queue.pop() if queue else None
        for i in range(len(queue) - 1, -1, -1):
            if queue[i][0][0].mode == mode:
                return queue.pop(i)
        return None

    def execute(self, batches: list[Batch], done: Done) -> None:
        queue = list(reversed(batches))
        slots = self.slots[:max(1, len(batches))]
        # each worker starts in the mode of the batch it will most likely take first
        modes = [b[0][0].mode for b in batches[:len(slots)]]
        modes += [self.spec.determinism.modes[0]] * (len(slots) - len(modes))
        live: dict[Connection, _Live] = {}
        driver = None
        failed_starts = 0

        def start(slot: Slot, mode: str | None) -> None:
            if mode is not None:
                w = self._spawn(slot, mode)
                live[w.conn] = w

        def stop(w: _Live) -> None:
            w.conn.send(None)
            w.proc.join(timeout=30)
            if w.proc.is_alive():
                w.proc.terminate()
            del live[w.conn]

        def successor(w: _Live) -> str | None:
            return successor_mode([b[0][0].mode for b in queue], w.mode,
                                  [x.mode for x in live.values() if x is not w], self.mode_per_process)

        for slot, mode in zip(slots, modes, strict=True):
            start(slot, mode)
        try:
            while live:
                for conn in wait(list(live)):
                    w = live[conn]
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(timeout=5)
                        del live[conn]
                        if w.proc.exitcode in STOP_EXITCODES:  # stopped from outside (scancel, Ctrl-C):
                            raise KeyboardInterrupt from None  # not the unit's fault; a rerun redoes it
                        if w.batch is not None:
                            driver = driver or self.store.writer(f"{self.prefix}-driver")
                            self._record_death(driver, w.batch, w.proc.exitcode, done)
                        if not w.ready:
                            failed_starts += 1
                            if failed_starts >= self.MAX_FAILED_STARTS:
                                raise UserError(
                                    f"worker {w.name} exited (code {w.proc.exitcode}) before it was ready, "
                                    f"{failed_starts} starts in a row: see the traceback above and "
                                    f"{self.store.dir / 'logs' / (w.name + '.log')}") from None
                        start(w.slot, successor(w))
                        continue
                    w.ready, w.batch = True, None
                    failed_starts = 0
                    if kind == "done":
                        for uid, status, n in payload:
                            done(uid, status, n)
                        w.trained += sum(n for _, _, n in payload)
                        if queue and self.recycle_after and w.trained >= self.recycle_after:
                            stop(w)  # a fresh process in its place: memory back to its start
                            start(w.slot, successor(w))
                            continue
                    nxt = self._next(queue, w.mode)
                    if nxt is not None:
                        conn.send(nxt)
                        w.batch = nxt
                    else:  # nothing left for its mode: stop it, and start one of the other mode if needed
                        stop(w)
                        start(w.slot, successor(w))
        finally:
            for w in live.values():
                w.proc.terminate()
            if driver is not None:
                driver.close()

    def _record_death(self, driver: Any, batch: Batch, exitcode: int | None, done: Done) -> None:
        """A dead worker's batch: units it recorded are reported as recorded; the others count
        as one failed attempt each (so a unit that kills its worker is not retried forever)."""
        states = self.store.states()
        units, attempts = batch
        for u in units:
            st = states.get(u.id)
            if st is not None and st.ok is not None:
                done(u.id, "ok", 0)
                continue
            if st is not None and any(f.get("attempt") == attempts.get(u.id, 1) for f in st.failures):
                done(u.id, "failed", 0)
                continue
            driver.append({"unit": u.id, "index": u.index, "kind": u.kind, "mode": u.mode, "levels": u.levels,
                           "config": u.config, "attempt": attempts.get(u.id, 1), "status": "failed",
                           "error": f"worker process died (exit code {exitcode})", "job": self.spec.name,
                           "spec": self.spec.digest(), "worker": f"{self.prefix}-driver"})
            done(u.id, "failed", 0)


def make_executor(name: str, spec: JobSpec, store: Store, workers: int | None) -> Executor:
    if name == "debug":
        return DebugExecutor(spec, store)
    return LocalExecutor(spec, store, workers)

