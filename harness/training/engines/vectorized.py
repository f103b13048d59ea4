"""Engine `vectorized`: trainings of one configuration of any Keras 3 model as one JAX program.
Keras's own `train_step` (the jax backend's pure function of the model's state) is mapped over
replicas with `jax.vmap`; each replica carries its own weights (built from its init seed, as
`exact` starts), its own SeedGenerator states (the noise stream), its own optimizer slots and its
own batch order; `jax.lax.scan` runs every epoch's batches inside one `jax.jit`.

Replicas are trained in blocks of a fixed size (`block_size`, padded with copies), so the compiled
program's shape never depends on how many trainings a batch holds: a replica's result does not
depend on R, its slot or its companions (XLA's CPU dot kernels chose other summation orders at 16
replicas than at 8 here). It is not bit-identical to `fit` (batched kernels).

On a CPU, `jax.vmap` turns a convolution with per-replica kernels into a grouped convolution,
which XLA's CPU backend runs 6x slower than the ungrouped one; there the engine traces Keras's 2-D
convolutions as patches times kernel (`_patch_conv`), whose vmap is a batched matmul.

The worker that runs it starts with KERAS_BACKEND=jax (`worker_backend`); the rest of the harness
keeps its own backend.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.training.bitflip import flip_arrays
from harness.training.data import Dataset
from harness.training.engines.base import ENGINE_CACHE, Engine, Trained, batch_plan, compile_model, fit_targets
from harness.training.models import BuilderInfo

BLOCK = {"cpu": 8, "gpu": 32, "tpu": 32}  # replicas per compiled program on each platform, at most
STATE_BUDGET = 0.25  # of the memory a worker may use: replicas' states and one block's activations


def worker_backend(engine: str) -> str | None:
    """The Keras backend a worker for this engine label must start with (None: the harness's)."""
    return "jax" if engine == "vectorized" else None


@dataclass
class _Program:
    """A configuration's template model (built once, never trained), the metrics' state every
    replica starts from, and the compiled block program."""

    model: Any
    metrics_init: list[Any]
    self_compiled: bool
    run: Any
    block: int


def _conv2d(inputs: Any, kernel: Any, strides: Any = 1, padding: str = "valid", data_format: Any = None,
            dilation_rate: Any = 1) -> Any:
    """Keras's jax `conv` for an ungrouped, undilated 2-D channels-last convolution, as patches
    times kernel; anything else goes to Keras's own."""
    import jax.numpy as jnp
    x, k = jnp.asarray(inputs), jnp.asarray(kernel)
    if (k.ndim != 4 or (data_format or "channels_last") != "channels_last" or k.shape[2] != x.shape[-1]
            or dilation_rate not in (1, (1, 1), [1, 1])):
        return _KERAS_CONV[0](inputs, kernel, strides, padding, data_format, dilation_rate)
    kh, kw, c, o = k.shape
    sh, sw = (strides, strides) if isinstance(strides, int) else tuple(strides)
    if padding == "same":
        h, w = x.shape[1:3]
        ph = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
        pw = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
        x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    h, w = x.shape[1:3]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    patches = jnp.concatenate([x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                               for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.einsum("bhwk,ko->bhwo", patches, k.reshape(kh * kw * c, o))


_KERAS_CONV: list[Any] = []


@contextlib.contextmanager
def _patch_conv(on: bool) -> Iterator[None]:
    """Keras's jax convolution replaced by `_conv2d` while a program is traced (CPU only)."""
    if not on:
        yield
        return
    from keras.src.backend.jax import nn as jax_nn
    if not _KERAS_CONV:
        _KERAS_CONV.append(jax_nn.conv)
    jax_nn.conv = _conv2d
    try:
        yield
    finally:
        jax_nn.conv = _KERAS_CONV[0]


def _values(variables: list[Any]) -> list[Any]:
    import jax.numpy as jnp
    return [jnp.array(v.value) for v in variables]


def _program(model: Any) -> Any:
    """run(state, full, short, x, y, x_eval) -> (outputs [block, n_eval, ...], trainable,
    non-trainable): every replica of a block trained over its own batches (full [block, E, S, B],
    short [block, E, b]), then evaluated; state: (trainable, non-trainable, optimizer, metrics
    variables), each stacked over the block."""
    import jax

    def one(state: Any, full: Any, short: Any, x: Any, y: Any, x_eval: Any) -> Any:
        def step(st: Any, idx: Any) -> tuple[Any, None]:
            _, st = model.train_step(st, (x[idx], y[idx]))
            return st, None

        def epoch(st: Any, plan: Any) -> tuple[Any, None]:
            st, _ = jax.lax.scan(step, st, plan[0])
            if short.shape[-1]:
                st, _ = step(st, plan[1])
            return st, None

        state, _ = jax.lax.scan(epoch, state, (full, short))
        out, _ = model.stateless_call(state[0], state[1], x_eval, training=False)
        return out, state[0], state[1]

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None)))


def parameter_bytes(model: Any) -> int:
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.variables))


def activation_bytes(model: Any, batch_size: int) -> int:
    """A rough size of one training step's activations (every layer's output, kept for the
    backward pass, and its gradient), from the layers' output shapes."""
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        total += int(np.prod([d for d in shape[1:] if d]))
    return 2 * 4 * batch_size * max(total, 1)


def block_size(model: Any, batch_size: int, platform: str, budget: int) -> int:
    """Replicas per compiled program: the platform's block, halved until a block of replicas'
    states (weights, two optimizer slots, gradients) and activations fits in `budget` bytes."""
    per = 4 * parameter_bytes(model) + activation_bytes(model, batch_size)
    block = BLOCK.get(platform, 8)
    while block > 1 and block * per > budget:
        block //= 2
    return block


def memory_budget(platform: str) -> int:
    """Bytes a block may take: STATE_BUDGET of the device's memory (a GPU's, as jax reports it)
    or of the memory this machine has available."""
    if platform != "cpu":
        import jax
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(STATE_BUDGET * stats["bytes_limit"])
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(STATE_BUDGET * int(info["MemAvailable"].split()[0]) * 1024)


class VectorizedEngine(Engine):
    """Engine `vectorized` (see the module docstring); keeps the last ENGINE_CACHE programs."""

    name = "vectorized"
    batched = True

    def __init__(self, builder: BuilderInfo, loss: str, backend: str, xla: bool = False,
                 report: tuple[str, ...] = ()) -> None:
        if backend != "jax":
            raise RuntimeError(f"engine vectorized runs under the jax backend, not {backend} "
                               f"(its workers start with KERAS_BACKEND=jax)")
        super().__init__(builder, loss, backend, False, report)
        import jax
        self.platform = jax.default_backend()
        self._programs: OrderedDict[tuple[Any, ...], _Program] = OrderedDict()
        self._arrays: dict[int, tuple[Dataset, tuple[Any, ...]]] = {}

    def _get(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any]) -> _Program:
        key = (ds.x_train.shape[1:], ds.n_classes, training.get("optimizer"), int(training["batch_size"]),
               tuple(sorted(model_args.items())))
        if key in self._programs:
            self._programs.move_to_end(key)
            return self._programs[key]
        assert self.builder.build is not None
        model = self.builder.build(ds.x_train.shape[1:], ds.n_classes, 0, 0, backend_seed=False, **model_args).model
        self_compiled = bool(getattr(model, "compiled", False))
        compile_model(model, training, self.loss, self.backend)
        targets = fit_targets(model, ds)
        model._symbolic_build(data_batch=(targets.x_train[:1], targets.y_train[:1]))
        model.optimizer.build(model.trainable_variables)
        for metric in model.metrics:
            metric.reset_state()
        block = block_size(model, int(training["batch_size"]), self.platform, memory_budget(self.platform))
        program = _Program(model, _values(model.metrics_variables),
                           self_compiled, _program(model), block)
        self._programs[key] = program
        if len(self._programs) > ENGINE_CACHE:
            self._programs.popitem(last=False)
        return program

    def _start(self, program: _Program, ds: Dataset, model_args: dict[str, Any],
               seeds: dict[str, int]) -> tuple[list[Any], list[Any], dict[str, Any] | None]:
        """(trainable, non-trainable) values a fresh build with these seeds starts from (the
        built-in dense: its template re-initialised in place), the bitflip seed's bit flipped
        (`training.bitflip`, as exact and fit flip it), and what the noise stream reached."""
        if self.builder.reset is not None:
            self.builder.reset(program.model, seeds["init"], seeds["noise"])
            model, seeding = program.model, None
        else:
            assert self.builder.build is not None
            fresh = self.builder.build(ds.x_train.shape[1:], ds.n_classes, seeds["init"], seeds["noise"],
                                       backend_seed=False, **model_args)
            model, seeding = fresh.model, fresh.noise_seeding
        import jax.numpy as jnp
        weights = flip_arrays([np.asarray(v.value) for v in model.trainable_variables], seeds.get("bitflip", 0))
        return [jnp.asarray(w) for w in weights], _values(model.non_trainable_variables), seeding

    def _arrays_of(self, ds: Dataset) -> tuple[Any, ...]:
        """(x_train, y_train, x_eval) on the device, once per dataset (`ds` with its targets as the
        model's loss takes them)."""
        import jax.numpy as jnp
        hit = self._arrays.get(id(ds))
        if hit is None or hit[0] is not ds:
            hit = (ds, (jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), jnp.asarray(ds.x_eval)))
            self._arrays[id(ds)] = hit
        return hit[1]

    def _reported(self, program: _Program, ds: Dataset, trainable: Any, non_trainable: Any) -> dict[str, Any]:
        """The metrics only the compiled model reports (`self.report`), per split, from one
        replica's trained variables put in the template model."""
        model = program.model
        for var, value in zip(model.trainable_variables + model.non_trainable_variables,
                              [*trainable, *non_trainable], strict=True):
            var.assign(value)
        targets, out = fit_targets(model, ds), {}
        for split, x, y in (("validation", targets.x_val, targets.y_val), ("test", targets.x_test, targets.y_test)):
            if x is not None:
                res = model.evaluate(x, y, verbose=0, return_dict=True)
                out[split] = {n: float(res[n]) for n in self.report}
        return out

    def train_many(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
                   seeds: list[dict[str, int]]) -> list[Trained]:
        """Trainings of one configuration, one per seed dict, in blocks of the program's size (the
        last one padded with copies of its first seeds, whose outputs are dropped)."""
        program = self._get(ds, training, model_args)
        if not program.self_compiled:
            program.model.optimizer.learning_rate = training["learning_rate"]
        optimizer = _values(program.model.optimizer.variables)
        x, y, x_eval = self._arrays_of(fit_targets(program.model, ds))
        out: list[Trained] = []
        for i in range(0, len(seeds), program.block):
            block = seeds[i:i + program.block]
            padded = block + [block[0]] * (program.block - len(block))
            state, full, short, seeding = self._block_inputs(program, ds, training, model_args, padded, optimizer)
            with _patch_conv(self.platform == "cpu"):
                outputs, trainable, non_trainable = program.run(state, full, short, x, y, x_eval)
            outputs = np.asarray(outputs)
            for j in range(len(block)):
                reported = (self._reported(program, ds, [v[j] for v in trainable], [v[j] for v in non_trainable])
                            if self.report else {})
                out.append(Trained(outputs[j], seeding[j], reported))
        return out

    def _block_inputs(self, program: _Program, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
                      seeds: list[dict[str, int]], optimizer: list[Any] | None = None) -> tuple[Any, ...]:
        """(state, full, short, seedings) of a block: each replica's starting variables stacked,
        its batch plan (`batch_plan`), what the noise stream reached in its build."""
        import jax
        import jax.numpy as jnp
        optimizer = optimizer if optimizer is not None else _values(program.model.optimizer.variables)
        starts = [self._start(program, ds, model_args, s) for s in seeds]
        state = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[
            (t, n, optimizer, program.metrics_init) for t, n, _ in starts])
        plans = [batch_plan(len(ds.y_train), int(training["batch_size"]), int(training["epochs"]), s["order"])
                 for s in seeds]
        full = jnp.asarray(np.stack([p[0] for p in plans]))
        short = jnp.asarray(np.stack([p[1] for p in plans]))
        return state, full, short, [s[2] for s in starts]

    def probe(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any]) -> str | None:
        """Why this engine cannot train this configuration's model (None: it can), from building
        its template and tracing one block's program without running it: a model that overrides
        `train_step`, or one whose layers do not build or run under jax."""
        import jax
        import keras
        training = {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32, "epochs": 1, **training}
        try:
            program = self._get(ds, training, model_args)
            if type(program.model).train_step is not keras.Model.train_step:
                return f"{type(program.model).__name__} overrides train_step"
            seeds = {"init": 1, "order": 1, "noise": 1}
            state, full, short, _ = self._block_inputs(program, ds, training, model_args, [seeds] * program.block)
            with _patch_conv(self.platform == "cpu"):
                jax.eval_shape(program.run, state, full, short, *self._arrays_of(fit_targets(program.model, ds)))
        except Exception as exc:  # noqa: BLE001  any failure under jax is a reason to train exact
            return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
        return None

    def train(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
              seeds: dict[str, int]) -> Trained:
        """One training: a block of one (padded)."""
        return self.train_many(ds, training, model_args, [seeds])[0]
