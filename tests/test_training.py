"""Real Keras trainings on tiny data: determinism across processes, seed effects, MNIST files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import UserError
from harness.job import load_job
from harness.job.matrix import training_seeds
from harness.training import data, determinism
from harness.training.metrics import TrainingFailed
from harness.training.trainer import Trainer
from tests.conftest import REPO, write_job

ONE_UNIT = """
import json, sys
from harness.training import determinism
from harness.job.matrix import training_seeds
from harness.job import load_job
from harness.training.trainer import Trainer
determinism.prepare_process("on"); determinism.apply_threads(1, 1); determinism.set_ops("on")
spec = load_job(sys.argv[1])
m = Trainer(spec).train({"units": 16, "epochs": 2}, training_seeds(spec, {"init": 1, "order": 1}))
print(json.dumps(m.as_dict()))
"""


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    determinism.prepare_process("on")
    determinism.apply_threads(1, 1)
    determinism.set_ops("on")
    spec = load_job(str(write_job(tmp_path_factory.mktemp("job"), training={"epochs": 2})))
    return Trainer(spec)


def test_same_unit_in_two_fresh_processes_is_bit_identical(tmp_path: Path) -> None:
    job = str(write_job(tmp_path))
    outs = [subprocess.run([sys.executable, "-c", ONE_UNIT, job], cwd=REPO, capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": str(h), "PATH": "/usr/bin:/bin"}).stdout
            for h in (0, 1)]  # different hash seeds too
    assert json.loads(outs[0]) == json.loads(outs[1])


def test_init_and_order_seeds_each_change_the_result(trainer: Trainer) -> None:
    spec, cfg = trainer.spec, {"units": 16}
    base = trainer.train(cfg, training_seeds(spec, {"init": 0, "order": 0}))
    again = trainer.train(cfg, training_seeds(spec, {"init": 0, "order": 0}))
    other_init = trainer.train(cfg, training_seeds(spec, {"init": 1, "order": 0}))
    other_order = trainer.train(cfg, training_seeds(spec, {"init": 0, "order": 1}))
    assert base == again
    assert other_init.loss != base.loss and other_order.loss != base.loss
    assert other_init.loss != other_order.loss
    assert len(base.per_class_accuracy) == 10 and 0 <= base.accuracy <= 1


def test_diverging_training_raises(tmp_path: Path, trainer: Trainer) -> None:
    spec = load_job(str(write_job(tmp_path, training={"optimizer": "sgd", "learning_rate": 1e12})))
    with pytest.raises(TrainingFailed, match="non-finite"):
        Trainer(spec).train({"units": 16}, training_seeds(spec, {"init": 0, "order": 0}))


def _write_mnist(path: Path, n_train: int = 120, n_test: int = 40) -> None:
    """A small file in Keras's mnist.npz format (uint8 images, uint8 labels)."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    arrays["y_train"][:10] = np.arange(10)
    np.savez_compressed(path, **arrays)


def test_mnist_from_a_staged_file(tmp_path: Path, trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    npz = tmp_path / "mnist.npz"
    _write_mnist(npz)
    spec = load_job(str(write_job(tmp_path, replace={"data": {"source": "mnist", "path": str(npz),
                                                              "splits": {"max_test": 30}}})))
    ds = data.load(spec.data, 1, spec.path)
    assert ds.x_train.shape == (120, 28, 28) and ds.x_test.shape == (30, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1.0
    m = Trainer(spec).train({"units": 8}, training_seeds(spec, {"init": 0, "order": 0}))
    assert 0 <= m.accuracy <= 1
    # the environment variable is the other offline path
    env_spec = load_job(str(write_job(tmp_path, name="env", replace={"data": {"source": "mnist"}})))
    monkeypatch.setenv(data.MNIST_ENV, str(npz))
    assert data.load(env_spec.data, 1, env_spec.path).x_test.shape == (40, 28, 28)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 28, 28)))
    monkeypatch.setenv(data.MNIST_ENV, str(bad))
    with pytest.raises(UserError, match="lacks y_train, x_test, y_test"):
        data.load(env_spec.data, 1, env_spec.path)
