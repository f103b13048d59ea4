"""The ask/tell protocol every optimiser backend follows.

Call order: `ask()`, then `tell(loss)` for that configuration, and again; never two asks in a
row. A backend is seeded once, at construction, from the bo stream; `library_seed` is the exact
seed it gave its library, recorded with the study so anyone can replay the chain with the library
alone. A backend proposes the same sequence as its library's own loop on the same losses.
"""

from __future__ import annotations

from typing import Any, Protocol


class Search(Protocol):
    library_seed: int

    def ask(self) -> dict[str, Any]:
        """The next configuration to evaluate."""

    def tell(self, loss: float | None) -> None:
        """The loss of the last asked configuration (None: the evaluation failed)."""
