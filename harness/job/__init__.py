"""The job: a YAML file validated into a `JobSpec` (spec, load, yamldoc), its seed streams
(seeds) and its plan of units (matrix)."""

from harness.job.load import load_job
from harness.job.matrix import Unit, plan
from harness.job.spec import JobSpec

__all__ = ["JobSpec", "Unit", "load_job", "plan"]
