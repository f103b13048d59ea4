"""`harness slurm submit`: a job as a Slurm array of slurm/array.sh (task i of n runs the units
whose plan index is i mod n, into its own shard) plus slurm/report.sh, queued to run after it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import UserError
from harness.files import real_dir, under
from harness.job.spec import JobSpec
from harness.resources import REPO, in_checkout, slurm_dir
from harness.units import plan

ARRAY_SCRIPT, REPORT_SCRIPT = slurm_dir() / "array.sh", slurm_dir() / "report.sh"
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize: task indices 0-1000
ARRAY_ID = "<array job id>"  # stands for the array's id in the report job's command


def partition_has_gpus(partition: str | None) -> bool | None:
    """Whether `partition` (else the default one) offers gpu gres, per sinfo; None if unknown."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P|%G"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split("|", 1) for line in out.stdout.splitlines() if "|" in line]
    gres = [g for p, g in rows if (p.rstrip("*") == partition if partition else p.endswith("*"))]
    return any("gpu" in g for g in gres) if out.returncode == 0 and gres else None


def max_array_size() -> int:
    """The cluster's MaxArraySize (task indices must stay below it), per `scontrol show config`;
    Slurm's default where scontrol cannot say."""
    if shutil.which("scontrol") is None:
        return DEFAULT_MAX_ARRAY_SIZE
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            if int(value.strip()) == 0:
                raise UserError("this cluster has job arrays turned off (MaxArraySize = 0 in `scontrol show "
                                "config`); run `harness run JOB --part I/N` in N ordinary jobs instead")
            return int(value.strip())
    return DEFAULT_MAX_ARRAY_SIZE


def sbatch_commands(spec: JobSpec, store_root: str, partition: str | None, max_parallel: int | None,
                    gpus: bool | None) -> tuple[list[str], list[str]]:
    """The array's and the report job's sbatch command lines (the latter holds ARRAY_ID).

    The array has one task per unit, at most the cluster's MaxArraySize; a task asks for one GPU where the
    partition has them (else none) and one CPU per worker thread the job file implies."""
    store = Path(store_root).resolve()
    env = {"STORE": str(store)}
    if (Path(sys.prefix) / "bin" / "activate").is_file():
        env["VENV"] = sys.prefix  # the tasks use the environment that submitted them
    for key, value in env.items():
        if "," in value:
            raise UserError(f"{key} path {value!r} contains a comma, which sbatch --export cannot pass")
    d = spec.dispatch
    workers = d.workers_per_gpu if gpus is not False else d.cpu_workers or 1
    logs = under(store, spec.name, "slurm-logs", what="log directory")
    workdir = REPO if in_checkout() else Path.cwd()  # the tasks start where a checkout's .venv is
    common = [f"--chdir={workdir}", "--export=" + ",".join(["ALL"] + [f"{k}={v}" for k, v in env.items()])]
    if partition:
        common.append(f"--partition={partition}")
    tasks = min(len(plan(spec)), max_array_size())  # more units than tasks: task i takes i, i + n, ...
    throttle = f"%{max_parallel}" if max_parallel else ""
    gres = [] if gpus is None else ["--gres=gpu:1" if gpus else "--gres=none"]
    job = str(Path(spec.path).resolve())
    array = ["sbatch", "--parsable", f"--job-name=harness-{spec.name}", f"--array=0-{tasks - 1}{throttle}",
             *gres, f"--cpus-per-task={workers * (spec.determinism.intra_op_threads or 1)}",
             f"--output={logs}/%x-%A_%a.out", *common, str(ARRAY_SCRIPT), job]
    report = ["sbatch", "--parsable", f"--job-name=harness-{spec.name}-report", "--gres=none",
              f"--dependency=afterany:{ARRAY_ID}", f"--output={logs}/%x-%j.out", *common,
              str(REPORT_SCRIPT), job]
    return array, report


def _sbatch(cmd: list[str]) -> str:
    """Run one sbatch --parsable; its job id, or a UserError with sbatch's own message."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"sbatch could not run: {exc}") from None
    job_id = out.stdout.strip().split(";")[0]
    if out.returncode != 0 or not job_id.isdigit():
        lines = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()
        raise UserError(f"sbatch failed (exit {out.returncode}): {lines[-1]}")
    return job_id


def submit(spec: JobSpec, store_root: str, partition: str | None = None, max_parallel: int | None = None,
           dry_run: bool = False) -> int:
    """Submit the array and its report job and print both ids (dry_run: print the commands)."""
    array, report = sbatch_commands(spec, store_root, partition, max_parallel, partition_has_gpus(partition))
    if dry_run:
        print(shlex.join(array))
        print(shlex.join(report))
        return 0
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: run this where Slurm's client commands are installed "
                        "(or start a one-node cluster with slurm/one-node-cluster.sh)")
    if not ARRAY_SCRIPT.is_file() or not REPORT_SCRIPT.is_file():
        raise UserError(f"{ARRAY_SCRIPT.parent}: slurm/array.sh and slurm/report.sh not found; submit "
                        f"from a checkout of the harness repository")
    store = Path(store_root).resolve()
    real_dir(store, store / spec.name / "slurm-logs", create=True)
    array_id = _sbatch(array)
    tasks = next(a for a in array if a.startswith("--array=")).removeprefix("--array=")
    print(f"array job {array_id}: tasks {tasks} of {spec.name}, store {Path(store_root).resolve()}")
    try:
        report_id = _sbatch([a.replace(ARRAY_ID, array_id) for a in report])
    except UserError as exc:
        raise UserError(f"array job {array_id} is queued, but its report job was not: {exc}") from None
    print(f"report job {report_id}: after {array_id} ends (afterany)")
    return 0
