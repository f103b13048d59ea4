"""The trainer: a configuration plus its seeds in, held-out metrics out. It loads each dataset once
per split seed, splits a configuration into training values and model arguments, and hands them
to its engine (harness/training/engines/), which the driver chose once with `engines.resolve`."""

from __future__ import annotations

from typing import Any

from harness.job.spec import TRAINING_FIELDS, JobSpec
from harness.training import data as data_mod
from harness.training.determinism import backend_name
from harness.training.engines import make_engine, resolve
from harness.training.metrics import Metrics, TrainingFailed, held_out_metrics
from harness.training.models import BUILDERS


class Trainer:
    """Trains configurations of one job with one engine; datasets are loaded once per split seed."""

    def __init__(self, spec: JobSpec, engine: str | None = None) -> None:
        """`engine`: the label `engines.resolve` gave in the driver (None: resolve it here)."""
        self.spec = spec
        self.backend = backend_name()
        self._data: dict[int, data_mod.Dataset] = {}
        label = engine or resolve(spec.training.engine, self.backend, spec.model.builder, spec.training.xla)
        self.engine = make_engine(label, BUILDERS[spec.model.builder], spec.training.loss, self.backend)

    def dataset(self, split_seed: int) -> data_mod.Dataset:
        if split_seed not in self._data:
            self._data[split_seed] = data_mod.load(self.spec.data, split_seed, self.spec.path)
        return self._data[split_seed]

    def settings(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(training values, model args) for one configuration."""
        spec = self.spec
        training = {**spec.training.fixed, **{k: v for k, v in config.items() if k in TRAINING_FIELDS}}
        info = BUILDERS[spec.model.builder]
        model_args = {**info.defaults, **spec.model.args,
                      **{k: v for k, v in config.items() if k in info.params}}
        return training, model_args

    def train(self, config: dict[str, Any], seeds: dict[str, int]) -> Metrics:
        """One training of `config` with seeds init, order, split and noise."""
        ds = self.dataset(seeds["split"])
        training, model_args = self.settings(config)
        return held_out_metrics(self.engine.train(ds, training, model_args, seeds), ds.y_test, ds.n_classes)

    def train_many(self, config: dict[str, Any], seeds: list[dict[str, int]]) -> list[Metrics | Exception]:
        """Trainings of `config`, one per seed dict (together where the engine is batched); a
        training that diverged is its `TrainingFailed` in the list."""
        if not self.engine.batched:
            return [self._guarded(lambda s=s: self.train(config, s)) for s in seeds]
        training, model_args = self.settings(config)
        results: dict[int, Metrics | Exception] = {}
        for split in sorted({s["split"] for s in seeds}):  # one dataset per run
            pos = [i for i, s in enumerate(seeds) if s["split"] == split]
            ds = self.dataset(split)
            probs = self.engine.train_many(ds, training, model_args, [seeds[i] for i in pos])
            for i, p in zip(pos, probs, strict=True):
                results[i] = self._guarded(lambda p=p, ds=ds: held_out_metrics(p, ds.y_test, ds.n_classes))
        return [results[i] for i in range(len(seeds))]

    @staticmethod
    def _guarded(train: Any) -> Metrics | Exception:
        try:
            return train()
        except TrainingFailed as exc:
            return exc

    def test_size(self, split_seed: int) -> int:
        """Examples in the held-out split of this split seed (recorded with every result)."""
        return len(self.dataset(split_seed).y_test)
