"""Shared test helpers: a tiny job file and a way to run the real CLI in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

TINY_JOB: dict[str, Any] = {
    "name": "tiny",
    "data": {"source": "digits", "splits": {"test": 0.25, "max_train": 240}},
    "model": {"builder": "dense", "args": {"activation": "relu"}},
    "training": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "epochs": 1},
    "search": {"algorithm": "tpe", "max_evals": 3, "startup_trials": 2,
               "space": {"units": {"quniform": [8, 24, 8]}},
               "chains": {"init": 1, "order": 1}, "reevaluate": {"init": 1, "order": 1}},
    "evaluate": {"configurations": [{"units": 8}, {"units": 16}]},
    "seeds": {"root": 7, "init": 2, "order": 2, "repeat": 1, "bo": 1},
    "determinism": {"ops": "on", "intra_op_threads": 1, "inter_op_threads": 1},
    "dispatch": {"cpu_workers": 1},
}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_job(directory: Path, name: str = "tiny", replace: dict[str, Any] | None = None,
              **overrides: Any) -> Path:
    """A small digits job (seconds per training): `overrides` merged into it, `replace` sections
    swapped whole."""
    job = {**deep_merge(TINY_JOB, {"name": name, **overrides}), **(replace or {})}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def harness(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m harness ARGS` in a fresh process."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def outputs_at_thread_counts(code: str, counts: tuple[str, ...] = ("1", "2")) -> list[str]:
    """stdout of `python -c code` in a fresh process per numba thread count (bit-identity checks)."""
    return [subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                           env=dict(os.environ, NUMBA_NUM_THREADS=n, PYTHONPATH=str(REPO))).stdout for n in counts]

def as_before_validation(name: str, directory: Path) -> Path:
    """A bundled job file as it was before it selected on a validation split (issue 21)."""
    text = (REPO / "jobs" / f"{name}.yaml").read_text()
    lines = [ln for ln in text.splitlines() if "validation: 0.1}" not in ln and "# from train, scores" not in ln]
    text = "\n".join("  splits: {test: 0.25}" if "splits: {test: 0.25, validation" in ln else ln for ln in lines)
    path = directory / f"{name}.yaml"
    path.write_text(text + "\n")
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs the test mounts (root only; skipped where mounting is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
