"""Slurm job arrays on a real one-node cluster (slurm/one-node-cluster.sh, two fake GPUs).

The cluster tests need Slurm installed and root; elsewhere they skip, except under CI=true where
a missing Slurm fails. The submit command's sbatch lines are also checked with a fake sinfo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.job import JobSpec, load_job
from harness.store.store import Store, read_shard
from harness.units import plan
from tests.conftest import REPO, harness, write_job

CLUSTER = REPO / "slurm" / "one-node-cluster.sh"
SLURM_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TASKS = 4  # the array of the end-to-end test


def _run(*cmd: str, timeout: int = 60, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _wait(job_id: str, timeout: int = 300) -> int:
    """Block until the job (all array tasks) ends; the worst task's exit code."""
    return subprocess.run([str(CLUSTER), "wait", job_id], timeout=timeout).returncode


def _job_field(job_id: str, field: str) -> list[str]:
    """One field of `scontrol show job` for each task of a job."""
    return re.findall(rf"\b{field}=(\S+)", _run("scontrol", "-o", "show", "job", job_id))


@pytest.fixture(scope="session")
def cluster() -> Iterator[None]:
    """A running one-node cluster with 2 fake GPUs; started (and stopped) here unless already up."""
    missing = [c for c in ("sbatch", "slurmctld", "slurmd", "munged") if not shutil.which(c, path=SLURM_PATH)]
    reason = (f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
              if missing else "starting a one-node Slurm cluster needs root" if os.geteuid() != 0 else "")
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    env = {**os.environ, "PATH": SLURM_PATH, "SLURM_CI_GPUS": "2"}
    was_up = "slurmctld up" in _run(str(CLUSTER), "status", env=env)
    _run(str(CLUSTER), "start", env=env)
    yield
    if not was_up:
        _run(str(CLUSTER), "stop", env=env)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny digits job: 8 evaluation units and 1 study unit (a 3-trial chain), 12 trainings."""
    return write_job(tmp_path_factory.mktemp("job"))


@pytest.fixture(scope="module")
def local_csv(cluster: None, job: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The job run locally in one process, exported: what the cluster's shards must add up to."""
    tmp = tmp_path_factory.mktemp("local")
    for args in (("run", str(job), "--executor", "debug", "--no-progress"),
                 ("export", str(job), "--csv", str(tmp / "local.csv"))):
        p = harness(*args, "--store", str(tmp / "runs"))
        assert p.returncode == 0, p.stderr
    return tmp / "local.csv"


@dataclass
class ArrayRun:
    job_id: str
    spec: JobSpec
    store: Path
    logs: Path
    killed: list[dict[str, Any]]  # task 0's records when it was cancelled


@pytest.fixture(scope="module")
def array_run(cluster: None, job: Path, tmp_path_factory: pytest.TempPathFactory) -> ArrayRun:
    """slurm/array.sh as a 4-task array, 2 at a time, each with one fake GPU; task 0 is cancelled
    while it trains its first unit (the study chain), then requeued: same task id, same shard."""
    tmp = tmp_path_factory.mktemp("array")
    spec = load_job(str(job))
    store = Store(tmp / "runs", spec)
    env = {**os.environ, "STORE": str(tmp / "runs"), "VENV": sys.prefix, "PYTHONHASHSEED": "0"}
    job_id = _run("sbatch", "--parsable", f"--array=0-{TASKS - 1}%2", "--gres=gpu:1", "--cpus-per-task=1",
                  "--mem=1G", f"--chdir={REPO}", f"--output={tmp}/%A_%a.out",
                  str(REPO / "slurm" / "array.sh"), str(job), env=env).strip().split(";")[0]
    shard0 = store.shards / f"slurm-{job_id}-0-w0.jsonl"
    deadline = time.monotonic() + 180
    while not shard0.exists():  # the worker opens its shard once TensorFlow is up, then trains
        assert time.monotonic() < deadline, "task 0 never started its worker"
        time.sleep(0.1)
    time.sleep(1.0)
    _run("scancel", f"{job_id}_0")
    while _job_field(f"{job_id}_0", "JobState") != ["CANCELLED"]:
        assert time.monotonic() < deadline, "task 0 was not cancelled"
        time.sleep(0.2)
    killed = [r for _, r in read_shard(shard0)[0]]
    _run("scontrol", "requeue", f"{job_id}_0")
    _run("scontrol", "update", f"jobid={job_id}_0", "StartTime=now")  # requeue delays the start
    assert _wait(job_id) == 0, (tmp / f"{job_id}_0.out").read_text()
    return ArrayRun(job_id, spec, store.dir.parent.parent, tmp, killed)


@pytest.mark.slurm
def test_array_with_a_requeued_task_adds_up_to_the_local_run(array_run: ArrayRun, local_csv: Path,
                                                              tmp_path: Path) -> None:
    run, units = array_run, plan(array_run.spec)
    study = next(u for u in units if u.kind == "study")
    assert study.index % TASKS == 0  # the unit task 0 was killed in
    assert not [r for r in run.killed if r["status"] == "ok"], "a unit was recorded before it finished"

    store = Store(run.store, run.spec)
    states = store.states()
    assert sorted(states) == sorted(u.id for u in units) and all(st.ok for st in states.values())
    oks = [r for r in store.records() if r["status"] == "ok"]
    assert len(oks) == len(units), "a finished unit was trained twice"
    for rec in oks:  # task i of n took the units whose plan index is i mod n, into its own shard
        assert rec["worker"] == f"slurm-{run.job_id}-{rec['index'] % TASKS}-w0"
        assert rec["env"]["cuda_visible_devices"] in ("0", "1") and not rec["env"]["gpus"]
    assert "restart 1" in (run.logs / f"{run.job_id}_0.out").read_text()

    p = harness("export", str(run.spec.path), "--store", str(run.store), "--csv", str(tmp_path / "slurm.csv"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "slurm.csv").read_text() == local_csv.read_text()


@pytest.mark.slurm
def test_two_arrays_of_different_sizes_train_each_unit_once(cluster: None, job: Path, local_csv: Path,
                                                            tmp_path: Path) -> None:
    """A 1-task and a 2-task array on one store at once (the node's 2 CPUs run task 0 of each
    together; both read an empty store) shard the plan differently: task 0 of 1 takes every unit,
    task 0 of 2 the even ones. Claims make each unit trained by one task, and the export adds up."""
    env = {**os.environ, "STORE": str(tmp_path / "runs"), "VENV": sys.prefix, "PYTHONHASHSEED": "0"}
    ids = [_run("sbatch", "--parsable", f"--array=0-{n - 1}", "--gres=none", "--cpus-per-task=1", "--mem=1G",
                f"--chdir={REPO}", f"--output={tmp_path}/%A_%a.out", str(REPO / "slurm" / "array.sh"), str(job),
                env=env).strip().split(";")[0] for n in (1, 2)]
    for job_id in ids:
        assert _wait(job_id) == 0, [p.read_text() for p in tmp_path.glob("*.out")]
    spec = load_job(str(job))
    store = Store(tmp_path / "runs", spec)
    oks = [r["unit"] for r in store.records() if r["status"] == "ok"]
    assert sorted(oks) == sorted(u.id for u in plan(spec)), "a unit was trained twice, or not at all"
    assert not list((store.dir / "claims").glob("*.json"))
    p = harness("export", str(job), "--store", str(tmp_path / "runs"), "--csv", str(tmp_path / "two.csv"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "two.csv").read_text() == local_csv.read_text()


@pytest.mark.slurm
def test_submit_queues_the_array_and_a_report_after_it(array_run: ArrayRun, tmp_path: Path) -> None:
    """A real submit into the finished store: every task finds its units done, then the report runs."""
    before = sorted(p.name for p in Store(array_run.store, array_run.spec).shards.iterdir())
    p = harness("slurm", "submit", str(array_run.spec.path), "--store", str(array_run.store),
                "--max-parallel", "2", env={"SBATCH_MEM_PER_NODE": "1G", "REPORTS": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    array_id, report_id = re.search(r"array job (\d+):.*\nreport job (\d+):", p.stdout).groups()
    assert _wait(report_id) == 0 and _wait(array_id) == 0
    assert len(_job_field(array_id, "ArrayTaskId")) == len(plan(array_run.spec))
    assert _job_field(report_id, "StartTime")[0] >= max(_job_field(array_id, "EndTime"))
    assert (tmp_path / f"{array_run.spec.name}.md").is_file()
    assert sorted(p.name for p in Store(array_run.store, array_run.spec).shards.iterdir()) == before


@pytest.mark.slurm
def test_workers_per_gpu_share_the_gpu_slurm_gives(cluster: None, tmp_path: Path) -> None:
    """One task (--array=0; array.sh's own --array would start 16) with one fake GPU and
    workers_per_gpu: 2, on shard 1 of 4 (two batches): two workers started on that one GPU. Which
    worker takes which batch is up to timing (one may finish both before the other is ready)."""
    job = write_job(tmp_path, dispatch={"workers_per_gpu": 2})
    env = {**os.environ, "STORE": str(tmp_path / "runs"), "VENV": sys.prefix, "PYTHONHASHSEED": "0"}
    job_id = _run("sbatch", "--parsable", "--array=0", "--gres=gpu:1", "--cpus-per-task=1", "--mem=1G",
                  f"--chdir={REPO}", f"--output={tmp_path}/%A_%a.out", str(REPO / "slurm" / "array.sh"),
                  str(job), "--part", "1/4", env=env).strip().split(";")[0]
    assert _wait(job_id) == 0, (tmp_path / f"{job_id}_0.out").read_text()
    recs = list(Store(tmp_path / "runs", load_job(str(job))).records())
    assert sorted(r["index"] for r in recs) == [1, 5] and all(r["status"] == "ok" for r in recs)
    (gpu,) = {r["env"]["cuda_visible_devices"] for r in recs}
    assert gpu != "-1"
    logs = sorted((tmp_path / "runs").glob("*/*/logs/*.log"))
    assert [p.name for p in logs] == [f"slurm-{job_id}-0-w0.log", f"slurm-{job_id}-0-w1.log"]
    for log in logs:
        assert f"CUDA_VISIBLE_DEVICES={gpu} " in log.read_text()


@pytest.mark.slurm
def test_submit_dry_run_and_errors(cluster: None, job: Path, tmp_path: Path) -> None:
    p = harness("slurm", "submit", str(job), "--store", str(tmp_path), "--max-parallel", "3", "--dry-run")
    assert p.returncode == 0, p.stderr
    array, report = p.stdout.splitlines()
    assert array.startswith("sbatch ") and report.startswith("sbatch ")
    for token in ("--array=0-8%3", "--gres=gpu:1", "--cpus-per-task=1", f"STORE={tmp_path}",
                  f"{REPO}/slurm/array.sh {job}"):
        assert token in array
    assert "'--dependency=afterany:<array job id>'" in report and f"{REPO}/slurm/report.sh {job}" in report
    assert not list(tmp_path.iterdir()), "a dry run wrote something"

    p = harness("slurm", "submit", str(job), "--store", str(tmp_path), "--partition", "nosuch")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "sbatch failed" in p.stderr and "partition" in p.stderr


def test_submit_without_sbatch_is_a_user_error(job: Path, tmp_path: Path) -> None:
    p = harness("slurm", "submit", str(job), "--store", str(tmp_path), env={"PATH": str(tmp_path)})
    assert p.returncode == 2 and p.stderr.startswith("harness: error: sbatch not found")
    p = harness("slurm", "submit", str(job), "--max-parallel", "0", "--dry-run", env={"PATH": str(tmp_path)})
    assert p.returncode == 2 and "--max-parallel" in p.stderr


def test_submit_asks_for_gpus_only_where_the_partition_has_them(job: Path, tmp_path: Path) -> None:
    """sinfo faked at the subprocess boundary: a default CPU partition and a GPU one."""
    sinfo = tmp_path / "sinfo"
    sinfo.write_text("#!/bin/sh\nprintf 'cpu*|(null)\\ngpu|gpu:a100:4(S:0-1)\\n'\n")
    sinfo.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    cpu = harness("slurm", "submit", str(job), "--dry-run", env=env).stdout.splitlines()[0]
    gpu = harness("slurm", "submit", str(job), "--dry-run", "--partition=gpu", env=env).stdout.splitlines()[0]
    assert "--gres=none" in cpu and "--partition" not in cpu
    assert "--gres=gpu:1" in gpu and "--partition=gpu" in gpu


def test_array_is_sized_to_the_clusters_max_array_size(job: Path, tmp_path: Path) -> None:
    """scontrol faked at the subprocess boundary: MaxArraySize 4 caps the 9-unit job at tasks 0-3."""
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\nprintf 'MaxArraySize            = 4\nMaxJobCount = 10000\n'\n")
    scontrol.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    p = harness("slurm", "submit", str(job), "--dry-run", "--max-parallel", "2", env=env)
    assert p.returncode == 0, p.stderr
    assert "--array=0-3%2" in p.stdout.splitlines()[0]
    scontrol.write_text("#!/bin/sh\nprintf 'MaxArraySize            = 0\n'\n")
    p = harness("slurm", "submit", str(job), "--dry-run", env=env)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "job arrays turned off" in p.stderr


def test_array_task_numbering_maps_to_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """--array=3-9:3 numbers its 3 tasks 3, 6, 9: shards 0, 1, 2 of 3."""
    from harness.dispatch.array import parse_part
    for var, value in (("SLURM_ARRAY_TASK_MIN", "3"), ("SLURM_ARRAY_TASK_STEP", "3"),
                       ("SLURM_ARRAY_TASK_COUNT", "3")):
        monkeypatch.setenv(var, value)
    for task, index in (("3", 0), ("6", 1), ("9", 2)):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        assert parse_part(None) == (index, 3)
    assert parse_part("1/2") == (1, 2)
