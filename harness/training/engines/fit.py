"""Engine `fit`, the reference: a fresh Keras model per training, explicitly seeded
initializers, the harness's own per-epoch permutation, one `model.fit` over all epochs' batches."""

from __future__ import annotations

import importlib.util
from typing import Any

from harness.training.bitflip import flip_model
from harness.training.data import Dataset
from harness.training.engines.base import Engine, Trained, compile_model, fit_batches, trained
from harness.training.models import BuilderInfo


class FitEngine(Engine):
    """A fresh model per training through Keras's own `fit`: what every other engine must match."""

    name = "fit"

    def __init__(self, builder: BuilderInfo, loss: str, backend: str, xla: bool = False,
                 report: tuple[str, ...] = ()) -> None:
        super().__init__(builder, loss, backend, xla, report)
        if backend != "tensorflow" and importlib.util.find_spec("tensorflow"):
            import tensorflow  # noqa: F401  keras.utils.set_random_seed imports it whatever the backend:
            # now, while a local worker's start-up lines go to its log, not at its first training

    def train(self, ds: Dataset, training: dict[str, Any], model_args: dict[str, Any],
              seeds: dict[str, int]) -> Trained:
        import keras

        keras.utils.set_random_seed(seeds["noise"])
        assert self.builder.build is not None
        built = self.builder.build(ds.x_train.shape[1:], ds.n_classes, seeds["init"], seeds["noise"], **model_args)
        flip_model(built.model, seeds.get("bitflip", 0))
        compile_model(built.model, training, self.loss, self.backend)
        fit_batches(built.model, ds, training, seeds["order"])
        return trained(self, built.model, ds, built.noise_seeding)
