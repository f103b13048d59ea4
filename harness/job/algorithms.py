"""What each optimiser accepts, known without importing its library: names and aliases, the
pip extra that installs it, its options and their checks, its random-startup option, and the
space terms it cannot express exactly. `harness.job.load` validates a job against this table;
`harness.search` builds the backends from it.

Space terms are hyperopt's (choice, uniform, quniform, loguniform, qloguniform, randint,
normal). A backend maps a term only when the values it can propose are exactly the values
hyperopt's term yields; otherwise the term is refused for that library.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.job.spec import Dimension, SearchSpec


@dataclass(frozen=True)
class Option:
    """One algorithm option: its type ('int', 'float', 'bool' or a tuple of allowed strings)
    and, for numbers, the lowest value allowed."""

    kind: str | tuple[str, ...]
    low: float | None = None


@dataclass(frozen=True)
class Algorithm:
    name: str                      # as a job file names it, e.g. "optuna.tpe"
    library: str                   # import name and the key of LIBRARIES
    options: dict[str, Option] = field(default_factory=dict)
    startup: str | None = None     # the option that counts random-startup trials (model-based only)
    startup_default: int = 0       # ... its library's default count
    startup_per_dimension: int = 0  # ... or, where nonzero, this many per dimension (Keras Tuner: 3)


@dataclass(frozen=True)
class Library:
    module: str                    # import name
    distribution: str              # pip distribution (for the recorded version)
    extra: str | None              # pip extra of this project that installs it; None: core


LIBRARIES = {
    "hyperopt": Library("hyperopt", "hyperopt", None),
    "keras_tuner": Library("keras_tuner", "keras-tuner", None),
    "optuna": Library("optuna", "optuna", "optuna"),
    "skopt": Library("skopt", "scikit-optimize", "skopt"),
}
ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("hyperopt.tpe", "hyperopt", {"n_startup_jobs": Option("int", 1), "n_EI_candidates": Option("int", 1),
                                           "gamma": Option("float", 0.0)}, startup="n_startup_jobs",
              startup_default=20),
    Algorithm("hyperopt.rand", "hyperopt"),
    Algorithm("hyperopt.anneal", "hyperopt", {"avg_best_idx": Option("float", 0.0),
                                              "shrink_coef": Option("float", 0.0)}),
    Algorithm("keras_tuner.bayesian", "keras_tuner", {"num_initial_points": Option("int", 1),
                                                      "alpha": Option("float", 0.0), "beta": Option("float", 0.0)},
              startup="num_initial_points", startup_default=3, startup_per_dimension=3),
    Algorithm("keras_tuner.random", "keras_tuner"),
    Algorithm("optuna.tpe", "optuna", {"n_startup_trials": Option("int", 0), "n_ei_candidates": Option("int", 1),
                                       "multivariate": Option("bool"), "consider_endpoints": Option("bool")},
              startup="n_startup_trials", startup_default=10),
    Algorithm("optuna.random", "optuna"),
    Algorithm("skopt.gp", "skopt", {"n_initial_points": Option("int", 1),
                                    "acq_func": Option(("gp_hedge", "EI", "PI", "LCB")),
                                    "acq_optimizer": Option(("auto", "sampling", "lbfgs")),
                                    "xi": Option("float", 0.0), "kappa": Option("float", 0.0)},
              startup="n_initial_points", startup_default=10),
)}
ALIASES = {"tpe": "hyperopt.tpe", "rand": "hyperopt.rand", "anneal": "hyperopt.anneal"}  # the names before 11
NAMES = tuple(ALIASES) + tuple(ALGORITHMS)


def algorithm(name: str) -> Algorithm:
    """The algorithm a job names (an alias resolves to its full name)."""
    return ALGORITHMS[ALIASES.get(name, name)]


def arm_algorithms(search: SearchSpec) -> tuple[str, ...]:
    """The optimisers a job compares, full names, in the job's order (one when not a factor)."""
    return search.algorithms or (algorithm(search.algorithm).name,)


def startup_count(search: SearchSpec, name: str) -> int | None:
    """The random-startup trials of optimiser `name` (None: it has none, not model-based): the
    job's option for it, else `search.startup_trials`, else its library's own default (Keras
    Tuner: 3 per dimension of the space, at least 3; Optuna and scikit-optimize 10; hyperopt 20)."""
    alg = algorithm(name)
    if alg.startup is None:
        return None
    given = search.options.get(alg.name, {}).get(alg.startup, search.startup_trials)
    if given is not None:
        return int(given)
    return max(alg.startup_per_dimension * len(search.space), alg.startup_default)


def effective_options(search: SearchSpec, name: str) -> dict[str, Any]:
    """The options given to the library, every one explicit (recorded with each chain, so a
    chain replays from its record alone): the job's, with the random-startup count
    (`startup_count`)."""
    alg = algorithm(name)
    opts = dict(search.options.get(alg.name, {}))
    if alg.startup is not None:
        opts[alg.startup] = startup_count(search, name)
    return opts


def missing_library(name: str) -> str | None:
    """Why the library of algorithm `name` cannot be used here (not installed), else None."""
    lib = LIBRARIES[algorithm(name).library]
    if importlib.util.find_spec(lib.module) is not None:
        return None
    how = f"pip install -e '.[{lib.extra}]'" if lib.extra else f"pip install {lib.distribution}"
    return f"{name} needs {lib.distribution}, which is not installed; install it with {how}"


def _multiple(x: float, q: float) -> bool:
    return math.isclose(x / q, round(x / q), abs_tol=1e-9)


def _log_int_bounds(d: Dimension) -> tuple[int, int]:
    """qloguniform(low, high, 1) yields the whole numbers round(e^low) .. round(e^high)."""
    return round(math.exp(d.args[0])), round(math.exp(d.args[1]))


def _common_refusal(d: Dimension) -> str | None:
    """The refusals shared by Keras Tuner, Optuna and scikit-optimize."""
    if d.kind == "normal":
        return "has no normal distribution"
    if d.kind == "quniform" and not (_multiple(d.args[0], d.args[2]) and _multiple(d.args[1], d.args[2])):
        return "steps from low, so quniform needs low and high that are multiples of q"
    if d.kind == "qloguniform" and (d.args[2] != 1 or _log_int_bounds(d)[0] < 1):
        return "has log-scaled integers with step 1 only, so qloguniform needs q = 1 and e^low >= 0.5"
    return None


def _keras_tuner_refusal(d: Dimension) -> str | None:
    if d.kind == "choice" and (len({type(a) for a in d.args}) > 1
                               or not all(isinstance(a, (int, float, str, bool)) for a in d.args)):
        return "Choice needs options of one type (all int, all float, all str or all bool)"
    return _common_refusal(d)


REFUSALS: dict[str, Callable[[Dimension], str | None]] = {
    "hyperopt": lambda d: None, "keras_tuner": _keras_tuner_refusal, "optuna": _common_refusal,
    "skopt": _common_refusal,
}


def space_refusal(name: str, d: Dimension) -> str | None:
    """Why algorithm `name`'s library cannot express dimension `d` exactly, else None."""
    why = REFUSALS[algorithm(name).library](d)
    return None if why is None else f"{algorithm(name).library} cannot express {d.kind} exactly: it {why}"
