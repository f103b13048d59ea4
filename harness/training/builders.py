"""Model builders from the user's own files: `model.builder: "package.module:function"`.

Two calling conventions, told apart by the function's signature: the harness's
`build(hp: dict, input_shape, n_classes) -> keras.Model` and KerasTuner's `build_model(hp)`, where
`hp` (an `HP` here; keras-tuner is not needed) answers hp.Int / Float / Choice / Boolean / Fixed
with the configuration's values and records each call (harness/job/usermodel.py turns the calls
into a search space).

Seeds: the function runs under `keras.utils.set_random_seed(init seed)`, so every unseeded
initializer draws from the init stream. Every SeedGenerator the model's layers took at build
time with no seed of their own (Dropout, GaussianNoise, random augmentation) then gets its state
from the noise stream, and the global seeds are set to the noise seed before training: noise does
not move with init. A SeedGenerator the model's code seeded itself moves with neither stream; it
is listed in `Seeding.fixed` (recorded, reported) rather than claimed separated.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.job.seeds import layer_seed

REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
HARNESS, KERASTUNER = "harness", "kerastuner"


def is_ref(text: str) -> bool:
    """Whether a builder name is a "package.module:function" reference."""
    return bool(REF.match(text))


def import_function(ref: str, search_path: tuple[str, ...], where: dict[str, Any]) -> Callable[..., Any]:
    """The function `ref` names, its module imported from `search_path` (the job file's directory,
    the working directory) or PYTHONPATH; a failure is one UserError naming module and error."""
    module, _, name = ref.partition(":")
    _quiet_backend_start()
    for d in reversed(search_path):
        if d not in sys.path:
            sys.path.insert(0, d)
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # the user's module: any error it raises is theirs
        raise UserError(f"cannot import module '{module}' of model builder {ref} "
                        f"({type(exc).__name__}: {exc}); searched {', '.join(search_path)} and PYTHONPATH",
                        **where) from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise UserError(f"module '{module}' ({getattr(mod, '__file__', '?')}) has no function '{name}'", **where)
    return fn


def _quiet_backend_start() -> None:
    """Start TensorFlow (which the user's module will import) with its C++ start-up lines (oneDNN,
    CUDA probes), which no log level silences, sent to /dev/null: a driver importing a user's
    builder would otherwise print them across the terminal. Workers log them instead."""
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def source_digest(ref: str) -> str | None:
    """sha256 of the builder's module file (already imported): editing the model moves the store."""
    mod = sys.modules.get(ref.partition(":")[0])
    path = getattr(mod, "__file__", None)
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def convention(fn: Callable[..., Any], ref: str, where: dict[str, Any]) -> str:
    """`harness` for build(hp, input_shape, n_classes), `kerastuner` for build_model(hp)."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in params if p.default is p.empty]
    if len(required) == 3 or [p.name for p in params[:3]] == ["hp", "input_shape", "n_classes"]:
        return HARNESS
    if len(required) == 1 or (len(params) == 1 and params[0].name == "hp"):
        return KERASTUNER
    raise UserError(f"model builder {ref}{inspect.signature(fn)} has the wrong signature: expected "
                    f"build(hp, input_shape, n_classes) or KerasTuner's build_model(hp)", **where)


@dataclass
class HP:
    """KerasTuner's `hp` for one configuration: each hp.* call answers the configuration's value
    for its name (its default when the configuration has none) and is recorded."""

    values: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def _answer(self, name: str, kind: str, args: dict[str, Any], default: Any) -> Any:
        self.calls.setdefault(name, (kind, args))
        return self.values.get(name, default)

    def Int(self, name: str, min_value: int, max_value: int, step: int | None = None,  # noqa: N802
            sampling: str = "linear", default: int | None = None, **_: Any) -> int:
        v = self._answer(name, "int", dict(min_value=min_value, max_value=max_value, step=step,
                                           sampling=sampling), min_value if default is None else default)
        return int(min(max(int(round(float(v))), min_value), max_value))

    def Float(self, name: str, min_value: float, max_value: float, step: float | None = None,  # noqa: N802
              sampling: str = "linear", default: float | None = None, **_: Any) -> float:
        v = self._answer(name, "float", dict(min_value=min_value, max_value=max_value, step=step,
                                             sampling=sampling), min_value if default is None else default)
        return float(min(max(float(v), min_value), max_value))

    def Choice(self, name: str, values: list[Any], ordered: bool | None = None,  # noqa: N802
               default: Any = None, **_: Any) -> Any:
        return self._answer(name, "choice", dict(values=list(values)), values[0] if default is None else default)

    def Boolean(self, name: str, default: bool = False, **_: Any) -> bool:  # noqa: N802
        return bool(self._answer(name, "boolean", {}, default))

    def Fixed(self, name: str, value: Any, **_: Any) -> Any:  # noqa: N802
        self.calls.setdefault(name, ("fixed", dict(value=value)))
        return value

    def get(self, name: str) -> Any:
        return self.values[name]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @contextlib.contextmanager
    def conditional_scope(self, *_: Any, **__: Any) -> Iterator[None]:
        yield


def call_builder(fn: Callable[..., Any], conv: str, hp: dict[str, Any], input_shape: tuple[int, ...],
                 n_classes: int, record: HP | None = None) -> Any:
    """The user's function called in its convention (`record`: the HP to answer with)."""
    if conv == KERASTUNER:
        return fn(record if record is not None else HP(dict(hp)))
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


_BACKEND_SEED = contextvars.ContextVar("backend_seed", default=True)


@contextlib.contextmanager
def backend_seed_untouched() -> Iterator[None]:
    """Builds inside leave TensorFlow's global seed as it is (engine exact's throwaway builds):
    setting it makes every traced function re-instantiate (~0.2 s a training here), and a model
    that draws its randomness through Keras (initializers, SeedGenerators) never reads it."""
    token = _BACKEND_SEED.set(False)
    try:
        yield
    finally:
        _BACKEND_SEED.reset(token)


def set_seeds(seed: int) -> None:
    """keras.utils.set_random_seed (Python, numpy, Keras's global SeedGenerator, the backend), the
    backend's global seed left alone inside `backend_seed_untouched`."""
    import keras
    if _BACKEND_SEED.get():
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


def seeded_build(build: Callable[[], Any], init_seed: int, noise_seed: int) -> tuple[Any, Seeding]:
    """Build under the init seed, reseed build-time SeedGenerators from the noise stream, then set
    the global seeds to the noise seed (what training draws unseeded)."""
    set_seeds(init_seed)
    model = build()
    seeding = reseed_noise(model, noise_seed)
    set_seeds(noise_seed)
    return model, seeding
