"""A regular (non-editable) install ships the job files and Slurm scripts and finds them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_a_wheel_install_runs_harness_plan_from_another_directory(tmp_path: Path) -> None:
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(wheels.glob("harness-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    assert (site / "harness" / "jobs" / "digits_dense.yaml").is_file()
    assert (site / "harness" / "slurm_scripts" / "array.sh").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy, not this checkout
    code = "import harness.resources as r; print(r.jobs_dir()); print(r.slurm_dir())"
    where = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert where == [str(site / "harness" / "jobs"), str(site / "harness" / "slurm_scripts")]
    r = subprocess.run([sys.executable, "-m", "harness", "plan", "digits_dense"], cwd=elsewhere, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "job digits_dense" in r.stdout and "trainings: 1120" in r.stdout


def test_pyproject_lists_every_package() -> None:
    """A subpackage missing from pyproject's list would be left out of a regular install."""
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "harness").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
