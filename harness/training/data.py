"""Datasets: scikit-learn's bundled digits (offline default), Keras's image datasets (MNIST,
Fashion-MNIST, CIFAR-10/100: Keras's loader, or a pre-staged .npz for nodes without internet) and
the user's own data (harness/training/datafiles.py: npz, CSV, a "package.module:function").
Arrays only; no Keras model code here.

Every source gives (x_train, y_train, x_test, y_test); the split stream then shortens the splits
(max_train / max_test) and carves the validation split off train (`data.splits.validation`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError, Where
from harness.job.spec import DataSpec
from harness.training import datafiles

KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
KERAS_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
MNIST_ENV = "HARNESS_MNIST_PATH"


@dataclass(frozen=True)
class Dataset:
    """The splits as arrays; `x_eval` is what an engine predicts on: validation then test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int  # 0 for regression
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_eval: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        x_eval = self.x_test if self.x_val is None else np.ascontiguousarray(
            np.concatenate([self.x_val, self.x_test]))
        object.__setattr__(self, "x_eval", x_eval)

    @property
    def n_val(self) -> int:
        return 0 if self.y_val is None else len(self.y_val)


def env_var(name: str) -> str:
    """The environment variable naming a staged file of Keras dataset `name`."""
    return MNIST_ENV if name == "mnist" else f"HARNESS_{name.upper()}_PATH"


def keras_name(spec: DataSpec) -> str | None:
    """The Keras dataset a spec names (source mnist, or source keras with a name)."""
    return "mnist" if spec.source == "mnist" else spec.name if spec.source == "keras" else None


def check(spec: DataSpec, job_file: str = "") -> tuple[dict[str, Any], Dataset]:
    """The driver's check of the data, before anything runs: every source read and checked as a
    worker would (lengths, dtypes, NaN / inf, labels; a staged Keras file as an npz; without one,
    Keras's loader runs once, downloading into the cache the workers then reuse). Returns the
    data's identity (`identity`) and the dataset of split seed 0."""
    raw = _raw(spec, job_file)
    return identity(spec, raw, job_file), _dataset(spec, raw, 0, job_file)


def identity(spec: DataSpec, raw: dict[str, np.ndarray], job_file: str) -> dict[str, Any]:
    """What the results of a job depend on in its data: a SHA-256 of the arrays its source gave
    (names, dtypes, shapes and bytes, before any split: the same numbers saved another way are the
    same data), the source and the file read, if any."""
    h = hashlib.sha256()
    for key in sorted(raw):
        a = np.ascontiguousarray(raw[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.data.cast("B"))
    name = keras_name(spec)
    staged = (spec.path or os.environ.get(env_var(name))) if name is not None else spec.path
    return {"digest": h.hexdigest(), "source": spec.source,
            "file": str(_located(spec, staged, job_file)) if staged else None}


def load(spec: DataSpec, split_seed: int, job_file: str = "") -> Dataset:
    """Load, scale and split; `split_seed` chooses the split (digits, x/y files), the subsample
    when max_train / max_test shorten a split, and the validation split."""
    return _dataset(spec, _raw(spec, job_file), split_seed, job_file)


def _dataset(spec: DataSpec, raw: dict[str, np.ndarray], split_seed: int, job_file: str) -> Dataset:
    rng = np.random.default_rng(split_seed)
    x_train, y_train, x_test, y_test = _four(spec, raw, rng, job_file)
    if spec.max_train is not None and spec.max_train < len(y_train):
        keep = np.sort(rng.permutation(len(y_train))[:spec.max_train])
        x_train, y_train = x_train[keep], y_train[keep]
    if spec.max_test is not None and spec.max_test < len(y_test):
        keep = np.sort(rng.permutation(len(y_test))[:spec.max_test])
        x_test, y_test = x_test[keep], y_test[keep]
    x_val = y_val = None
    if spec.validation:
        perm = rng.permutation(len(y_train))
        n_val = int(round(len(y_train) * spec.validation))
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        x_val, y_val, x_train, y_train = x_train[val], y_train[val], x_train[train], y_train[train]
    if spec.task == "regression":
        n_classes = 0
    else:
        n_classes = spec.classes or int(max(y_train.max(), y_test.max())) + 1
    return Dataset(np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test, n_classes,
                   None if x_val is None else np.ascontiguousarray(x_val), y_val)


def _raw(spec: DataSpec, job_file: str) -> dict[str, np.ndarray]:
    """The arrays the spec's source holds, as read (digits: x and y; a Keras dataset: its four)."""
    if spec.source == "digits":
        return dict(zip(("x", "y"), _digits(), strict=True))
    name = keras_name(spec)
    if name is None:
        return datafiles.read(spec, job_file)
    staged = spec.path or os.environ.get(env_var(name))
    four = _read_npz(_located(spec, staged, job_file), name, job_file) if staged else _keras_loader(name, job_file)
    return datafiles.numeric(dict(zip(KERAS_KEYS, four, strict=True)), Where(file=job_file, key="data.path"))


def _four(spec: DataSpec, raw: dict[str, np.ndarray], rng: np.random.Generator,
          job_file: str) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test), scaled and typed: digits split as it always was; a Keras
    dataset's pixels scaled to [0, 1] and checked as an npz is (labels within its classes)."""
    if spec.source == "digits":
        return datafiles.split_xy(raw["x"], raw["y"], spec.test_fraction, rng)
    name = keras_name(spec)
    if name is None:
        return datafiles.validate(datafiles.arrange(raw, spec, rng, job_file), spec, job_file)
    scale = np.float32(255.0)
    xtr, ytr, xte, yte = (raw[k] for k in KERAS_KEYS)
    return datafiles.validate((xtr.astype(np.float32) / scale, ytr, xte.astype(np.float32) / scale, yte), spec,
                              job_file, classes=spec.classes or KERAS_CLASSES.get(name))


def _located(spec: DataSpec, staged: str | None, job_file: str) -> Path:
    """A staged file: data.path as given or relative to the job file (as for an npz); from the
    environment variable, as given."""
    if staged is not None and staged == spec.path:
        try:
            return datafiles.data_path(spec, job_file)
        except UserError:  # named in its own line below, with what to do about it
            pass
    return Path(staged or "")


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)


def _keras_loader(name: str, job_file: str) -> tuple[np.ndarray, ...]:
    import importlib
    try:
        module = importlib.import_module(f"keras.datasets.{name}")
        (xtr, ytr), (xte, yte) = module.load_data()
    except Exception as exc:  # no internet on this node, or a broken cache
        raise UserError(
            f"{name} could not be downloaded by keras.datasets.{name}.load_data() "
            f"({type(exc).__name__}); on a node without internet, stage {name}.npz (keys "
            f"{', '.join(KERAS_KEYS)}) and set data.path in the job file or ${env_var(name)}",
            file=job_file, key="data.path") from None
    return xtr, ytr, xte, yte


def _read_npz(path: Path, name: str, job_file: str) -> tuple[np.ndarray, ...]:
    """The four arrays of a staged Keras dataset file."""
    where = Where(file=job_file, key="data.path")
    if not path.is_file():
        raise UserError(f"{name} file {path} not found (set data.path or ${env_var(name)} to a staged "
                        f"{name}.npz, or clear both to download with Keras)", **where)
    found = datafiles.npz(path, job_file, name)
    missing = [k for k in KERAS_KEYS if k not in found]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; expected Keras's {name}.npz "
                        f"format ({', '.join(KERAS_KEYS)})", **where)
    return tuple(found[k] for k in KERAS_KEYS)
