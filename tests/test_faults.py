"""The fault matrix: each case asserts that nothing is lost, nothing is duplicated beyond the
batches in flight, and that the final export equals an undisturbed run's.

| fault | where it is tested |
|---|---|
| a worker SIGKILLed | tests/test_run.py::test_killed_worker_loses_nothing_and_duplicates_nothing |
| the driver SIGKILLed, then a resume | test_killed_driver_takes_its_workers_and_a_resume_finishes |
| SIGTERM / requeue | tests/test_slurm.py::test_array_with_a_requeued_task_adds_up_to_the_local_run |
| two concurrent runs | test_two_concurrent_runs_train_each_unit_once; claims: test_claim_* here |
| two array sizes at once | tests/test_slurm.py::test_two_arrays_of_different_sizes_train_each_unit_once |
| a torn last line | tests/test_store.py::test_torn_tail_skipped_then_cut_by_the_next_writer |
| a corrupt middle line | tests/test_store.py::test_corrupt_middle_line_is_an_error_naming_file_and_line; |
| | test_run_refuses_a_corrupt_middle_line |
| a full disk (ENOSPC) | test_full_disk_append_keeps_whole_lines; test_full_disk_stops_the_run_and_a_resume_finishes |
| a worker out of memory | test_worker_out_of_memory_fails_its_units_and_the_run_goes_on |
| a hung training | test_hung_worker_is_killed_after_unit_timeout_and_its_unit_retried |
| NaN or an exception in training | tests/test_run.py::test_failed_trainings_are_recorded_and_retried_not_fatal |
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.job import load_job
from harness.store.claims import HOST, BatchClaims, Claims
from harness.store.store import Store, StoreFull, read_shard
from harness.training import data
from harness.units import plan
from tests.conftest import REPO, harness, write_job

ENV = {**os.environ, "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny job's export after an undisturbed run in one process: what every case must end with."""
    tmp = tmp_path_factory.mktemp("reference")
    job = write_job(tmp)
    r = harness("run", str(job), "--store", str(tmp / "runs"), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    return _export(job, tmp / "runs")


def _export(job: Path, store: Path) -> str:
    out = store.parent / "export.csv"
    r = harness("export", str(job), "--store", str(store), "--csv", str(out))
    assert r.returncode == 0, r.stderr
    return out.read_text()


def _ok_counts(job: Path, store: Path) -> Counter[str]:
    """Ok records per unit of the plan (0 for a unit with none)."""
    spec = load_job(str(job))
    oks = Counter(r["unit"] for r in Store(store, spec).records(warn=False) if r["status"] == "ok")
    return Counter({u.id: oks[u.id] for u in plan(spec)})


def _start(job: Path, store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(job), "--store", str(store),
                             "--no-progress", *args], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**ENV, **(env or {})})


def _workers(pid: int) -> list[int]:
    """The worker processes a driver spawned."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]


def _wait_for_a_record(store: Path, job: Path, timeout: float = 240) -> Path:
    """Block until some worker has recorded a unit; the shard directory."""
    shards = Store(store, load_job(str(job))).shards
    deadline = time.monotonic() + timeout
    while not (shards.is_dir() and any(p.stat().st_size for p in shards.glob("*-w*.jsonl"))):
        assert time.monotonic() < deadline, "no worker recorded anything"
        time.sleep(0.05)
    return shards


def _gone(pids: list[int], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


# --- claims: fast, no training ---------------------------------------------------------------

def test_claim_is_refused_while_its_owner_lives_and_reclaimed_after(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.read()"], stdin=subprocess.PIPE)
    claims = Claims(tmp_path, tmp_path, lease=3600)
    try:
        (tmp_path / "u1.json").write_text(json.dumps({"host": HOST, "pid": owner.pid, "time": time.time(),
                                                       "token": "other"}))
        assert not claims.claim("u1")
        assert claims.held_elsewhere("u1") is not None
    finally:
        owner.communicate(b"")
    assert claims.held_elsewhere("u1") is None and claims.claim("u1")  # its owner is gone
    assert json.loads((tmp_path / "u1.json").read_text())["pid"] == os.getpid()
    claims.release(["u1"])
    assert not (tmp_path / "u1.json").exists() and not list(tmp_path.glob(".*.tmp"))


def test_claim_from_another_host_is_reclaimed_after_the_lease(tmp_path: Path) -> None:
    claims = Claims(tmp_path, tmp_path, lease=600)
    for uid, age in (("young", 60), ("old", 6000)):
        (tmp_path / f"{uid}.json").write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "x",
                                                          "time": time.time() - age}))
    assert not claims.claim("young") and claims.claim("old")
    claims.release(["young"])  # not ours: left alone
    assert (tmp_path / "young.json").exists()
    (tmp_path / "dead.json").write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": 0}))
    claims.sweep()  # a dead owner's claim on a unit no run will touch again
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["old.json", "young.json"]


def test_a_unit_recorded_elsewhere_after_the_pass_began_is_not_trained(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path)))
    store = Store(tmp_path / "runs", spec)
    store.init()
    units = [u for u in plan(spec) if u.kind == "eval"][:3]
    claims = BatchClaims(store, spec.dispatch.lease)
    assert claims.take(units[:1]) == units[:1]
    other = store.writer("other")  # another run records unit 1 meanwhile
    other.append({"unit": units[1].id, "status": "ok", "result": {}})
    assert claims.take(units[1:]) == units[2:]
    assert not (store.dir / "claims" / f"{units[1].id}.json").exists()  # taken back at once
    assert Claims(store.root, store.dir / "claims", 1).held_elsewhere(units[0].id) is not None
    claims.release_all()
    assert not list((store.dir / "claims").glob("*.json"))


@pytest.mark.parametrize(("dispatch", "key"), [({"unit_timeout": 0}, "dispatch.unit_timeout"),
                                               ({"unit_timeout": "soon"}, "dispatch.unit_timeout"),
                                               ({"lease": -1}, "dispatch.lease")])
def test_timeout_and_lease_are_checked(tmp_path: Path, dispatch: dict[str, object], key: str) -> None:
    with pytest.raises(UserError, match=rf"tiny\.yaml:\d+: {key}: expected seconds > 0"):
        load_job(str(write_job(tmp_path, dispatch=dispatch)))
    assert load_job(str(write_job(tmp_path, dispatch={"unit_timeout": None}))).dispatch.unit_timeout is None
    spec = load_job(str(write_job(tmp_path, dispatch={"unit_timeout": 30, "lease": 60})))
    assert (spec.dispatch.unit_timeout, spec.dispatch.lease) == (30.0, 60.0)


# --- corrupt middle line ---------------------------------------------------------------------

def test_run_refuses_a_corrupt_middle_line(tmp_path: Path) -> None:
    job = write_job(tmp_path)
    spec = load_job(str(job))
    store = Store(tmp_path / "runs", spec)
    store.init(data.check(spec.data, spec.path)[0])  # as a run would have made it
    shard = store.shards / "old.jsonl"
    shard.write_bytes(b'{"format": 2, "unit": "a", "status": "ok"}\n{"format": 2, "un\n'
                      b'{"format": 2, "unit": "b", "status": "ok"}\n')
    r = harness("run", str(job), "--store", str(tmp_path / "runs"), "--executor", "debug", "--no-progress")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{shard}: line 2 is corrupt" in r.stderr
    assert [p.name for p in store.shards.iterdir()] == ["old.jsonl"]


# --- full disk --------------------------------------------------------------------------------

def _fill(disk: Path, leave: int) -> Path:
    """A file that leaves `leave` bytes free on `disk`."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - leave))
    return filler


def test_full_disk_append_keeps_whole_lines(small_disk: Path, tmp_path: Path) -> None:
    store = Store(small_disk, load_job(str(write_job(tmp_path))))
    store.init()
    filler = _fill(small_disk, 3 * 4096)
    w = store.writer("w0")
    written = 0
    with pytest.raises(StoreFull, match=r"w0\.jsonl: No space left on device.*run again"):
        for i in range(100):
            w.append({"unit": f"u{i}", "status": "ok", "result": {"pad": "x" * 1500}})
            written += 1
    assert 0 < written < 100
    numbered, torn = read_shard(store.shards / "w0.jsonl")
    recs = [r for _, r in numbered]
    assert [r["unit"] for r in recs] == [f"u{i}" for i in range(written)] and torn == 0
    filler.unlink()
    w.append({"unit": "after", "status": "ok", "result": {}})  # the same writer goes on once there is space
    w.close()
    assert [r["unit"] for _, r in read_shard(store.shards / "w0.jsonl")[0]][-2:] == [f"u{written - 1}", "after"]
    assert isinstance(StoreFull("x", OSError(28, "No space left on device")), UserError)


@pytest.mark.slow
def test_full_disk_stops_the_run_and_a_resume_finishes(small_disk: Path, tmp_path: Path, reference: str) -> None:
    """The store on a nearly full disk: the run stops with one line (exit 2, no traceback), every
    complete record reads back, and after space is freed a resume ends with the undisturbed export."""
    job = write_job(tmp_path, dispatch={"batch_units": 2})
    filler = _fill(small_disk, 6 * 4096)  # pages for the spec, a worker log, 2 claims, 2 of records
    r = harness("run", str(job), "--store", str(small_disk), "--no-progress")
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in r.stderr, r.stderr
    counts = _ok_counts(job, small_disk)  # every record reads back: no corrupt or torn line
    assert 0 < sum(counts.values()) < len(counts), counts
    store = Store(small_disk, load_job(str(job)))
    assert all(read_shard(p)[1] == 0 for p in store.shard_paths())

    filler.unlink()
    r = harness("run", str(job), "--store", str(small_disk), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert set(_ok_counts(job, small_disk).values()) == {1}
    assert _export(job, small_disk) == reference


# --- processes --------------------------------------------------------------------------------

@pytest.mark.slow
def test_killed_driver_takes_its_workers_and_a_resume_finishes(tmp_path: Path, reference: str) -> None:
    """The workers are frozen mid-training (SIGSTOP), their driver SIGKILLed, then the workers
    let go (SIGCONT): they die with the driver and write nothing more (no orphan finishes its
    batch, no BrokenPipe traceback). The dead driver's claims are reclaimed by the resume, which
    trains every unit left exactly once and ends with the undisturbed export."""
    job = write_job(tmp_path, dispatch={"batch_units": 2, "cpu_workers": 2})
    store = tmp_path / "store"
    proc = _start(job, store)
    shards = _wait_for_a_record(store, job)
    workers = _workers(proc.pid)
    assert workers
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        before = {p.name: p.read_bytes() for p in shards.glob("*.jsonl")}
        proc.kill()
        _, err = proc.communicate(timeout=120)  # EOF once every worker holding stderr is gone
    finally:
        for pid in workers:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGCONT)
    assert _gone(workers), "a worker outlived its driver"
    assert "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in shards.glob("*.jsonl")} == before
    assert list((shards.parent / "claims").glob("*.json")), "the dead driver held no claims"

    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert set(_ok_counts(job, store).values()) == {1}
    assert not list((shards.parent / "claims").glob("*.json"))
    assert _export(job, store) == reference


@pytest.mark.slow
def test_two_concurrent_runs_train_each_unit_once(tmp_path: Path, reference: str) -> None:
    """Two `harness run` on one store at once (both read an empty store at start; one with a
    worker process, one in-process): each unit is trained by one of them, and both end with
    every unit done."""
    job = write_job(tmp_path, dispatch={"batch_units": 1, "cpu_workers": 1})
    store = tmp_path / "store"
    procs = [_start(job, store), _start(job, store, "--executor", "debug")]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    counts = _ok_counts(job, store)
    assert set(counts.values()) == {1}, counts
    assert all("9/9 units done" in e for e in errs), errs
    assert _export(job, store) == reference


@pytest.mark.slow
def test_hung_worker_is_killed_after_unit_timeout_and_its_unit_retried(tmp_path: Path, reference: str) -> None:
    """A worker frozen mid-run (SIGSTOP: from the driver's side, a training that never ends) is
    killed after dispatch.unit_timeout, its unit recorded failed with the reason, retried by a
    fresh worker; the run ends with the undisturbed export."""
    job = write_job(tmp_path, dispatch={"batch_units": 1, "cpu_workers": 1, "unit_timeout": 20})
    store = tmp_path / "store"
    proc = _start(job, store)
    _wait_for_a_record(store, job)  # the first evaluation is recorded; 7 and the chain are left
    (worker,) = _workers(proc.pid)
    os.kill(worker, signal.SIGSTOP)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    spec = load_job(str(job))
    failures = [r for r in Store(store, spec).records(warn=False) if r["status"] != "ok"]
    assert failures and all(r["error"] == "timed out after 20 s (dispatch.unit_timeout)" for r in failures)
    assert _gone([worker])
    assert set(_ok_counts(job, store).values()) == {1}
    assert _export(job, store) == reference


@pytest.mark.slow
def test_worker_out_of_memory_fails_its_units_and_the_run_goes_on(tmp_path: Path, reference: str) -> None:
    """A configuration too big for the worker's memory (capped by HARNESS_WORKER_MEMORY_HEADROOM_MB,
    RLIMIT_AS; the debug executor's worker is its process): its units are recorded failed,
    retried, failed again; every other unit is trained and exports as in the undisturbed run.
    (A worker process killed outright, as by the kernel's OOM killer, is the SIGKILL case.)"""
    big = 3_000_000  # a 64 x 3M float kernel: 768 MB before the optimizer's slots
    job = write_job(tmp_path, evaluate={"configurations": [{"units": 8}, {"units": 16}, {"units": big}]},
                    dispatch={"batch_units": 4, "cpu_workers": 1, "max_retries": 1})
    store = tmp_path / "store"
    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress",
                env={"HARNESS_WORKER_MEMORY_HEADROOM_MB": "1024"}, timeout=600)
    assert r.returncode in (0, 1), r.stderr  # 1: some units failed (exit codes, issue 12)
    spec = load_job(str(job))
    states = Store(store, spec).states()
    for u in plan(spec):
        if u.kind == "eval" and u.config == {"units": big}:
            assert states[u.id].ok is None and [f["attempt"] for f in states[u.id].failures] == [1, 2]
            assert all("OOM" in f["error"] or "MemoryError" in f["error"] or "died" in f["error"]
                       for f in states[u.id].failures), states[u.id].failures
        else:
            assert states[u.id].ok is not None and not states[u.id].failures
    rows = list(csv.reader(_export(job, store).splitlines()))
    assert rows == list(csv.reader(reference.splitlines()))
