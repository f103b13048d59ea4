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


def layer_seed(init_seed: int, layer: int) -> int:
    """The initializer seed of one layer, derived from the unit's init seed."""
    import numpy as np
    return int(np.random.SeedSequence([init_seed, layer]).generate_state(1)[0] & 0x7FFFFFFF)


def build_dense(input_shape: tuple[int, ...], n_classes: int, init_seed: int, noise_seed: int,
                units: int = 64, layers: int = 1, activation: str = "relu", dropout: float = 0.0) -> Any:
    """Flatten -> `layers` x [Dense(units, activation) (+ Dropout)] -> Dense(n_classes, softmax).

    Every kernel initializer is seeded explicitly from the init seed (Keras's defaults draw from
    Python's `random`); dropout is seeded from the noise seed.
    """
    import keras

    stack: list[Any] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    for i in range(layers):
        stack.append(keras.layers.Dense(
            units, activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(init_seed, i))))
        if dropout > 0:
            stack.append(keras.layers.Dropout(dropout, seed=layer_seed(noise_seed, i)))
    stack.append(keras.layers.Dense(
        n_classes, activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(init_seed, layers))))
    return keras.Sequential(stack)


BUILDERS: dict[str, BuilderInfo] = {
    "dense": BuilderInfo(params={"units": int, "layers": int, "activation": str, "dropout": float},
                         defaults={"units": 64, "layers": 1, "activation": "relu", "dropout": 0.0},
                         choices={"activation": ACTIVATIONS}, build=build_dense),
}
