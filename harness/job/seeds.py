"""The seed sources and their streams: one integer seed per (root, source, level, purpose).

Seeds come from numpy SeedSequence keyed by the root seed, the source's name, the level and a
purpose, so adding a source, a level or a worker never changes another source's numbers. This is
the one list of seed sources; everything else reads it from here.
"""

from __future__ import annotations

import hashlib

import numpy as np

SEED_SOURCES = ("init", "order", "bo", "repeat", "split", "noise", "bitflip")  # as the job file's seeds: names them
EVAL_SOURCES = ("init", "order", "split", "noise", "bitflip", "repeat")  # crossed by evaluation units
TRAINING_SOURCES = ("init", "order", "split", "noise", "bitflip")         # what one training is given
OPTIONAL_SOURCES = ("split", "noise", "bitflip")                          # held at their first level unless crossed
GIVEN_WHEN_NAMED = ("bitflip",)  # a training gets its seed only where the job names it (old records unchanged)
REQUIRED_SOURCES = ("init", "order", "bo", "repeat")                      # a job file may leave them out: 1 level
FRESH_SOURCES = ("init", "order")                                         # re-drawn for re-evaluations and extra runs

# purposes of a seed: the matrix itself, fresh seeds for re-evaluating chosen configurations,
# and the extra runs averaged into one objective value (run j > 0 uses OBJECTIVE_RUN + j - 1)
MATRIX, FRESH, OBJECTIVE_RUN = 0, 1, 2


def source_code(name: str) -> int:
    """A stable 32-bit integer for a seed source's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def derive_seed(root: int, source: str, level: int, purpose: int = MATRIX) -> int:
    """The integer seed of one level of one named source (31 bits, fits every backend)."""
    ss = np.random.SeedSequence(entropy=root, spawn_key=(source_code(source), level, purpose))
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


def level_seed(root: int, source: str, level: int, purpose: int = MATRIX) -> int:
    """`derive_seed`, except bitflip: its level 0 is seed 0 (no flip) and no other level's is."""
    if source != "bitflip":
        return derive_seed(root, source, level, purpose)
    return 0 if level == 0 else derive_seed(root, source, level) or 1


def layer_seed(init_seed: int, layer: int) -> int:
    """The initializer seed of one layer, derived from the unit's init seed."""
    return int(np.random.SeedSequence([init_seed, layer]).generate_state(1)[0] & 0x7FFFFFFF)
