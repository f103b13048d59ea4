"""Building and seeding a model from the user's own builder (`model.builder:
"package.module:function"`, resolved and checked by harness/job/usercode.py): the function called in
its convention, the harness's `build(hp: dict, input_shape, n_classes) -> keras.Model` or
KerasTuner's `build_model(hp)`.

Seeds: the function runs under `keras.utils.set_random_seed(init seed)`, so every unseeded
initializer draws from the init stream. Every SeedGenerator the model's layers took at build
time with no seed of their own (Dropout, GaussianNoise, random augmentation) then gets its state
from the noise stream, and the global seeds are set to the noise seed before training: noise does
not move with init. A SeedGenerator the model's code seeded itself moves with neither stream; it
is listed in `Seeding.fixed` (recorded, reported) rather than claimed separated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.job.seeds import layer_seed
from harness.job.usercode import KERASTUNER, hyperparameters


def call_builder(fn: Callable[..., Any], conv: str, hp: dict[str, Any], input_shape: tuple[int, ...],
                 n_classes: int) -> Any:
    """The user's function called in its convention (a hypermodel: with KerasTuner's own
    `HyperParameters` answering the configuration's values as given)."""
    if conv == KERASTUNER:
        return fn(hyperparameters(hp))
    return fn(dict(hp), tuple(input_shape), n_classes)


@dataclass(frozen=True)
class Seeding:
    """What the noise stream reaches in a built model: layers whose SeedGenerators were reseeded
    from it, and layers whose SeedGenerators the model's code seeded (moved by neither seed)."""

    reseeded: tuple[str, ...]
    fixed: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"reseeded": list(self.reseeded), "fixed": list(self.fixed)}


def seed_generators(model: Any) -> list[tuple[str, Any]]:
    """(label, SeedGenerator) of every layer of the model, in layer order; the label is the layer's
    class and position ("Dropout@5"): Keras's own layer names change with every model built."""
    out = []
    for i, layer in enumerate(model._flatten_layers(include_self=True, recursive=True)):
        out += [(f"{type(layer).__name__}@{i}", sg) for sg in getattr(layer, "_seed_generators", [])]
    return out


def reseed_noise(model: Any, noise_seed: int) -> Seeding:
    """Give every SeedGenerator taken at build time without a seed of its own the noise stream's
    state (the i-th: a seed derived from (noise seed, i)); list those the model's code seeded."""
    import numpy as np
    reseeded, fixed = [], []
    for i, (name, sg) in enumerate(seed_generators(model)):
        if getattr(sg, "_initial_seed", None) is not None:
            fixed.append(name)
            continue
        seed = layer_seed(noise_seed, i)
        sg.state.assign(np.array([seed, 0], dtype=sg.state.dtype))
        reseeded.append(name)
    return Seeding(tuple(reseeded), tuple(fixed))


def set_seeds(seed: int, backend: bool = True) -> None:
    """keras.utils.set_random_seed (Python, numpy, Keras's global SeedGenerator, the backend); with
    `backend` False the backend's global seed is left as it is (engine exact's throwaway builds):
    setting it makes every traced function re-instantiate (~0.2 s a training here), and a model
    that draws its randomness through Keras (initializers, SeedGenerators) never reads it."""
    import keras
    if backend:
        keras.utils.set_random_seed(seed)
        return
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def seeded_build(build: Callable[[], Any], init_seed: int, noise_seed: int,
                 backend_seed: bool = True) -> tuple[Any, Seeding]:
    """Build under the init seed, reseed build-time SeedGenerators from the noise stream, then set
    the global seeds to the noise seed (what training draws unseeded); `backend_seed`: whether the
    backend's global seed is set too (`set_seeds`)."""
    set_seeds(init_seed, backend_seed)
    model = build()
    seeding = reseed_noise(model, noise_seed)
    set_seeds(noise_seed, backend_seed)
    return model, seeding
