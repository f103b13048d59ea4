"""Measure how much of a tuned Keras model's score is luck: seed matrices, trainings, variance tables.

For notebooks: `harness.load(job, store)` (a DataFrame of every training), `harness.decompose(...)`
(variance components) and `harness.report(job, store)` (the report's markdown); see harness/api.py.
They are imported on first use, so `import harness` (and `harness --help`) stays fast.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["decompose", "load", "report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness import api
        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
