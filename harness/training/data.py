"""Datasets: scikit-learn's bundled digits (offline default), Keras's image datasets (MNIST,
Fashion-MNIST, CIFAR-10/100: Keras's loader, or a pre-staged .npz for nodes without internet) and
the user's own data (harness/training/datafiles.py: npz, CSV, a "package.module:function").
Arrays only; no Keras model code here.

Every source gives (x_train, y_train, x_test, y_test); the split stream then shortens the splits
(max_train / max_test) and carves the validation split off train (`data.splits.validation`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import UserError, Where
from harness.job.spec import DataSpec
from harness.training import datafiles

KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
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


def check(spec: DataSpec, job_file: str = "") -> None:
    """Fail early, in the driver, on data a worker could not load: digits ships with scikit-learn;
    a staged Keras file is opened and its keys read; without one, Keras's loader runs once (it
    downloads into its cache, which the workers then reuse); the user's data is loaded and checked
    (lengths, dtypes, NaN / inf, labels)."""
    name = keras_name(spec)
    if spec.source == "digits":
        return
    if name is not None:
        staged = spec.path or os.environ.get(env_var(name))
        if staged:
            _read_npz(Path(staged), name, job_file, keys_only=True)
        else:
            _keras_loader(name, job_file)
        return
    load(spec, 0, job_file)


def load(spec: DataSpec, split_seed: int, job_file: str = "") -> Dataset:
    """Load, scale and split; `split_seed` chooses the split (digits, x/y files), the subsample
    when max_train / max_test shorten a split, and the validation split."""
    rng = np.random.default_rng(split_seed)
    x_train, y_train, x_test, y_test = _arrays(spec, rng, job_file)
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


def _arrays(spec: DataSpec, rng: np.random.Generator, job_file: str) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) of the spec's source, scaled and typed."""
    if spec.source == "digits":
        x, y = _digits()
        return datafiles.split_xy(x, y, spec.test_fraction, rng)
    name = keras_name(spec)
    if name is not None:
        return _keras(spec.path, name, job_file)
    arrays = datafiles.read(spec, rng, job_file)
    return datafiles.validate(arrays, spec, job_file)


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


def _keras(path: str | None, name: str, job_file: str) -> tuple[np.ndarray, ...]:
    """A pre-staged npz (data.path, else $HARNESS_<NAME>_PATH), else Keras's own loader; pixels
    scaled to [0, 1], labels flattened to int32."""
    staged = path or os.environ.get(env_var(name))
    xtr, ytr, xte, yte = _read_npz(Path(staged), name, job_file) if staged else _keras_loader(name, job_file)
    scale = np.float32(255.0)
    return (xtr.astype(np.float32) / scale, ytr.reshape(-1).astype(np.int32),
            xte.astype(np.float32) / scale, yte.reshape(-1).astype(np.int32))


def _read_npz(path: Path, name: str, job_file: str, keys_only: bool = False) -> tuple[np.ndarray, ...]:
    """The four arrays of a staged Keras dataset file (none with `keys_only`: just check it)."""
    where = Where(file=job_file, key="data.path")
    if not path.is_file():
        raise UserError(f"{name} file {path} not found (set data.path or ${env_var(name)} to a staged "
                        f"{name}.npz, or clear both to download with Keras)", **where)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in KERAS_KEYS if k not in f]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}; expected Keras's {name}.npz "
                                f"format ({', '.join(KERAS_KEYS)})", **where)
            return () if keys_only else tuple(f[k] for k in KERAS_KEYS)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc})", **where) from None
