"""The user's own data: `data.source: npz` (x_train, y_train, x_test, y_test; or x, y split by
`splits.test`), `csv` (feature columns and `data.target`; categorical targets mapped to class
ids in sorted order) and `"package.module:function"` (returns the four arrays, as a tuple or a
mapping, or x and y). `read` gives what a source holds (numeric arrays, or one UserError line);
`arrange` splits x and y; `validate` checks the four: one UserError line for mismatched lengths,
NaN / inf, or labels outside 0..classes-1. Files are read within stated limits (`MAX_FILE_BYTES`,
`MAX_CSV_BYTES`), a data.path relative to the job file as a builder's module is."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError, Where
from harness.job.spec import DataSpec
from harness.job.usercode import import_function

FOUR = ("x_train", "y_train", "x_test", "y_test")
MAX_FILE_BYTES = 8 * 2**30   # an npz (or staged Keras file): each worker holds its arrays in memory
MAX_CSV_BYTES = 256 * 2**20  # a CSV is parsed in Python: ~10x its size in memory while read
CSV_FIELD_BYTES = 2**17      # csv's own default field limit (128 KiB): no number is that long


def split_xy(x: np.ndarray, y: np.ndarray, test_fraction: float,
             rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Train / test by one permutation from the split stream (digits' split, unchanged)."""
    perm = rng.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def data_path(spec: DataSpec, job_file: str, what: str = "") -> Path:
    """data.path as a file: as given, else relative to the job file; one line when it is missing."""
    if not spec.path:
        raise UserError(f"data.source {spec.source} needs data.path", file=job_file, key="data.path")
    p = Path(spec.path)
    if not p.is_absolute() and not p.exists() and job_file:
        p = Path(job_file).parent / p  # relative to the job file, as a builder's module is
    if not p.is_file():
        raise UserError(f"{what or 'file'} {spec.path} not found", file=job_file, key="data.path")
    return p


def read(spec: DataSpec, job_file: str) -> dict[str, np.ndarray]:
    """What an npz, CSV or function source holds: the four arrays, or x and y; each a numeric
    array of at least one dimension (else one UserError line)."""
    if spec.source == "npz":
        found = npz(data_path(spec, job_file), job_file)
    elif spec.source == "csv":
        found = _csv(data_path(spec, job_file), spec, job_file)
    else:
        found = _function(spec, job_file)
    keys = FOUR if all(k in found for k in FOUR) else ("x", "y") if "x" in found and "y" in found else None
    if keys is None:
        raise UserError(f"data.source {spec.source} gave {', '.join(sorted(map(str, found))) or 'nothing'}; "
                        f"expected {', '.join(FOUR)}, or x and y", file=job_file, key="data.source")
    return numeric({k: found[k] for k in keys}, Where(file=job_file, key="data.source"))


def numeric(found: Mapping[str, Any], where: Where) -> dict[str, np.ndarray]:
    """Each value as an array of numbers (or booleans) with at least one dimension, x's with two
    (examples, then features), else one UserError line."""
    out = {}
    for key, value in found.items():
        a = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise UserError(f"{key} has dtype {a.dtype}; expected numbers"
                            + (" (map class names to ids, or use csv)" if key.startswith("y") else ""), **where)
        if a.ndim < (2 if key.startswith("x") else 1):
            raise UserError(f"{key} has shape {a.shape}; expected one row per example"
                            + (" and at least one feature" if key.startswith("x") else ""), **where)
        out[key] = a
    return out


def arrange(found: dict[str, np.ndarray], spec: DataSpec, rng: np.random.Generator,
            job_file: str) -> tuple[np.ndarray, ...]:
    """The four arrays: as given, or x and y split by `splits.test` (from the split stream)."""
    if "x" not in found:
        return tuple(found[k] for k in FOUR)
    if len(found["x"]) != len(found["y"]):
        raise UserError(f"x has {len(found['x'])} rows, y {len(found['y'])}: expected equal lengths",
                        file=job_file, key="data.source")
    return split_xy(found["x"], found["y"], spec.test_fraction, rng)


def npz(path: Path, job_file: str, name: str = "") -> dict[str, np.ndarray]:
    """The arrays of an .npz file of plain arrays (no pickles), within `MAX_FILE_BYTES`."""
    where = Where(file=job_file, key="data.path")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path} is {size / 2**30:.1f} GiB, over the {MAX_FILE_BYTES // 2**30} GiB a data file "
                        f"may be (each worker holds the arrays in memory)", **where)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz file of plain arrays ({exc})", **where) from None
    except AttributeError:  # np.load read a plain .npy, not an archive
        raise UserError(f"{path} is not an .npz archive{' (' + name + ')' if name else ''}", **where) from None


def _csv(path: Path, spec: DataSpec, job_file: str) -> dict[str, np.ndarray]:
    """x: every column but the target, as float32; y: the target (class ids for classification:
    whole non-negative numbers as they are, else each distinct name in sorted order). UTF-8 text
    within `MAX_CSV_BYTES`, fields within `CSV_FIELD_BYTES`, one line naming the first problem."""
    where = Where(file=job_file, key="data.path")
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise UserError(f"{path} is {size / 2**20:.0f} MiB, over the {MAX_CSV_BYTES // 2**20} MiB a CSV source may "
                        f"be: save the arrays as an .npz (data.source: npz)", **where)
    blob = path.read_bytes()
    if b"\0" in blob:
        line = blob[:blob.index(b"\0")].count(b"\n") + 1
        raise UserError(f"{path} holds a NUL byte (line {line}): not a text CSV", **where)
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[:exc.start].count(b"\n") + 1
        raise UserError(f"{path} is not UTF-8 text (byte 0x{blob[exc.start]:02x} on line {line}): save it as "
                        f"UTF-8", **where) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    csv.field_size_limit(CSV_FIELD_BYTES)
    try:
        rows = [(reader.line_num, r) for r in reader if r]
    except csv.Error as exc:
        raise UserError(f"{path} line {reader.line_num}: {exc}", **where) from None
    if not rows:
        raise UserError(f"{path} is empty", **where)
    head, body = rows[0][1], rows[1:]
    if not body:
        raise UserError(f"{path} has a header but no data rows", **where)
    if spec.target not in head:
        raise UserError(f"{path} has no target column '{spec.target}' (columns: {', '.join(head)})",
                        file=job_file, key="data.target")
    short = next(((n, r) for n, r in body if len(r) != len(head)), None)
    if short is not None:
        raise UserError(f"{path} line {short[0]} has {len(short[1])} fields, the header {len(head)}", **where)
    t = head.index(spec.target)
    features = [i for i in range(len(head)) if i != t]
    try:
        x = np.array([[float(r[i]) for i in features] for _, r in body], np.float32)
    except ValueError as exc:
        line = next(n for n, r in body if not all(_is_number(r[i]) for i in features))
        raise UserError(f"{path} line {line}: a feature column holds a non-number ({exc}); features must be "
                        f"numeric", **where) from None
    return {"x": x, "y": _target([(n, r[t]) for n, r in body], spec.task, path, job_file)}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _target(values: list[tuple[int, str]], task: str, path: Path, job_file: str) -> np.ndarray:
    """The target column: numbers for a regression; for a classification whole non-negative
    numbers as class ids, or names mapped to ids in sorted order; a column that mixes the two, or
    a number that is no class id, is one line naming its line."""
    where = Where(file=job_file, key="data.target")
    text = [(n, v) for n, v in values if not _is_number(v)]
    if task == "regression":
        if text:
            raise UserError(f"{path} line {text[0][0]}: target {text[0][1]!r} is not a number; a regression needs "
                            f"numbers", **where)
        return np.array([float(v) for _, v in values], np.float32)
    if not text:
        numbers = np.array([float(v) for _, v in values])
        bad = np.flatnonzero(~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0))
        if len(bad):
            n, v = values[bad[0]]
            raise UserError(f"{path} line {n}: target {v!r} is not a class id (whole numbers from 0); set "
                            f"data.task: regression for real-valued targets", **where)
        return numbers.astype(np.int32)
    if len(text) < len(values):
        n, v = next((n, v) for n, v in values if _is_number(v))
        raise UserError(f"{path}: the target column mixes class names ({text[0][1]!r} on line {text[0][0]}) and "
                        f"numbers ({v!r} on line {n}); use one or the other", **where)
    classes = sorted({v for _, v in values})
    ids = {c: i for i, c in enumerate(classes)}
    return np.array([ids[v] for _, v in values], np.int32)


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


def validate(arrays: tuple[np.ndarray, ...], spec: DataSpec, job_file: str,
             classes: int | None = None) -> tuple[np.ndarray, ...]:
    """The four arrays as float32 features and int32 labels (float32 targets for regression), or one
    UserError line naming what is wrong; labels within 0..classes-1 (`classes`, else the spec's)."""
    where = Where(file=job_file, key="data.source")
    out = []
    for (xk, yk), (x, y) in zip((FOUR[:2], FOUR[2:]), (arrays[:2], arrays[2:]), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        numeric({xk: x, yk: y}, where)
        if len(x) != len(y):
            raise UserError(f"{xk} has {len(x)} rows but {yk} has {len(y)}: expected equal lengths", **where)
        if len(x) == 0:
            raise UserError(f"{xk} is empty", **where)
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise UserError(f"{xk} holds NaN or inf in {int((~np.isfinite(x)).sum())} value(s)", **where)
        out += [x, _labels(y, yk, spec, where, classes or spec.classes)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise UserError(f"x_train's examples have shape {out[0].shape[1:]}, x_test's {out[2].shape[1:]}", **where)
    return tuple(out)


def _labels(y: np.ndarray, key: str, spec: DataSpec, where: Where, classes: int | None) -> np.ndarray:
    if spec.task == "regression":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise UserError(f"{key} holds NaN or inf", **where)
        return y
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        y = y.argmax(axis=1)  # one-hot rows (keras.utils.to_categorical): fed back as the loss takes them
    if y.ndim != 1 or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise UserError(f"{key} must be whole class ids 0..classes-1 or one-hot rows, one per example (got dtype "
                        f"{y.dtype}, shape {y.shape}); set data.task: regression for real-valued targets", **where)
    high = (classes or 10**9) - 1
    if y.min() < 0 or y.max() > high:
        raise UserError(f"{key} has labels from {int(y.min())} to {int(y.max())}; expected 0..{high}"
                        + ("" if classes else " (class ids are never negative)"), **where)
    return y.astype(np.int32)
