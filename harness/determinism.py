"""Per-backend determinism switches, thread counts and the environment fingerprint.

Call `prepare_process` before Keras or its backend is imported (it sets environment
variables the backends read at import), then `apply_threads` once and `set_ops` per batch.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any


def backend_name() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def prepare_process(mode: str) -> None:
    """Environment for a worker process, before any backend import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend_name() == "jax" and mode == "on":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()


def mode_fixed_at_start() -> bool:
    """Whether op determinism is fixed when the backend starts (jax: by XLA_FLAGS), so a process
    trains in one mode only; TensorFlow and torch switch it per batch."""
    return backend_name() == "jax"


def apply_threads(intra: int | None, inter: int | None) -> None:
    """Thread counts; must run before the backend runs any op."""
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")  # per-model retracing notes are expected with engine fit
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    elif backend == "torch" and intra:
        import torch
        torch.set_num_threads(intra)


def set_ops(mode: str) -> bool:
    """Turn deterministic ops on or off for the running backend; returns whether they are on."""
    on = mode == "on"
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config  # disable has no public alias
        if on:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()
        return bool(tf_config.is_op_determinism_enabled())
    if backend == "torch":
        import torch
        torch.use_deterministic_algorithms(on)
        return on
    if backend == "jax":  # fixed at process start by XLA_FLAGS
        return "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "")
    return False


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint() -> dict[str, Any]:
    """Versions, devices and host: what a reader needs to compare two runs."""
    import keras
    fp: dict[str, Any] = {"backend": backend_name(), "keras": keras.__version__,
                          "python": platform.python_version(), "host": socket.gethostname(),
                          "cpu": _cpu_model(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                          "pythonhashseed": os.environ.get("PYTHONHASHSEED")}
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf
        info = tf.sysconfig.get_build_info()
        gpus = tf.config.list_physical_devices("GPU")
        fp.update(tensorflow=tf.__version__, cuda=info.get("cuda_version"), cudnn=info.get("cudnn_version"),
                  gpus=[tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
                  intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                  inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
    elif backend == "jax":
        import jax
        fp.update(jax=jax.__version__, gpus=[d.device_kind for d in jax.devices() if d.platform == "gpu"],
                  xla_flags=os.environ.get("XLA_FLAGS", ""))
    elif backend == "torch":
        import torch
        fp.update(torch=torch.__version__, cuda=torch.version.cuda,
                  gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    return fp
