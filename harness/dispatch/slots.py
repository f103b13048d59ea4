"""Where workers run: the GPUs visible to this process, the cores it may use, one `Slot` (GPU and
thread counts) per worker, and the environment a worker sets before any backend import."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass

from harness.job.spec import JobSpec
from harness.training import determinism


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


def start_worker_env(slot: Slot, mode: str, engine: str) -> None:
    """Process environment of a worker, set before any backend import: its device, threads, the
    Keras backend its engine trains under (`engines.vectorized.worker_backend`), determinism."""
    from harness.training.engines.vectorized import worker_backend
    backend = worker_backend(engine)
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu if slot.gpu is not None else "-1"
    if slot.intra:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(slot.intra)
    determinism.prepare_process(mode)


def enable_memory_growth() -> None:
    """Let TensorFlow (or jax) take GPU memory as it needs it, so workers can share a GPU."""
    if determinism.backend_name() == "tensorflow":
        import tensorflow as tf
        for g in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(g, True)
    elif determinism.backend_name() == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
