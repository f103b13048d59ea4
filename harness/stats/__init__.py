"""Variance components (numpy + numba; never TensorFlow, nothing of harness but its errors):
the design and its expected mean squares (design), the numba kernels (kernels), the ANOVA and
interval driver (core), the GPQ and MLS intervals (intervals), unbalanced tables (unbalanced: the
REML fit in reml, the Henderson III mean squares its intervals use in henderson), result objects
(results), and CSV input (csvfile, decompose_csv)."""

from harness.stats.core import Codes, decompose, decompose_groups
from harness.stats.results import Component, Decomposition, GroupedDecomposition

__all__ = ["Codes", "Component", "Decomposition", "GroupedDecomposition", "decompose", "decompose_groups"]
