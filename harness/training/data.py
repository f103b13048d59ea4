"""Datasets: scikit-learn's bundled digits (offline default) and MNIST (Keras's loader, or a
pre-staged mnist.npz for nodes without internet). Arrays only; no Keras model code here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.job.spec import DataSpec

MNIST_ENV = "HARNESS_MNIST_PATH"
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


DIGITS_SIZE, MNIST_TEST_SIZE = 1797, 10_000


def test_size(spec: DataSpec) -> int:
    """Examples in the held-out split, without loading the data."""
    n = round(DIGITS_SIZE * spec.test_fraction) if spec.source == "digits" else MNIST_TEST_SIZE
    return min(n, spec.max_test) if spec.max_test else n


def check(spec: DataSpec, job_file: str = "") -> None:
    """Fail early, in the driver, on data a worker could not load, without loading it: digits
    ships with scikit-learn; a staged MNIST file is opened and its keys read; without one,
    Keras's loader runs once (it downloads into its cache, which the workers then reuse)."""
    if spec.source != "mnist":
        return
    staged = spec.path or os.environ.get(MNIST_ENV)
    if staged:
        _read_npz(Path(staged), job_file, keys_only=True)
    else:
        _mnist(None, job_file)


def load(spec: DataSpec, split_seed: int, job_file: str = "") -> Dataset:
    """Load, scale to [0, 1] float32 and split; `split_seed` chooses the split (digits) and
    the subsample when max_train / max_test shorten a split."""
    rng = np.random.default_rng(split_seed)
    if spec.source == "digits":
        x, y = _digits()
        perm = rng.permutation(len(y))
        n_test = int(round(len(y) * spec.test_fraction))
        test, train = perm[:n_test], perm[n_test:]
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    else:
        x_train, y_train, x_test, y_test = _mnist(spec.path, job_file)
    if spec.max_train is not None and spec.max_train < len(y_train):
        keep = np.sort(rng.permutation(len(y_train))[:spec.max_train])
        x_train, y_train = x_train[keep], y_train[keep]
    if spec.max_test is not None and spec.max_test < len(y_test):
        keep = np.sort(rng.permutation(len(y_test))[:spec.max_test])
        x_test, y_test = x_test[keep], y_test[keep]
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test,
                   n_classes)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)


def _mnist(path: str | None, job_file: str) -> tuple[np.ndarray, ...]:
    """A pre-staged npz (data.path, else $HARNESS_MNIST_PATH), else Keras's own loader."""
    staged = path or os.environ.get(MNIST_ENV)
    if staged:
        arrays = _read_npz(Path(staged), job_file)
    else:
        try:
            from keras.datasets import mnist
            (xtr, ytr), (xte, yte) = mnist.load_data()
        except Exception as exc:  # no internet on this node, or a broken cache
            raise UserError(
                f"MNIST could not be downloaded by keras.datasets.mnist.load_data() "
                f"({type(exc).__name__}); on a node without internet, stage mnist.npz and set "
                f"data.path in the job file or ${MNIST_ENV}", file=job_file, key="data.path") from None
        arrays = (xtr, ytr, xte, yte)
    xtr, ytr, xte, yte = arrays
    scale = np.float32(255.0)
    return (xtr.astype(np.float32) / scale, ytr.astype(np.int32),
            xte.astype(np.float32) / scale, yte.astype(np.int32))


def _read_npz(path: Path, job_file: str, keys_only: bool = False) -> tuple[np.ndarray, ...]:
    """The four MNIST arrays of a staged file (none with `keys_only`: just check it)."""
    where = dict(file=job_file, key="data.path")
    if not path.is_file():
        raise UserError(f"MNIST file {path} not found (set data.path or ${MNIST_ENV} to a staged "
                        f"mnist.npz, or clear both to download with Keras)", **where)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in MNIST_KEYS if k not in f]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}; expected Keras's mnist.npz "
                                f"format ({', '.join(MNIST_KEYS)})", **where)
            return () if keys_only else tuple(f[k] for k in MNIST_KEYS)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc})", **where) from None
