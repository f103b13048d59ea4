"""Keras Tuner's oracles behind the ask/tell protocol (harness/search/base.py).

`KerasTunerSearch` drives `BayesianOptimizationOracle` or `RandomSearchOracle` exactly as a
`keras_tuner.Tuner.search` loop does: `create_trial` (ask), then `update_trial` with the loss and
`end_trial` with the trial COMPLETED or FAILED (tell). The oracle writes its trial files into a
temporary project directory, removed with the search; its console display is off. The oracle's
`set_state` does not restore its random state, so a study unit that is retried restarts its chain
from the first trial, as every study unit does.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from typing import Any

from harness.job.algorithms import effective_options
from harness.job.spec import Dimension, SearchSpec, cast_value
from harness.search.base import library_seed

OBJECTIVE = "loss"  # the harness tells losses (minimised)


def keras_tuner_space(space: tuple[Dimension, ...]) -> Any:
    """The job's space as Keras Tuner hyperparameters (terms it cannot express are refused at load)."""
    import keras_tuner as kt
    hp = kt.HyperParameters()
    for d in space:
        a = d.args
        if d.kind == "choice":
            hp.Choice(d.name, list(a))
        elif d.kind == "uniform":
            hp.Float(d.name, a[0], a[1])
        elif d.kind == "loguniform":
            hp.Float(d.name, math.exp(a[0]), math.exp(a[1]), sampling="log")
        elif d.kind == "quniform" and d.integral:
            hp.Int(d.name, int(a[0]), int(a[1]), step=int(a[2]))
        elif d.kind == "quniform":
            hp.Float(d.name, a[0], a[1], step=a[2])
        elif d.kind == "qloguniform":
            hp.Int(d.name, round(math.exp(a[0])), round(math.exp(a[1])), sampling="log")
        else:  # randint: low inclusive, high exclusive
            hp.Int(d.name, a[0], a[1] - 1)
    return hp


def keras_tuner_oracle(spec: SearchSpec, name: str, seed: int) -> Any:
    """The oracle a Tuner for algorithm `name` would be given, seeded with `seed` (never 0)."""
    import keras_tuner as kt
    common = {"objective": kt.Objective(OBJECTIVE, direction="min"), "max_trials": spec.max_evals, "seed": seed,
              "hyperparameters": keras_tuner_space(spec.space),
              "max_consecutive_failed_trials": spec.max_evals + 1}  # failed trials are the harness's to judge
    if name == "keras_tuner.random":
        return kt.oracles.RandomSearchOracle(**common)
    return kt.oracles.BayesianOptimizationOracle(**common, **effective_options(spec, name))


class KerasTunerSearch:
    """One Keras Tuner chain driven from outside, seeded from the bo stream."""

    def __init__(self, spec: SearchSpec, name: str, seed: int) -> None:
        self.spec = spec
        self.library_seed = library_seed(seed, "keras_tuner")
        self._dir = tempfile.TemporaryDirectory(prefix="harness-keras-tuner-")
        self.oracle = keras_tuner_oracle(spec, name, self.library_seed)
        self.oracle._set_project_dir(self._dir.name, "chain")
        self.oracle.verbose = 0
        self._trial: Any = None

    def ask(self) -> dict[str, Any] | None:
        from keras_tuner.engine.trial import TrialStatus
        assert self._trial is None, "tell() the previous configuration first"
        with warnings.catch_warnings():  # the GP's fit warns at length scales near their bounds
            warnings.filterwarnings("ignore", module="sklearn.gaussian_process")
            trial = self.oracle.create_trial("harness")
        if trial.status != TrialStatus.RUNNING:  # STOPPED: no new configuration left to try
            return None
        self._trial = trial
        return {d.name: cast_value(d, trial.hyperparameters.values[d.name]) for d in self.spec.space}

    def tell(self, loss: float | None) -> None:
        from keras_tuner.engine.trial import TrialStatus
        trial, self._trial = self._trial, None
        assert trial is not None, "ask() first"
        if loss is None:
            trial.status = TrialStatus.FAILED
        else:
            self.oracle.update_trial(trial.trial_id, {OBJECTIVE: loss})
            trial.status = TrialStatus.COMPLETED
        self.oracle.end_trial(trial)
