"""End to end through the CLI: run, resume, export, report, status, local workers, failures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.job import load_job
from harness.store import Store
from harness.units import plan
from tests.conftest import REPO, harness, write_job


def _export(job: Path, store: Path, out: Path) -> list[dict[str, str]]:
    r = harness("export", str(job), "--store", str(store), "--csv", str(out))
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        return list(csv.DictReader(f))


def _report(job: Path, store: Path, tmp_path: Path) -> str:
    r = harness("report", str(job), "--store", str(store), "--out", str(tmp_path / "reports"))
    assert r.returncode == 0, r.stderr
    return (tmp_path / "reports" / "tiny.md").read_text()


def _share_columns(text: str) -> list[list[float]]:
    """The share column of every decomposition table in the report."""
    tables, current = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| source") and "share" in cells:
            current, col = [], cells.index("share")
        elif current is not None and line.startswith("|") and not line.startswith("|--"):
            if cells[0] != "total":
                current.append(float(cells[col].rstrip("%")))
        elif current is not None and not line.startswith("|"):
            tables.append(current)
            current = None
    return tables


def test_debug_run_resume_export_report(tmp_path: Path) -> None:
    job, store = write_job(tmp_path), tmp_path / "store"
    pending = harness("status", str(job), "--store", str(store), "--check")
    assert pending.returncode == 1 and "8 pending" in pending.stdout, pending.stdout
    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    spec = load_job(str(job))
    states = Store(store, spec).states()
    assert all(states[u.id].ok for u in plan(spec))
    env = next(iter(states.values())).ok["env"]  # the hardware its bits belong to
    assert env["cpu_isa"] and isinstance(env["cpu_flags"], list) and {"cpu", "gpus", "gpu_driver"} <= set(env)

    again = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress")
    assert again.returncode == 0 and "0 trainings" in again.stderr, again.stderr

    rows = _export(job, store, tmp_path / "out.csv")
    kinds = [row["kind"] for row in rows]
    assert kinds.count("eval") == 2 * 2 * 2 and kinds.count("trial") == 3 and kinds.count("reeval") == 1
    assert {"units", "init_seed", "order_seed", "bo_seed", "accuracy", "loss"} <= set(rows[0])

    text = _report(job, store, tmp_path)
    for section in ("## Where the spread comes from", "## The optimiser", "## Decisions", "## Plots",
                    "## Configurations over the seed matrix", "Winner's curse"):
        assert section in text
    for png in ("tiny_shares.png", "tiny_sources.png", "tiny_chains.png"):
        assert (tmp_path / "reports" / png).stat().st_size > 1000
    for shares in _share_columns(text):
        assert abs(sum(shares) - 100) < 0.2, shares
    assert "95% CI (GPQ) of std (pts)" in text and "generalized pivotal quantities (GPQ)" in text
    assert "> Warning: only 2 init seeds: the 95% interval of its std spans [" in text
    assert any(ln.startswith("| hardware ") and f"| {env['cpu']} [{env['cpu_isa']}] (" in ln
               for ln in text.splitlines()) and "mixes" not in text

    # the report is read from the store: change one stored accuracy and the tables change
    shard = next(p for p in Store(store, spec).shards.glob("*.jsonl"))
    lines = shard.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if '"kind": "eval"' in ln)
    rec = json.loads(lines[i])
    rec["result"]["metrics"]["accuracy"] = 0.0
    lines[i] = json.dumps(rec, sort_keys=True)
    shard.write_text("\n".join(lines) + "\n")
    changed = _report(job, store, tmp_path)
    assert changed != text
    table = changed.split("## Configurations over the seed matrix")[1].split("## Plots")[0]
    mins = [float(ln.strip("|").split("|")[-2]) for ln in table.splitlines() if ln.startswith("| units")]
    assert 0.0 in mins and 0.0 not in [float(ln.strip("|").split("|")[-2])
                                       for ln in text.split("## Configurations over")[1].splitlines()
                                       if ln.startswith("| units")]

    status = harness("status", str(job), "--store", str(store), "--check")
    assert "eval  units: 8 done, 0 failed, 0 pending" in status.stdout, status.stdout
    assert status.returncode == 0, status.stdout
    verified = harness("verify", str(job), "--store", str(store))  # a real run's store is clean
    assert verified.returncode == 0 and ", 0 bad line(s); 0 duplicate(s)" in verified.stdout, verified.stdout


def test_two_workers_export_what_one_process_exports(tmp_path: Path) -> None:
    """Same results whatever the executor and worker count (op determinism on, CPU)."""
    job = write_job(tmp_path)
    for executor, workers, store in (("debug", "1", "a"), ("local", "2", "b")):
        r = harness("run", str(job), "--store", str(tmp_path / store), "--executor", executor,
                    "--workers", workers, "--no-progress")
        assert r.returncode == 0, r.stderr
    a = _export(job, tmp_path / "a", tmp_path / "a.csv")
    b = _export(job, tmp_path / "b", tmp_path / "b.csv")
    assert a == b


@pytest.mark.parametrize("engine", ["exact", "vectorized"])
def test_failed_trainings_are_recorded_and_retried_not_fatal(tmp_path: Path, engine: str) -> None:
    """A diverging training is a failed record of its own unit (under `vectorized` too, where the
    units of a batch train together), retried up to max_retries, and the run goes on."""
    job = write_job(tmp_path, training={"optimizer": "sgd", "learning_rate": 1e30, "engine": engine},
                    dispatch={"max_retries": 1}, evaluate={"configurations": [{"units": 8}]},
                    seeds={"init": 3, "order": 1})
    store = tmp_path / "store"
    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress")
    assert r.returncode == 1, r.stderr  # some units failed: a script or a Slurm task can tell
    assert "0/4 units done, 4 failed" in r.stderr and r.stderr.count("  failed unit ") == 4, r.stderr
    assert "non-finite" in r.stderr
    status = harness("status", str(job), "--store", str(store), "--check")
    assert status.returncode == 1 and "3 failed" in status.stdout, status.stdout
    states = Store(store, load_job(str(job))).states()
    assert all(st.ok is None and len(st.failures) == 2 for st in states.values())
    units = plan(load_job(str(job)))
    assert sorted(states) == sorted(u.id for u in units) and [u.kind for u in units].count("eval") == 3
    for u in units:
        failures = states[u.id].failures
        assert [f["attempt"] for f in failures] == [1, 2]
        assert all(f["engine"] == engine for f in failures)
        if u.kind == "eval":  # a study fails as "every trial of the chain failed"
            assert all("non-finite" in f["error"] for f in failures), failures


def test_killed_worker_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    job = write_job(tmp_path, seeds={"init": 4, "order": 3}, dispatch={"batch_units": 2, "cpu_workers": 2})
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(job), "--store", str(store),
                             "--no-progress"], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    spec = load_job(str(job))
    shards = Store(store, spec).shards
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until a worker has recorded something, then kill it
        if shards.is_dir() and any(p.stat().st_size for p in shards.glob("*-w*.jsonl")):
            break
        time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    workers = [int(c) for c in children
               if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
    assert workers, children
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    states = Store(store, spec).states()
    assert all(states[u.id].ok for u in plan(spec)), err
    assert sum(st.disagreements for st in states.values()) == 0


def test_fit_workers_are_recycled_and_nothing_is_lost(tmp_path: Path) -> None:
    """Engine fit grows a process per training: its workers are replaced after N trainings."""
    from harness.dispatch.local import LocalExecutor
    from harness.store.claims import BatchClaims
    from harness.units import batches

    spec = load_job(str(write_job(tmp_path, training={"engine": "fit"}, dispatch={"batch_units": 2})))
    store = Store(tmp_path / "store", spec)
    store.init()
    executor = LocalExecutor(spec, store, "fit", workers=1)
    executor.recycle_after = 3
    units = [u for u in plan(spec) if u.kind == "eval"]
    seen: list[str] = []
    executor.execute([(b, {u.id: 1 for u in b}) for b in batches(units, 2)], lambda uid, st, n: seen.append(st),
                     BatchClaims(store, spec.dispatch.lease))
    assert seen == ["ok"] * len(units)
    assert len(list(store.shards.glob("*-w*.jsonl"))) >= 2  # a replacement worker wrote its own shard
    states = store.states()
    assert all(states[u.id].ok["engine"] == "fit" for u in units)


def test_workers_that_cannot_start_stop_the_run(tmp_path: Path) -> None:
    """Keras's own config names a backend that does not exist: the driver (which never imports
    Keras) starts workers that die on import; after a few such starts in a row the run stops with
    one line naming the worker's log, instead of restarting workers forever."""
    home = tmp_path / "keras-home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "nosuch"}))
    job = write_job(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(job), "--store", str(tmp_path / "store"),
                        "--workers", "1", "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**env, "KERAS_HOME": str(home), "PYTHONHASHSEED": "0"})
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("harness: error: worker local-") and "before it was ready, 3 starts in a row" in last
    assert "logs/local-" in last and "running nosuch" in r.stderr  # the engine notice read the same config


def test_successor_mode_starts_only_the_workers_a_mode_needs() -> None:
    from harness.dispatch.local import successor_mode
    assert successor_mode([], "on", [], True) is None
    assert successor_mode(["off", "on"], "on", ["off"], True) == "on"      # its own mode still queued
    assert successor_mode(["off", "off"], "on", ["off"], True) == "off"    # 2 off batches, 1 off worker
    assert successor_mode(["off"], "on", ["off"], True) is None            # enough off workers already
    assert successor_mode(["off"], "on", [], False) == "on"                # TensorFlow: switches in-process
