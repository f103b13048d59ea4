"""Model builders: the built-in `dense` and `conv`, and `builder_info`, which gives the
`BuilderInfo` of a built-in name or of a user's "package.module:function" (harness/job/usercode.py
resolves it, harness/training/builders.py seeds it). A build returns `Built`: the model and what
the noise stream reached in it. Parameters are declared here without importing Keras; the build functions import it
lazily (only the trainer and the driver's check call them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import Where
from harness.job.seeds import layer_seed
from harness.job.spec import BUILTIN_BUILDERS
from harness.training.bitflip import flip_arrays


@dataclass(frozen=True)
class Built:
    """A built model and what the noise stream reaches in it (`builders.Seeding.as_dict`; None for
    a builder that seeds every layer itself)."""

    model: Any
    noise_seeding: dict[str, Any] | None = None


@dataclass(frozen=True)
class BuilderInfo:
    """A builder's parameters (name -> type), defaults and allowed string values."""

    params: dict[str, type]
    defaults: dict[str, Any]
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    build: Callable[..., Built] | None = None  # (input_shape, n_classes, init_seed, noise_seed, backend_seed, **args)
    reset: Callable[..., None] | None = None   # (model, init_seed, noise_seed): a fresh build's state
    open_params: bool = False  # every configuration value is the builder's (a user's builder)
    active: Callable[[dict[str, Any]], set[str]] | None = None  # a hypermodel's active hps for a configuration


def dense_kernel_initializer(init_seed: int, layer: int) -> Any:
    """The seeded initializer of Dense layer `layer` (the output layer is number `layers`)."""
    import keras
    return keras.initializers.GlorotUniform(seed=layer_seed(init_seed, layer))


def dense_initial_weights(input_dim: int, n_classes: int, init_seed: int, units: int = 64,
                          layers: int = 1, bitflip: int = 0, **_: Any) -> list[Any]:
    """[kernel, bias] of every Dense layer as numpy arrays: the values `build_dense` starts from,
    with the bitflip seed's bit flipped (`training.bitflip`)."""
    import numpy as np
    dims = [input_dim] + [units] * layers + [n_classes or 1]
    out: list[Any] = []
    for i in range(layers + 1):
        kernel = dense_kernel_initializer(init_seed, i)((dims[i], dims[i + 1]), dtype="float32")
        out += [np.asarray(kernel), np.zeros(dims[i + 1], np.float32)]
    return flip_arrays(out, bitflip)


def reset_dense(model: Any, init_seed: int, noise_seed: int) -> None:
    """Put a built `build_dense` model in the state a fresh build with these seeds has: kernels
    and biases re-initialised, each dropout layer's seed state back to its first value."""
    import numpy as np
    dense = [layer for layer in model.layers if hasattr(layer, "kernel")]
    for i, layer in enumerate(dense):
        layer.kernel.assign(dense_kernel_initializer(init_seed, i)(tuple(layer.kernel.shape), dtype="float32"))
        layer.bias.assign(np.zeros(tuple(layer.bias.shape), np.float32))
    dropouts = [layer for layer in model.layers if hasattr(layer, "seed_generator")]
    for i, layer in enumerate(dropouts):
        state = layer.seed_generator.state
        state.assign(np.array([layer_seed(noise_seed, i), 0], dtype=state.dtype))


def build_dense(input_shape: tuple[int, ...], n_classes: int, init_seed: int, noise_seed: int,
                backend_seed: bool = True, units: int = 64, layers: int = 1, activation: str = "relu",
                dropout: float = 0.0) -> Built:
    """Flatten -> `layers` x [Dense(units, activation) (+ Dropout)] -> Dense(n_classes, softmax).

    Every kernel initializer is seeded explicitly from the init seed (Keras's defaults draw from
    Python's `random`); dropout is seeded from the noise seed. A regression (n_classes 0) ends in
    one linear unit. No global seed is read (`backend_seed` has nothing to leave alone).
    """
    import keras

    stack: list[Any] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    for i in range(layers):
        stack.append(keras.layers.Dense(units, activation=activation,
                                        kernel_initializer=dense_kernel_initializer(init_seed, i)))
        if dropout > 0:
            stack.append(keras.layers.Dropout(dropout, seed=layer_seed(noise_seed, i)))
    stack.append(keras.layers.Dense(n_classes or 1, activation="softmax" if n_classes else "linear",
                                    kernel_initializer=dense_kernel_initializer(init_seed, layers)))
    return Built(keras.Sequential(stack))


def _conv_model(input_shape: tuple[int, ...], n_classes: int, blocks: int, filters: int, kernel_size: int,
                pooling: str, dropout: float, dense_units: int, activation: str) -> Any:
    import keras
    stack: list[Any] = [keras.Input(shape=input_shape)]
    if len(input_shape) == 2:  # a grey image without its channel axis (MNIST's arrays)
        stack.append(keras.layers.Reshape((*input_shape, 1)))
    pool = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
    for b in range(blocks):
        stack += [keras.layers.Conv2D(filters * 2 ** b, kernel_size, padding="same", activation=activation),
                  pool(2)]
    stack.append(keras.layers.Flatten())
    if dropout > 0:
        stack.append(keras.layers.Dropout(dropout))
    if dense_units:
        stack.append(keras.layers.Dense(dense_units, activation=activation))
    stack.append(keras.layers.Dense(n_classes or 1, activation="softmax" if n_classes else "linear"))
    return keras.Sequential(stack)


def build_conv(input_shape: tuple[int, ...], n_classes: int, init_seed: int, noise_seed: int,
               backend_seed: bool = True, blocks: int = 2, filters: int = 16, kernel_size: int = 3,
               pooling: str = "max", dropout: float = 0.0, dense_units: int = 64, activation: str = "relu") -> Built:
    """`blocks` x [Conv2D(filters x 2^block, kernel_size, same) -> pooling 2] -> Flatten
    [-> Dropout] [-> Dense(dense_units)] -> Dense(n_classes, softmax); built under the init seed,
    dropout from the noise stream (`builders.seeded_build`)."""
    from harness.training.builders import seeded_build
    model, seeding = seeded_build(lambda: _conv_model(tuple(input_shape), n_classes, blocks, filters, kernel_size,
                                                      pooling, dropout, dense_units, activation),
                                  init_seed, noise_seed, backend_seed)
    return Built(model, seeding.as_dict())


def _builtin(name: str, build: Callable[..., Any], reset: Callable[..., None] | None = None) -> BuilderInfo:
    p = BUILTIN_BUILDERS[name]
    return BuilderInfo(params=p.params, defaults=p.defaults, choices=p.choices, build=build, reset=reset)


BUILDERS: dict[str, BuilderInfo] = {"dense": _builtin("dense", build_dense, reset_dense),
                                    "conv": _builtin("conv", build_conv)}


def builder_info(builder: str, search_path: tuple[str, ...] = (), job_file: str = "") -> BuilderInfo:
    """A built-in builder's info, or a user's "package.module:function" wrapped as one (imported
    from `search_path` or PYTHONPATH; a failure is a UserError)."""
    if builder in BUILDERS:
        return BUILDERS[builder]
    from functools import partial

    from harness.job import usercode
    where = Where(file=job_file, key="model.builder")
    fn = usercode.import_function(builder, search_path, where)
    conv = usercode.convention(fn, builder, where)
    return BuilderInfo(params={}, defaults={}, build=partial(build_user, fn, conv, builder), open_params=True,
                       active=partial(usercode.active_names, fn) if conv == usercode.KERASTUNER else None)


def build_user(fn: Callable[..., Any], conv: str, ref: str, input_shape: tuple[int, ...], n_classes: int,
               init_seed: int, noise_seed: int, backend_seed: bool = True, **hp: Any) -> Built:
    """A user's model for configuration `hp`, seeded as `builders.seeded_build` says, with what
    the noise stream reached in it (for the record)."""
    import keras
    import numpy as np

    from harness.training.builders import call_builder, seeded_build

    def checked() -> Any:
        model = call_builder(fn, conv, hp, input_shape, n_classes)
        if not isinstance(model, keras.Model):
            raise TypeError(f"model builder {ref} returned {type(model).__name__}, not a keras.Model")
        if not model.built:  # no keras.Input (KerasTuner's guide): built on a first call, as fit would
            model(np.zeros((1, *input_shape), np.float32), training=False)
        return model

    model, seeding = seeded_build(checked, init_seed, noise_seed, backend_seed)
    return Built(model, seeding.as_dict())
