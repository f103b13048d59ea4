"""Registered model builders. Parameters are declared here without importing Keras; the
build functions import it lazily (only the trainer calls them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "selu", "swish", "linear")


@dataclass(frozen=True)
class BuilderInfo:
    """A builder's parameters (name -> type), defaults and allowed string values."""

    params: dict[str, type]
    defaults: dict[str, Any]
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    build: Callable[..., Any] | None = None
    reset: Callable[..., None] | None = None   # (model, init_seed, noise_seed): a fresh build's state


def layer_seed(init_seed: int, layer: int) -> int:
    """The initializer seed of one layer, derived from the unit's init seed."""
    import numpy as np
    return int(np.random.SeedSequence([init_seed, layer]).generate_state(1)[0] & 0x7FFFFFFF)


def dense_kernel_initializer(init_seed: int, layer: int) -> Any:
    """The seeded initializer of Dense layer `layer` (the output layer is number `layers`)."""
    import keras
    return keras.initializers.GlorotUniform(seed=layer_seed(init_seed, layer))


def dense_initial_weights(input_dim: int, n_classes: int, init_seed: int, units: int = 64,
                          layers: int = 1, **_: Any) -> list[Any]:
    """[kernel, bias] of every Dense layer as numpy arrays: the values `build_dense` starts from."""
    import numpy as np
    dims = [input_dim] + [units] * layers + [n_classes]
    out: list[Any] = []
    for i in range(layers + 1):
        kernel = dense_kernel_initializer(init_seed, i)((dims[i], dims[i + 1]), dtype="float32")
        out += [np.asarray(kernel), np.zeros(dims[i + 1], np.float32)]
    return out


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
                units: int = 64, layers: int = 1, activation: str = "relu", dropout: float = 0.0) -> Any:
    """Flatten -> `layers` x [Dense(units, activation) (+ Dropout)] -> Dense(n_classes, softmax).

    Every kernel initializer is seeded explicitly from the init seed (Keras's defaults draw from
    Python's `random`); dropout is seeded from the noise seed.
    """
    import keras

    stack: list[Any] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    for i in range(layers):
        stack.append(keras.layers.Dense(units, activation=activation,
                                        kernel_initializer=dense_kernel_initializer(init_seed, i)))
        if dropout > 0:
            stack.append(keras.layers.Dropout(dropout, seed=layer_seed(noise_seed, i)))
    stack.append(keras.layers.Dense(n_classes, activation="softmax",
                                    kernel_initializer=dense_kernel_initializer(init_seed, layers)))
    return keras.Sequential(stack)


BUILDERS: dict[str, BuilderInfo] = {
    "dense": BuilderInfo(params={"units": int, "layers": int, "activation": str, "dropout": float},
                         defaults={"units": 64, "layers": 1, "activation": "relu", "dropout": 0.0},
                         choices={"activation": ACTIVATIONS}, build=build_dense, reset=reset_dense),
}
