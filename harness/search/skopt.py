"""scikit-optimize's Gaussian-process optimiser behind the ask/tell protocol (harness/search/base.py).

`SkoptSearch` builds the `Optimizer` exactly as `skopt.gp_minimize(random_state=library_seed)` does
(the same GP estimator drawn from the same generator, the same acquisition settings) and steps it as
gp_minimize's loop does. scikit-optimize has no failed state: a failed trial is told the loss 0.0,
the worst a harness loss (minus an accuracy) can be.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from harness.job.algorithms import effective_options
from harness.job.spec import Dimension, SearchSpec, cast_value
from harness.search.base import library_seed, python_value

FAILED_LOSS = 0.0
GP_MINIMIZE_DEFAULTS = {"acq_func": "gp_hedge", "acq_optimizer": "auto", "xi": 0.01, "kappa": 1.96,
                        "n_points": 10000, "n_restarts_optimizer": 5, "noise": "gaussian"}


def skopt_space(space: tuple[Dimension, ...]) -> list[Any]:
    """The job's space as scikit-optimize dimensions; quniform becomes an Integer of steps (k -> k q)."""
    from skopt.space import Categorical, Integer, Real
    out: list[Any] = []
    for d in space:
        a = d.args
        if d.kind == "choice":
            out.append(Categorical(list(a), name=d.name))
        elif d.kind == "uniform":
            out.append(Real(a[0], a[1], name=d.name))
        elif d.kind == "loguniform":
            out.append(Real(math.exp(a[0]), math.exp(a[1]), prior="log-uniform", name=d.name))
        elif d.kind == "quniform":
            out.append(Integer(round(a[0] / a[2]), round(a[1] / a[2]), name=d.name))
        elif d.kind == "qloguniform":
            out.append(Integer(round(math.exp(a[0])), round(math.exp(a[1])), prior="log-uniform", name=d.name))
        else:  # randint: low inclusive, high exclusive
            out.append(Integer(a[0], a[1] - 1, name=d.name))
    return out


def skopt_value(d: Dimension, x: Any) -> Any:
    """A proposed coordinate as the harness's value of `d`."""
    x = python_value(x)
    return cast_value(d, x * d.args[2]) if d.kind == "quniform" else cast_value(d, x)


def gp_minimize_kwargs(spec: SearchSpec, name: str) -> dict[str, Any]:
    """gp_minimize's keyword arguments for this search (its defaults, the job's options)."""
    return {**GP_MINIMIZE_DEFAULTS, **effective_options(spec, name)}


def skopt_optimizer(spec: SearchSpec, name: str, seed: int) -> Any:
    """The Optimizer gp_minimize(random_state=seed, **gp_minimize_kwargs) builds and steps."""
    from sklearn.utils import check_random_state
    from skopt import Optimizer
    from skopt.utils import cook_estimator, normalize_dimensions
    kw = gp_minimize_kwargs(spec, name)
    rng = check_random_state(seed)
    space = normalize_dimensions(skopt_space(spec.space))
    estimator = cook_estimator("GP", space=space, random_state=rng.randint(0, np.iinfo(np.int32).max),
                               noise=kw["noise"])
    return Optimizer(space, estimator, n_initial_points=kw["n_initial_points"], initial_point_generator="random",
                     n_jobs=1, acq_func=kw["acq_func"], acq_optimizer=kw["acq_optimizer"], random_state=rng,
                     model_queue_size=None, space_constraint=None,
                     acq_optimizer_kwargs={"n_points": kw["n_points"], "n_jobs": 1,
                                           "n_restarts_optimizer": kw["n_restarts_optimizer"]},
                     acq_func_kwargs={"xi": kw["xi"], "kappa": kw["kappa"]})


class SkoptSearch:
    """One scikit-optimize chain driven from outside, seeded from the bo stream."""

    def __init__(self, spec: SearchSpec, name: str, seed: int) -> None:
        self.spec = spec
        self.library_seed = library_seed(seed, "skopt")
        self.optimizer = skopt_optimizer(spec, name, self.library_seed)
        self._x: list[Any] | None = None

    def ask(self) -> dict[str, Any]:
        assert self._x is None, "tell() the previous configuration first"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
            self._x = self.optimizer.ask()
        return {d.name: skopt_value(d, x) for d, x in zip(self.spec.space, self._x, strict=True)}

    def tell(self, loss: float | None) -> None:
        x, self._x = self._x, None
        assert x is not None, "ask() first"
        with warnings.catch_warnings():  # the GP's fit warns at length scales near their bounds
            warnings.filterwarnings("ignore", module="sklearn.gaussian_process")
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
            self.optimizer.tell(x, FAILED_LOSS if loss is None else loss)
