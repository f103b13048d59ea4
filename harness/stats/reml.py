"""Exact REML variance components of an unbalanced table with statsmodels MixedLM (slow path).

Importing this module raises ImportError when statsmodels (a dev extra) is missing.
"""

from __future__ import annotations

import warnings

import numpy as np
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

from harness.stats.design import RESIDUAL, Design


def reml(values: np.ndarray, coords: np.ndarray, design: Design,
         replicated: bool) -> tuple[list[str], list[int], list[float]]:
    """Names, term masks (-1: residual) and REML variances of every term, the residual last.

    coords: (factors, rows) grid coordinates. All terms are independent random intercepts of one
    group spanning the table; the full interaction is a term only when cells are replicated.
    """
    terms = design.terms[1:] if replicated else design.terms[1:-1]
    names, mats = [], []
    for mask in terms:
        slot = np.zeros(values.size, np.int64)
        for f in range(len(design.factors)):
            if mask >> f & 1:
                slot = slot * design.sizes[f] + coords[f]
        used, index = np.unique(slot, return_inverse=True)
        z = np.zeros((values.size, used.size))
        z[np.arange(values.size), index.reshape(-1)] = 1.0
        names.append(design.name(mask))
        mats.append([z])
    spec = VCSpec(names, [[[str(j) for j in range(m[0].shape[1])]] for m in mats], mats)
    model = MixedLM(values - values.mean(), np.ones((values.size, 1)), np.zeros(values.size), exog_vc=spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(reml=True)
    var = [max(float(v), 0.0) for v in np.asarray(fit.vcomp)] + [float(fit.scale)]
    return names + [RESIDUAL], list(terms) + [-1], var
