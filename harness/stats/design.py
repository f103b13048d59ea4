"""Balanced random-effects designs: model terms, degrees of freedom and expected mean squares.

A design is a dense grid: one axis per factor, in the user's order. A crossed factor's axis runs over
its levels; a factor nested in others runs over its levels *within* one cell of its ancestors, so all
parent cells must hold the same number of them. A term is a set of factors closed under nesting (a
term holding B holds every factor B is nested in), encoded as a bit mask over the factor indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod

import numpy as np

RESIDUAL = "residual"


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


@dataclass(frozen=True)
class Design:
    """Factor names, per-axis sizes and nesting (ancestor masks, transitive) of a balanced grid."""

    factors: tuple[str, ...]
    sizes: tuple[int, ...]
    ancestors: tuple[int, ...]

    @property
    def cells(self) -> int:
        return prod(self.sizes)

    @cached_property
    def strides(self) -> np.ndarray:
        """C-order strides of the axes of the flattened grid."""
        out = np.ones(len(self.sizes), np.int64)
        for i in range(len(self.sizes) - 2, -1, -1):
            out[i] = out[i + 1] * self.sizes[i + 1]
        return out

    @cached_property
    def terms(self) -> tuple[int, ...]:
        """All terms closed under nesting, the empty one first and the full one last."""
        k = len(self.factors)
        valid = [m for m in range(1 << k) if all((self.ancestors[f] & ~m) == 0 for f in _bits(m))]
        return tuple(sorted(valid, key=lambda m: (bin(m).count("1"), _bits(m))))

    def dead(self, mask: int) -> int:
        """Factors of the term that only index the cells its other factors are nested in."""
        out = 0
        for f in _bits(mask):
            out |= self.ancestors[f]
        return out & mask

    def name(self, mask: int) -> str:
        """Crossed factors joined by ':' ("A:B"); nesting factors go last ("B:A" is B within A)."""
        dead = self.dead(mask)
        live = [self.factors[f] for f in _bits(mask & ~dead)]
        return ":".join(live + [self.factors[f] for f in _bits(dead)])

    def term_cells(self, mask: int) -> int:
        return prod(self.sizes[f] for f in _bits(mask))

    def df(self, mask: int) -> int:
        dead = self.dead(mask)
        return prod(self.sizes[f] - 1 for f in _bits(mask & ~dead)) * prod(self.sizes[f] for f in _bits(dead))

    def cell_coords(self) -> np.ndarray:
        """(factors, cells) grid coordinates of every flat cell."""
        return np.indices(self.sizes).reshape(len(self.sizes), -1)

    def term_slots(self, mask: int) -> np.ndarray:
        """Index of each grid cell's level of the term (C order over the term's axes)."""
        coords = self.cell_coords()
        out = np.zeros(self.cells, np.int64)
        for f in _bits(mask):
            out = out * self.sizes[f] + coords[f]
        return out


@dataclass(frozen=True)
class Layout:
    """A design with n observations per cell: its variance sources and the moment equations.

    With n == 1 the full interaction is the residual. `kinv` solves the expected mean squares,
    variance = kinv @ ms; `mobius` turns uncorrected sums of squares of the terms' marginal means
    (in `design.terms` order) into the sources' sums of squares (the residual's adds the
    within-cell sum of squares when n > 1).
    """

    design: Design
    n: int
    masks: tuple[int, ...]
    sources: tuple[str, ...]
    df: np.ndarray
    kinv: np.ndarray
    mobius: np.ndarray

    @classmethod
    def build(cls, design: Design, n: int) -> Layout:
        terms = design.terms
        full = terms[-1]
        masks = tuple(m for m in terms[1:] if n > 1 or m != full)
        sources = tuple(design.name(m) for m in masks) + (RESIDUAL,)
        cells = design.cells
        df = [design.df(m) for m in masks] + [cells * (n - 1) if n > 1 else design.df(full)]
        coef = np.array([n * cells / design.term_cells(m) for m in masks] + [1.0])
        s = len(sources)
        ems = np.zeros((s, s))
        for i, m in enumerate(masks):
            for j, u in enumerate(masks):
                if (u & m) == m:
                    ems[i, j] = coef[j]
        ems[:, -1] = 1.0
        mobius = np.zeros((s, len(terms)))
        for i, m in enumerate(masks + ((full,) if n == 1 else ())):
            dead = design.dead(m)
            for j, u in enumerate(terms):
                if (u & m) == u and (u & dead) == dead:
                    mobius[i, j] = (-1.0) ** (bin(m).count("1") - bin(u).count("1"))
        return cls(design, n, masks, sources, np.array(df, np.float64), np.linalg.inv(ems), mobius)

    @cached_property
    def slots(self) -> tuple[np.ndarray, ...]:
        """Per source term (not the residual), the level of each grid cell (`Design.term_slots`)."""
        return tuple(self.design.term_slots(m) for m in self.masks)

    def icc_weights(self) -> np.ndarray:
        """(factors, sources) 0/1: the sources two observations share when they share a factor's level."""
        d = self.design
        out = np.zeros((len(d.factors), len(self.sources)))
        for f in range(len(d.factors)):
            scope = d.ancestors[f] | 1 << f
            for j, m in enumerate(self.masks):
                out[f, j] = float((m & ~scope) == 0)
        return out
