"""The user's own data: `data.source: npz` (x_train, y_train, x_test, y_test; or x, y split by
`splits.test`), `csv` (feature columns and `data.target`; categorical targets mapped to class
ids in sorted order) and `"package.module:function"` (returns the four arrays, as a tuple or a
mapping, or x and y). `validate` checks what any of them gave: one UserError line for mismatched
lengths, the wrong dtype, NaN / inf, or labels outside 0..classes-1."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError, Where
from harness.job.spec import DataSpec
from harness.job.usercode import import_function

FOUR = ("x_train", "y_train", "x_test", "y_test")


def split_xy(x: np.ndarray, y: np.ndarray, test_fraction: float,
             rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Train / test by one permutation from the split stream (digits' split, unchanged)."""
    perm = rng.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def read(spec: DataSpec, rng: np.random.Generator, job_file: str) -> tuple[np.ndarray, ...]:
    """The raw four arrays of an npz, CSV or function source."""
    if spec.source == "npz":
        found = _npz(_path(spec, job_file), job_file)
    elif spec.source == "csv":
        found = _csv(_path(spec, job_file), spec, job_file)
    else:
        found = _function(spec, job_file)
    if all(k in found for k in FOUR):
        return tuple(found[k] for k in FOUR)
    if "x" in found and "y" in found:
        if len(found["x"]) != len(found["y"]):
            raise UserError(f"x has {len(found['x'])} rows, y {len(found['y'])}: expected equal lengths",
                            file=job_file, key="data.source")
        return split_xy(np.asarray(found["x"]), np.asarray(found["y"]), spec.test_fraction, rng)
    raise UserError(f"data.source {spec.source} gave {', '.join(sorted(found)) or 'nothing'}; expected "
                    f"{', '.join(FOUR)}, or x and y", file=job_file, key="data.source")


def _path(spec: DataSpec, job_file: str) -> Path:
    if not spec.path:
        raise UserError(f"data.source {spec.source} needs data.path", file=job_file, key="data.path")
    p = Path(spec.path)
    if not p.is_absolute() and not p.exists() and job_file:
        p = Path(job_file).parent / p  # relative to the job file, as a builder's module is
    if not p.is_file():
        raise UserError(f"file {spec.path} not found", file=job_file, key="data.path")
    return p


def _npz(path: Path, job_file: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz file of plain arrays ({exc})",
                        file=job_file, key="data.path") from None


def _csv(path: Path, spec: DataSpec, job_file: str) -> dict[str, np.ndarray]:
    """x: every column but the target, as float32; y: the target (class ids for classification:
    numbers as they are when whole, else each distinct value in sorted order)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise UserError(f"{path} is empty", file=job_file, key="data.path")
    head, body = rows[0], [r for r in rows[1:] if r]
    if spec.target not in head:
        raise UserError(f"{path} has no target column '{spec.target}' (columns: {', '.join(head)})",
                        file=job_file, key="data.target")
    t = head.index(spec.target)
    features = [i for i in range(len(head)) if i != t]
    try:
        x = np.array([[float(r[i]) for i in features] for r in body], np.float32)
    except (ValueError, IndexError) as exc:
        raise UserError(f"{path}: a feature column holds a non-number or a row is short ({exc}); "
                        f"features must be numeric", file=job_file, key="data.path") from None
    target = [r[t] for r in body]
    return {"x": x, "y": _target(target, spec.task, path, job_file)}


def _target(values: list[str], task: str, path: Path, job_file: str) -> np.ndarray:
    try:
        numbers = np.array([float(v) for v in values])
    except ValueError:
        numbers = None
    if task == "regression":
        if numbers is None:
            raise UserError(f"{path}: target column holds non-numbers; a regression needs numbers",
                            file=job_file, key="data.target")
        return numbers.astype(np.float32)
    if numbers is not None and np.all(numbers == np.round(numbers)) and numbers.min() >= 0:
        return numbers.astype(np.int32)
    classes = sorted(set(values))
    ids = {c: i for i, c in enumerate(classes)}
    return np.array([ids[v] for v in values], np.int32)


def _function(spec: DataSpec, job_file: str) -> dict[str, Any]:
    where = Where(file=job_file, key="data.source")
    fn = import_function(spec.source, spec.search_path, where, what="data function")
    try:
        out = fn()
    except Exception as exc:
        raise UserError(f"data function {spec.source} raised {type(exc).__name__}: {exc}", **where) from None
    if isinstance(out, Mapping):
        return dict(out)
    if isinstance(out, (tuple, list)) and len(out) in (2, 4):
        return dict(zip(("x", "y") if len(out) == 2 else FOUR, out, strict=True))
    raise UserError(f"data function {spec.source} returned {type(out).__name__}; expected (x_train, y_train, "
                    f"x_test, y_test), (x, y) or a mapping with those keys", **where)


def validate(arrays: tuple[np.ndarray, ...], spec: DataSpec, job_file: str) -> tuple[np.ndarray, ...]:
    """The four arrays as float32 features and int32 labels (float32 targets for regression), or one
    UserError line naming what is wrong."""
    where = Where(file=job_file, key="data.source")
    out = []
    for (xk, yk), (x, y) in zip((FOUR[:2], FOUR[2:]), (arrays[:2], arrays[2:]), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise UserError(f"{xk} has {len(x)} rows but {yk} has {len(y)}: expected equal lengths", **where)
        if len(x) == 0:
            raise UserError(f"{xk} is empty", **where)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise UserError(f"{xk} has dtype {x.dtype}; expected numbers", **where)
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise UserError(f"{xk} holds NaN or inf in {int((~np.isfinite(x)).sum())} value(s)", **where)
        out += [x, _labels(y, yk, spec, where)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise UserError(f"x_train's examples have shape {out[0].shape[1:]}, x_test's {out[2].shape[1:]}", **where)
    return tuple(out)


def _labels(y: np.ndarray, key: str, spec: DataSpec, where: Where) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.number):
        raise UserError(f"{key} has dtype {y.dtype}; expected numbers (map class names to ids, or use csv)",
                        **where)
    if spec.task == "regression":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise UserError(f"{key} holds NaN or inf", **where)
        return y
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise UserError(f"{key} must be whole class ids 0..classes-1, one per example (got dtype {y.dtype}, "
                        f"shape {y.shape}); set data.task: regression for real-valued targets", **where)
    high = (spec.classes or 10**9) - 1
    if y.min() < 0 or y.max() > high:
        raise UserError(f"{key} has labels from {int(y.min())} to {int(y.max())}; expected 0..{high}"
                        + ("" if spec.classes else " (class ids are never negative)"), **where)
    return y.astype(np.int32)
