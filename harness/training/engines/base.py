"""The engine contract and what every engine shares: the held-out metrics, the harness's batch
order, compiling a model as `fit` does, and backend tensors of a dataset.

An engine turns (dataset, training values, model arguments, seeds) into test-set probabilities;
`Trainer` turns those into metrics. Engines never pick seeds or read the job file.
"""

from __future__ import annotations

import dataclasses
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from harness.training.data import Dataset
from harness.training.models import BuilderInfo

ENGINE_CACHE = 8  # built models (exact) or compiled functions (vectorized) kept per worker
_NOTICED: set[str] = set()


def notice(text: str) -> None:
    """A one-line notice on stderr, once per process."""
    if text not in _NOTICED:
        _NOTICED.add(text)
        print(f"harness: {text}", file=sys.stderr)


@dataclass(frozen=True)
class Trained:
    """What one training gave: the model's outputs on `ds.x_eval` (validation then test examples),
    what the noise stream reached in the model (`models.Built.noise_seeding`), and the metrics only the
    compiled model reports, per split ("test", "validation")."""

    outputs: np.ndarray
    noise_seeding: dict[str, Any] | None = None
    reported: dict[str, dict[str, float]] = field(default_factory=dict)


class Engine(ABC):
    """One way of training. `train` runs one training; `train_many` runs several of one
    configuration (together where `batched`, else one by one). Both return what they did
    (`Trained`); a training that diverges raises (or, in `train_many`, yields) `TrainingFailed`
    from the metrics, not here. `report`: metrics only the compiled model reports, evaluated by
    Keras after each training."""

    name: ClassVar[str]
    batched: ClassVar[bool] = False  # trains a batch's seeds together (the worker hands it whole batches)

    def __init__(self, builder: BuilderInfo, loss: str, backend: str, xla: bool = False,
                 report: tuple[str, ...] = ()) -> None:
        self.builder, self.loss, self.backend, self.xla, self.report = builder, loss, backend, xla, report

    @property
    def label(self) -> str:
        """What records say ran: the engine's name, `+xla` when XLA compiles it."""
        return self.name + ("+xla" if self.xla else "")

    @abstractmethod
    def train(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
              seeds: dict[str, int]) -> Trained:
        """One training."""

    def train_many(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
                   seeds: list[dict[str, int]]) -> list[Trained]:
        """Trainings of one configuration, one per seed dict."""
        return [self.train(ds, training, model_args, s) for s in seeds]


def epoch_batches(n: int, batch_size: int, epochs: int, order_seed: int) -> list[np.ndarray]:
    """Index batches of every epoch in training order: one permutation of the training set per
    epoch from the order seed (the harness shuffles, not Keras), the last batch of an epoch short.

    One `fit` over these batches gives the same bits as one `fit(shuffle=False)` per epoch."""
    rng = np.random.default_rng(order_seed)
    out: list[np.ndarray] = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        out.extend(perm[i:i + batch_size] for i in range(0, n, batch_size))
    return out


def make_optimizer(name: str, learning_rate: float) -> Any:
    import keras
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    return keras.optimizers.RMSprop(learning_rate=learning_rate)


def compile_model(model: Any, training: dict[str, Any], loss: str, backend: str) -> None:
    """`model.compile` as engine `fit` does it. Under TensorFlow jit_compile is pinned off: Keras's
    "auto" turns XLA on for GPUs only when op determinism is off, which would mix XLA into the
    determinism comparison (XLA is `training.xla`). Under jax "auto" is jax.jit (off would run
    op by op, ~20x slower). A model its builder compiled keeps its optimizer, loss and metrics;
    only that pin applies to it."""
    if getattr(model, "compiled", False):
        if backend == "tensorflow":
            model.jit_compile = False
        return
    model.compile(optimizer=make_optimizer(training["optimizer"], training["learning_rate"]), loss=loss,
                  jit_compile=False if backend == "tensorflow" else "auto")


def wants_one_hot(model: Any) -> bool:
    """Whether the model's compiled loss takes one-hot targets (`categorical_crossentropy` and its
    kin, as KerasTuner's guide compiles; not their `sparse_` forms, which take class ids)."""
    loss = getattr(model, "loss", None)
    name = str(getattr(loss, "name", None) or getattr(loss, "__name__", None) or loss or "").lower()
    return "categorical" in name and "sparse" not in name


_ONE_HOT: dict[int, tuple[Dataset, Dataset]] = {}


def fit_targets(model: Any, ds: Dataset) -> Dataset:
    """`ds` with its targets as the model's loss takes them: class ids (as stored), or one-hot
    float32 rows for a categorical loss (made once per dataset). Metrics always read the ids."""
    if not ds.n_classes or not wants_one_hot(model):
        return ds
    hit = _ONE_HOT.get(id(ds))
    if hit is None or hit[0] is not ds:
        eye = np.eye(ds.n_classes, dtype=np.float32)
        hit = (ds, dataclasses.replace(ds, y_train=eye[ds.y_train], y_test=eye[ds.y_test],
                                       y_val=None if ds.y_val is None else eye[ds.y_val]))
        _ONE_HOT[id(ds)] = hit
    return hit[1]


def fit_batches(model: Any, ds: Dataset, training: dict[str, Any], order_seed: int) -> None:
    """One `model.fit` over every epoch's batches in the harness's order (no Keras shuffling)."""
    ds = fit_targets(model, ds)
    batches = epoch_batches(len(ds.y_train), int(training["batch_size"]), int(training["epochs"]), order_seed)
    model.fit(((ds.x_train[idx], ds.y_train[idx]) for idx in batches), steps_per_epoch=len(batches),
              epochs=1, shuffle=False, verbose=0)


def batch_plan(n: int, batch_size: int, epochs: int, order_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`trainer.epoch_batches` as arrays: full batches [epochs, n // batch_size, batch_size] and
    each epoch's short last batch [epochs, n % batch_size], in training order."""
    batches = epoch_batches(n, batch_size, epochs, order_seed)
    full = np.array([b for b in batches if len(b) == batch_size], np.int32)
    short = np.array([b for b in batches if len(b) < batch_size], np.int32)
    return (full.reshape(epochs, n // batch_size, batch_size),
            short.reshape(epochs, n % batch_size))


def predict(model: Any, ds: Dataset) -> np.ndarray:
    """The model's outputs on the evaluated examples (validation then test), as numpy."""
    import keras
    return keras.ops.convert_to_numpy(model(ds.x_eval, training=False))


def trained(engine: Engine, model: Any, ds: Dataset, seeding: dict[str, Any] | None) -> Trained:
    """After a training: the model's outputs on `ds.x_eval`, and the metrics only the compiled model
    reports (`engine.report`, evaluated by Keras on each split)."""
    reported = {}
    targets = fit_targets(model, ds)
    for split, x, y in (("validation", targets.x_val, targets.y_val), ("test", targets.x_test, targets.y_test)):
        if engine.report and x is not None:
            res = model.evaluate(x, y, verbose=0, return_dict=True)
            reported[split] = {n: float(res[n]) for n in engine.report}
    return Trained(predict(model, ds), seeding, reported)


class Tensors:
    """Each dataset's (x_train, y_train, x_eval) as backend tensors, converted once; `flat`
    flattens the inputs to [n, features] (what Keras's Flatten does)."""

    def __init__(self, flat: bool = False) -> None:
        self.flat = flat
        self._by_id: dict[int, tuple[Dataset, tuple[Any, ...]]] = {}

    def get(self, ds: Dataset) -> tuple[Any, ...]:
        import keras
        if id(ds) not in self._by_id:
            x, x_test = ds.x_train, ds.x_eval
            if self.flat:
                x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
            self._by_id[id(ds)] = (ds, tuple(keras.ops.convert_to_tensor(a) for a in (x, ds.y_train, x_test)))
        return self._by_id[id(ds)][1]


