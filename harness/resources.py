"""Files the harness ships beside its code: the job files (jobs/) and the Slurm scripts (slurm/).

In a checkout or an editable install they are the repository's own `jobs/` and `slurm/`; a
regular `pip install .` ships them as package data (`harness/jobs/`, `harness/slurm_scripts/`,
mapped from those folders in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent


def in_checkout() -> bool:
    """Whether the code runs from a checkout of the repository (editable install or PYTHONPATH)."""
    return (REPO / "pyproject.toml").is_file() and (REPO / "jobs").is_dir()


def _shipped(folder: str, installed: str) -> Path:
    """The checkout's folder when there is one, else the installed package data."""
    return REPO / folder if in_checkout() else PACKAGE / installed


def jobs_dir() -> Path:
    """Where the bundled job files are (`harness plan digits_dense` looks here)."""
    return _shipped("jobs", "jobs")


def slurm_dir() -> Path:
    """Where slurm/array.sh and slurm/report.sh are."""
    return _shipped("slurm", "slurm_scripts")
