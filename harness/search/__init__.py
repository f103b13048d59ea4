"""Optimisers behind one ask/tell protocol (base), one module per library (hyperopt today)."""

from __future__ import annotations

from harness.job.spec import SearchSpec
from harness.search.base import Search
from harness.search.hyperopt import HyperoptSearch

__all__ = ["Search", "make_search"]


def make_search(spec: SearchSpec, seed: int) -> Search:
    """The chain's optimiser for `spec.algorithm`, seeded from the bo stream's `seed`."""
    return HyperoptSearch(spec, seed)
