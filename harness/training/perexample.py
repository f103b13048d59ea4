"""Per-example results of a classification's training: which test examples it got right and the
class it predicted for each, stored with the record as short base64 strings (`result.examples`).

`encode` runs in the worker; `decode` only where a reader asks (the report's "Each source alone"
section): export, rows and the variance tables never decode them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

WIDTHS = (1, 2, 4, 8, 16)  # bits per predicted class: the fewest that hold every class


@dataclass(frozen=True)
class Examples:
    """One training's test examples: `correct` [n] bool, `predicted` [n] class ids."""

    correct: np.ndarray
    predicted: np.ndarray


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def encode(predicted: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, Any]:
    """{"n", "bits", "correct", "predicted"}: a packbits bitset of right answers and the predicted
    classes at `bits` bits each (4 for 10 classes), both base64."""
    bits = next(w for w in WIDTHS if n_classes <= 2 ** w)
    planes = np.unpackbits(predicted.astype(">u2").view(np.uint8)).reshape(-1, 16)[:, 16 - bits:]
    return {"n": len(y), "bits": bits, "correct": _b64(np.packbits(predicted == y).tobytes()),
            "predicted": _b64(np.packbits(planes.reshape(-1)).tobytes())}


def decode(stored: dict[str, Any]) -> Examples:
    """The arrays `encode` stored."""
    n, bits = int(stored["n"]), int(stored["bits"])
    correct = np.unpackbits(np.frombuffer(base64.b64decode(stored["correct"]), np.uint8), count=n).astype(bool)
    planes = np.unpackbits(np.frombuffer(base64.b64decode(stored["predicted"]), np.uint8), count=n * bits)
    weights = 1 << np.arange(bits - 1, -1, -1)
    return Examples(correct, planes.reshape(n, bits).astype(np.int64) @ weights)
