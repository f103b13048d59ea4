"""Optimisers behind one ask/tell protocol (base), one module per library: hyperopt, keras_tuner,
optuna, skopt. What each accepts is described, without importing it, in harness/job/algorithms.py."""

from __future__ import annotations

import importlib

from harness.job.algorithms import algorithm as find_algorithm
from harness.job.spec import SearchSpec
from harness.search.base import Search

__all__ = ["Search", "make_search"]

BACKENDS = {"hyperopt": "HyperoptSearch", "keras_tuner": "KerasTunerSearch", "optuna": "OptunaSearch",
            "skopt": "SkoptSearch"}


def make_search(spec: SearchSpec, seed: int, algorithm: str | None = None) -> Search:
    """The chain's optimiser `algorithm` (default: the job's `spec.algorithm`), seeded from the bo
    stream's `seed`. Only the chosen library is imported."""
    alg = find_algorithm(algorithm or spec.algorithm)
    module = importlib.import_module(f"harness.search.{alg.library}")
    search: Search = getattr(module, BACKENDS[alg.library])(spec, alg.name, seed)
    return search
