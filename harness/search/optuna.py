"""Optuna's samplers behind the ask/tell protocol (harness/search/base.py).

`OptunaSearch` asks an in-memory study for a trial with the job's distributions fixed in the
space's order, which samples them as an objective calling `trial.suggest_*` in that order under
`study.optimize` would, and tells it the loss (or FAIL). The sampler's random state lives only in
this process (Optuna does not store it with a study), so a retried study unit restarts its chain.
"""

from __future__ import annotations

import math
from typing import Any

from harness.job.algorithms import effective_options
from harness.job.spec import Dimension, SearchSpec, cast_value
from harness.search.base import library_seed


def optuna_space(space: tuple[Dimension, ...]) -> dict[str, Any]:
    """The job's space as Optuna distributions, in the space's order."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    out: dict[str, Any] = {}
    for d in space:
        a = d.args
        if d.kind == "choice":
            out[d.name] = CategoricalDistribution(list(a))
        elif d.kind == "uniform":
            out[d.name] = FloatDistribution(a[0], a[1])
        elif d.kind == "loguniform":
            out[d.name] = FloatDistribution(math.exp(a[0]), math.exp(a[1]), log=True)
        elif d.kind == "quniform" and d.integral:
            out[d.name] = IntDistribution(int(a[0]), int(a[1]), step=int(a[2]))
        elif d.kind == "quniform":
            out[d.name] = FloatDistribution(a[0], a[1], step=a[2])
        elif d.kind == "qloguniform":
            out[d.name] = IntDistribution(round(math.exp(a[0])), round(math.exp(a[1])), log=True)
        else:  # randint: low inclusive, high exclusive
            out[d.name] = IntDistribution(a[0], a[1] - 1)
    return out


def optuna_sampler(spec: SearchSpec, name: str, seed: int) -> Any:
    """The sampler a study for algorithm `name` would be created with."""
    import optuna
    if name == "optuna.random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, **effective_options(spec, name))


class OptunaSearch:
    """One Optuna chain driven from outside, seeded from the bo stream."""

    def __init__(self, spec: SearchSpec, name: str, seed: int) -> None:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial
        self.spec = spec
        self.library_seed = library_seed(seed, "optuna")
        self.study = optuna.create_study(direction="minimize", sampler=optuna_sampler(spec, name, self.library_seed))
        self.distributions = optuna_space(spec.space)
        self._trial: Any = None

    def ask(self) -> dict[str, Any]:
        assert self._trial is None, "tell() the previous configuration first"
        self._trial = self.study.ask(self.distributions)
        return {d.name: cast_value(d, self._trial.params[d.name]) for d in self.spec.space}

    def tell(self, loss: float | None) -> None:
        from optuna.trial import TrialState
        trial, self._trial = self._trial, None
        assert trial is not None, "ask() first"
        if loss is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, loss)
