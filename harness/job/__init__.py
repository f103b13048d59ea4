"""The job: a YAML file validated into a `JobSpec` (spec, load, yamldoc), its seed streams
(seeds) and what identifies a unit of work (matrix); the unit kinds that plan them are
`harness.units`."""

from harness.job.load import load_job
from harness.job.matrix import Unit
from harness.job.spec import JobSpec

__all__ = ["JobSpec", "Unit", "load_job"]
