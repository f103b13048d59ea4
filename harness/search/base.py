"""The ask/tell protocol every optimiser backend follows, and how a backend's seed is derived.

Call order: `ask()`, then `tell(loss)` for that configuration, and again; never two asks in a
row. `ask()` returns None when the library ends the search early (Keras Tuner stops when it can
find no new configuration). A backend is seeded once, at construction, from the bo stream;
`library_seed` is the exact seed it gave its library, recorded with the study so anyone can replay
the chain with the library alone. A backend proposes the same sequence as its library's own loop
on the same losses.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Protocol

import numpy as np

from harness.job.algorithms import LIBRARIES
from harness.job.seeds import source_code


class Search(Protocol):
    library_seed: int

    def ask(self) -> dict[str, Any] | None:
        """The next configuration to evaluate (None: the library has stopped the search)."""

    def tell(self, loss: float | None) -> None:
        """The loss of the last asked configuration (None: the evaluation failed)."""


def library_seed(bo_seed: int, library: str) -> int:
    """The seed a library gets for the chain with this bo seed: hashed with the library's name, so
    consecutive bo seeds give unrelated streams (Keras Tuner and scikit-optimize seed numpy's legacy
    generator, whose streams from seeds s and s + 1 are not independent by construction). 31 bits and
    never 0, which Keras Tuner reads as 'no seed'."""
    ss = np.random.SeedSequence(entropy=bo_seed, spawn_key=(source_code(library),))
    return 1 + int(ss.generate_state(1)[0] % (2**31 - 2))


def library_version(library: str) -> str:
    """'name version' of an optimiser library, for the study record's environment."""
    lib = LIBRARIES[library]
    return f"{lib.distribution} {version(lib.distribution)}"


def python_value(value: Any) -> Any:
    """A library's proposed value as a plain Python value (numpy scalars become int/float/str)."""
    return value.item() if isinstance(value, np.generic) else value
