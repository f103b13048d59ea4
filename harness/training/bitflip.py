"""The `bitflip` seed source (Summers & Dinneen 2021's `--random_bit_change`): after the init seed
built the initial weights, the lowest mantissa bit of one of them, picked by the bitflip seed, is
flipped. Seed 0 flips nothing. Every engine calls it where its initial weights are made, over
the model's trainable variables in their order (fit and exact on the built model, vectorized on
the arrays it stacks), so a seed flips the same weight in every engine."""

from __future__ import annotations

from typing import Any

import numpy as np


def pick(arrays: list[np.ndarray], seed: int) -> tuple[int, int]:
    """(array, flat index) of the weight a seed flips: uniform over the non-zero floating-point
    weights (a zero's lowest bit is a subnormal that moves nothing: biases start at zero)."""
    counts = [int(np.count_nonzero(a)) if np.issubdtype(a.dtype, np.floating) else 0 for a in arrays]
    total = sum(counts)
    if total == 0:
        raise ValueError("bitflip: the model has no non-zero floating-point initial weight to flip")
    k = int(np.random.default_rng(seed).integers(total))
    for i, c in enumerate(counts):
        if k < c:
            return i, int(np.flatnonzero(arrays[i])[k])
        k -= c
    raise AssertionError("unreachable")


def flipped(a: np.ndarray, index: int) -> np.ndarray:
    """A copy of `a` with the lowest mantissa bit of its element `index` (flat) flipped."""
    out = np.array(a, copy=True)
    bits = out.reshape(-1).view(np.dtype(f"u{out.dtype.itemsize}"))
    bits[index] ^= 1
    return out


def flip_arrays(arrays: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Initial weights as numpy arrays, with the seed's bit flipped (seed 0: unchanged)."""
    if not seed:
        return arrays
    i, index = pick(arrays, seed)
    return [flipped(a, index) if j == i else a for j, a in enumerate(arrays)]


def flip_model(model: Any, seed: int) -> None:
    """Flip the seed's bit in a built model's trainable variables, in place (seed 0: nothing)."""
    if not seed:
        return
    import keras
    variables = list(model.trainable_variables)
    values = [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in variables]
    i, index = pick(values, seed)
    variables[i].assign(flipped(values[i], index))
