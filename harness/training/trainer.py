"""The trainer: a configuration plus its seeds in, held-out metrics out. It loads each dataset once
per split seed, splits a configuration into training values and model arguments, and hands them
to its engine (harness/training/engines/), which the driver chose once with `engines.resolve`."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.job.spec import METRICS, TRAINING_FIELDS, JobSpec
from harness.training import data as data_mod
from harness.training.determinism import backend_name
from harness.training.engines import make_engine, resolve
from harness.training.engines.base import Trained
from harness.training.metrics import Metrics, Split, TrainingFailed, split_metrics
from harness.training.models import BuilderInfo, builder_info


class Trainer:
    """Trains configurations of one job with one engine; datasets are loaded once per split seed."""

    def __init__(self, spec: JobSpec, engine: str | None = None) -> None:
        """`engine`: the label `engines.resolve` gave in the driver (None: resolve it here)."""
        self.spec = spec
        self.backend = backend_name()
        self._data: dict[int, data_mod.Dataset] = {}
        label = engine or resolve(spec.training.engine, self.backend, spec.training.xla)
        self.info = builder_info(spec.model.builder, spec.model.search_path, spec.path)
        report = () if spec.objective_metric in METRICS else (spec.objective_metric,)
        self.engine = make_engine(label, self.info, spec.training.loss, self.backend, report)

    def dataset(self, split_seed: int) -> data_mod.Dataset:
        if split_seed not in self._data:
            self._data[split_seed] = data_mod.load(self.spec.data, split_seed, self.spec.path)
        return self._data[split_seed]

    def settings(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(training values, model args) for one configuration. A user's builder gets every
        configuration value (a hypermodel may ask for `learning_rate` itself)."""
        spec, info = self.spec, self.info
        training = {**spec.training.fixed, **{k: v for k, v in config.items() if k in TRAINING_FIELDS}}
        return training, model_args(spec, info, config)

    @staticmethod
    def metrics(done: Trained, ds: data_mod.Dataset) -> Metrics:
        """A training's outputs on `ds.x_eval` (validation, then test) as metrics of each split, with
        what the noise stream reached in its model."""
        out, reported = done.outputs, done.reported
        test = Split(out[ds.n_val:], ds.y_test, reported.get("test", {}))
        val = None if ds.y_val is None else Split(out[:ds.n_val], ds.y_val, reported.get("validation", {}))
        return dataclasses.replace(split_metrics(test, val, ds.n_classes), noise_seeding=done.noise_seeding)

    def train(self, config: dict[str, Any], seeds: dict[str, int]) -> Metrics:
        """One training of `config` with seeds init, order, split and noise."""
        ds = self.dataset(seeds["split"])
        training, model_args = self.settings(config)
        return self.metrics(self.engine.train(ds, training, model_args, seeds), ds)

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
            done = self.engine.train_many(ds, training, model_args, [seeds[i] for i in pos])
            for i, p in zip(pos, done, strict=True):
                results[i] = self._guarded(lambda p=p, ds=ds: self.metrics(p, ds))
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


def model_args(spec: JobSpec, info: BuilderInfo, config: dict[str, Any]) -> dict[str, Any]:
    """The builder's arguments for one configuration: its defaults, the job's fixed `model.args`,
    then the configuration's values the builder takes (a user's builder takes every one)."""
    return {**info.defaults, **spec.model.args,
            **{k: v for k, v in config.items() if info.open_params or k in info.params}}
