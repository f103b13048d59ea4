"""Per-backend determinism switches, thread counts and the environment fingerprint.

Call `prepare_process` before Keras or its backend is imported (it sets environment
variables the backends read at import), then `apply_threads` once and `set_ops` per batch.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from typing import Any


def backend_name() -> str:
    """The Keras backend a process here would start, read the way Keras reads it (without importing
    it): $KERAS_BACKEND, else keras.json's "backend" in Keras's home, else tensorflow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    return backend if isinstance(backend, str) and backend else "tensorflow"


_JAX_FLAG = "--xla_gpu_deterministic_ops"
_jax_ops_at_start: bool | None = None  # the mode jax was started in, where prepare_process set it


def prepare_process(mode: str) -> None:
    """Environment for a worker process, before any backend import. Under jax the mode is
    XLA_FLAGS' deterministic-ops flag, which jax reads once: any setting of it already in the
    environment is replaced by the one for `mode`."""
    global _jax_ops_at_start
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend_name() == "jax":
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_JAX_FLAG)]
        os.environ["XLA_FLAGS"] = " ".join(flags + ([f"{_JAX_FLAG}=true"] if mode == "on" else []))
        if "jax" not in sys.modules:  # else jax may already have read other flags
            _jax_ops_at_start = mode == "on"


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
        try:
            if intra:
                tf.config.threading.set_intra_op_parallelism_threads(intra)
            if inter:
                tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:  # in-process (debug executor) after the driver built a user's model
            print("harness: thread counts not applied: TensorFlow already started in this process", file=sys.stderr)
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
        if _jax_ops_at_start is not None:
            return _jax_ops_at_start
        return f"{_JAX_FLAG}=true" in os.environ.get("XLA_FLAGS", "").split()
    return False


def _cpuinfo(*prefixes: str) -> str | None:
    """The value of the first /proc/cpuinfo line that starts with one of `prefixes`."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefixes)), None)
    except OSError:
        return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


# CPU features that change which kernels oneDNN, Eigen and XLA pick (so the last bits of a result)
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
                "asimd", "sve", "sve2")


def cpu_flags() -> list[str]:
    """The kernel-relevant features /proc/cpuinfo lists (x86 `flags`, Arm `Features`)."""
    have = set((_cpuinfo("flags", "Features") or "").split())
    return [flag for flag in KERNEL_FLAGS if flag in have]


def cpu_isa(flags: list[str]) -> str:
    """The widest vector instruction set among `flags` (what oneDNN and XLA dispatch on)."""
    for level, needs in (("avx512+amx", ("avx512f", "amx_tile")), ("avx512", ("avx512f",)),
                         ("avx2", ("avx2", "fma")), ("avx", ("avx",)), ("sse4.2", ("sse4_2",)),
                         ("sve", ("sve",)), ("neon", ("asimd",))):
        if all(n in flags for n in needs):
            return level
    return platform.machine() or "unknown"


def gpu_driver() -> str | None:
    """The NVIDIA kernel driver's version, where one is loaded."""
    try:
        with open("/proc/driver/nvidia/version") as f:
            words = f.readline().split()
    except OSError:
        return None
    return next((w for w in words if w[:1].isdigit() and "." in w), None)


def hardware() -> dict[str, Any]:
    """The machine a result's bits belong to: CPU model, its instruction-set level and kernel
    flags, oneDNN's ISA cap where set, and the GPU driver (the GPUs' names come from the backend).
    oneDNN does not say which ISA it chose (its verbose log only), so the cap is what is recorded."""
    flags = cpu_flags()
    return {"cpu": _cpu_model(), "cpu_isa": cpu_isa(flags), "cpu_flags": flags,
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
            "gpu_driver": gpu_driver()}


def fingerprint() -> dict[str, Any]:
    """Versions, hardware (`hardware`), devices and host: what a reader needs to compare two runs."""
    import keras
    fp: dict[str, Any] = {"backend": backend_name(), "keras": keras.__version__,
                          "python": platform.python_version(), "host": socket.gethostname(), **hardware(),
                          "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
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
