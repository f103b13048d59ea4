"""Engine `exact`: one built, compiled Keras model per configuration and worker; per training the
weights, the optimizer's slots and step and the dropout seed states are reset to what a fresh
build has (the built-in dense: re-initialised in place; any other model: a throwaway build under
the training's seeds, whose variables, seed generator states included, are copied in; building is
cheap, tracing is not), and the whole training (all epochs' batches, in the harness's order) runs as one
`tf.function` around Keras's own `train_step` (for gelu, one compiled step per batch:
GRAPH_LOOP_ACTIVATIONS): the same bits as engine `fit`.

Under jax, `exact` is the same reset per seed around Keras's own `fit`, whose jitted train function
the built model keeps (fit's bits; tests/test_backends.py).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.training.bitflip import flip_model
from harness.training.data import Dataset
from harness.training.engines.base import (
    ENGINE_CACHE,
    Engine,
    Tensors,
    Trained,
    batch_plan,
    compile_model,
    fit_batches,
    fit_targets,
    trained,
)
from harness.training.models import BuilderInfo


@dataclass
class _Built:
    """A built and compiled model, its optimizer's initial variable values, its loop function."""

    model: Any
    optimizer_init: list[np.ndarray]
    loop: Any = field(default=None)
    self_compiled: bool = False  # its builder compiled it: its optimizer's settings are its own


# Activations whose whole-training graph loop gave `fit`'s bits here (tests/test_engines.py checks
# every activation); with gelu, gathering the batch inside the same graph as the train step changed
# the last bits (Keras 3.15 / TF 2.21 CPU), so it trains one compiled step per batch.
GRAPH_LOOP_ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "linear", "swish")


def _exact_loop(model: Any, ds: Dataset, jit: bool, graph_loop: bool) -> Any:
    """`loop(x, y, full, short)`: one training over Keras's own `train_step`, as one tf.function
    over all epochs (`graph_loop`) or one compiled step per batch, gathered outside it."""
    import tensorflow as tf
    features = ds.x_train.shape[1:]
    y_spec = tf.TensorSpec([None, *ds.y_train.shape[1:]], tf.as_dtype(ds.y_train.dtype))

    if not graph_loop:
        one_step = tf.function(model.train_step, jit_compile=jit, input_signature=[(
            tf.TensorSpec([None, *features], tf.float32), y_spec)])

        def steps(x: Any, y: Any, full: np.ndarray, short: np.ndarray) -> None:
            for e in range(full.shape[0]):
                for idx in [*full[e], *([short[e]] if short.shape[1] else [])]:
                    one_step((tf.gather(x, idx), tf.gather(y, idx)))
        return steps

    one_step_g = tf.function(model.train_step, jit_compile=jit, experimental_attributes={"_noinline": True},
                             input_signature=[(tf.TensorSpec([None, *features], tf.float32), y_spec)])

    def step(x: Any, y: Any, idx: Any) -> None:
        one_step_g((tf.gather(x, idx), tf.gather(y, idx)))

    @tf.function(jit_compile=jit, input_signature=[
        tf.TensorSpec([None, *features], tf.float32), y_spec,
        tf.TensorSpec([None, None, None], tf.int32), tf.TensorSpec([None, None], tf.int32)])
    def loop(x: Any, y: Any, full: Any, short: Any) -> None:
        for e in tf.range(tf.shape(full)[0]):
            for s in tf.range(tf.shape(full)[1]):
                step(x, y, full[e, s])
            if tf.shape(short)[1] > 0:
                step(x, y, short[e])

    return loop


# Every throwaway build runs its initializers eagerly with new seeds, and TensorFlow's eager kernel
# cache keeps a kernel per seed (+0.5 MB a training here); clearing it also re-instantiates the
# traced step (~0.2 s), so it is cleared every CLEAR_KERNELS_EVERY builds (a cache, not state:
# the bits do not change).
CLEAR_KERNELS_EVERY = 50


def _clear_kernel_cache() -> None:
    from tensorflow.python.eager import context  # no public alias
    context.context().clear_kernel_cache()


class ExactEngine(Engine):
    """Engine `exact` (see the module docstring); keeps the last ENGINE_CACHE built models."""

    name = "exact"

    def __init__(self, builder: BuilderInfo, loss: str, backend: str, xla: bool = False,
                 report: tuple[str, ...] = ()) -> None:
        super().__init__(builder, loss, backend, xla, report)
        self._built: OrderedDict[tuple[Any, ...], _Built] = OrderedDict()
        self._tensors = Tensors()
        self._throwaway_builds = 0

    def _get(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any]) -> _Built:
        key = (ds.x_train.shape[1:], ds.n_classes, training.get("optimizer"), tuple(sorted(model_args.items())))
        if key in self._built:
            self._built.move_to_end(key)
            return self._built[key]
        assert self.builder.build is not None
        model = self.builder.build(ds.x_train.shape[1:], ds.n_classes, 0, 0, **model_args).model
        # As engine fit compiles it: under TensorFlow Keras's jit_compile stays off (it silently
        # drops XLA under op determinism) and the engine's tf.function is what XLA compiles when
        # asked; under jax, Keras's own jitted train function is the loop.
        self_compiled = bool(getattr(model, "compiled", False))
        compile_model(model, training, self.loss, self.backend)
        model.optimizer.build(model.trainable_variables)
        loop = None
        if self.backend == "tensorflow":
            graph_loop = (self.builder.reset is not None
                          and model_args.get("activation") in GRAPH_LOOP_ACTIVATIONS)
            loop = _exact_loop(model, fit_targets(model, ds), self.xla, graph_loop)
        built = _Built(model, [np.array(v.numpy()) for v in model.optimizer.variables], loop, self_compiled)
        self._built[key] = built
        if len(self._built) > ENGINE_CACHE:
            self._built.popitem(last=False)
        return built

    def _reset(self, built: _Built, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
               seeds: dict[str, int]) -> dict[str, Any] | None:
        """The state a fresh build with these seeds starts training from: weights, seed generator
        states, optimizer variables (and learning rate, unless the builder compiled the model),
        metrics; the global seeds as `builders.seeded_build` leaves them (the backend's left alone).
        Returns what the noise stream reached in the fresh build (`models.Built.noise_seeding`)."""
        model, seeding = built.model, None
        if self.builder.reset is not None:
            self.builder.reset(model, seeds["init"], seeds["noise"])
        else:
            assert self.builder.build is not None
            fresh = self.builder.build(ds.x_train.shape[1:], ds.n_classes, seeds["init"], seeds["noise"],
                                       backend_seed=False, **model_args)
            for var, value in zip(model.variables, fresh.model.variables, strict=True):
                var.assign(value.value)
            seeding = fresh.noise_seeding
            del fresh
            self._throwaway_builds += 1
            if self.backend == "tensorflow" and self._throwaway_builds % CLEAR_KERNELS_EVERY == 0:
                _clear_kernel_cache()
        for var, value in zip(model.optimizer.variables, built.optimizer_init, strict=True):
            var.assign(value)
        if not built.self_compiled:
            model.optimizer.learning_rate = training["learning_rate"]
        for metric in model.metrics:
            metric.reset_state()
        return seeding

    def train(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
              seeds: dict[str, int]) -> Trained:
        """One training. A training that raises drops its configuration's built model, so the next
        one starts from a fresh build (an error never carries state into another unit)."""
        built = self._get(ds, training, model_args)
        try:
            seeding = self._reset(built, ds, training, model_args, seeds)
            flip_model(built.model, seeds.get("bitflip", 0))
            if built.loop is None:  # not TensorFlow: Keras's own fit, its compiled train function reused
                fit_batches(built.model, ds, training, seeds["order"])
            else:
                full, short = batch_plan(len(ds.y_train), int(training["batch_size"]), int(training["epochs"]),
                                         seeds["order"])
                x, y, _ = self._tensors.get(fit_targets(built.model, ds))
                built.loop(x, y, full, short)
            return trained(self, built.model, ds, seeding)
        except Exception:
            self._built = OrderedDict((k, b) for k, b in self._built.items() if b is not built)
            raise
