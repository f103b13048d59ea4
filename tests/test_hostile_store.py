"""Issue 19's cases, as a hostile user and an unlucky one would meet them: the store opens only what
it made (links, FIFOs and devices planted in it are refused, nothing outside it is written), the
data are part of what results depend on (changed data never reuse old results), every data source
is checked before anything runs, the driver's check of a user's code is bounded, a full disk is one
line everywhere, and the exit codes say what happened. Each case asserts the exit code, the one
line, and that a victim file outside the store is unchanged."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.job import load_job
from harness.store import Store
from tests.conftest import REPO, TINY_JOB, deep_merge, harness


def write_job(directory: Path, replace: dict[str, object] | None = None, **overrides: object) -> Path:
    """The tiny digits job without its search: eight trainings of seconds (`overrides` merged in,
    `replace` sections swapped whole)."""
    base = {k: v for k, v in TINY_JOB.items() if k != "search"}
    job = {**deep_merge(base, overrides), **(replace or {})}
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("harness: error:")]


def _one_line(r: subprocess.CompletedProcess[str], code: int = 2, *needles: str) -> str:
    """The run's exit code is `code`, its stderr one error line (no traceback) holding `needles`."""
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = _errors(r.stderr)
    assert len(errors) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file outside every store (a token, say): no case may change it."""
    path = tmp_path / "outside" / "token.txt"
    path.parent.mkdir()
    path.write_text("secret token\n")
    before = _sha(path)
    yield path
    assert _sha(path) == before and sorted(p.name for p in path.parent.iterdir()) == ["token.txt"]


def _run(job: Path, root: Path, *extra: str, env: dict[str, str] | None = None,
         timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return harness("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress", *extra,
                   env=env, timeout=timeout)


# --- data identity -----------------------------------------------------------------------------

def _digits_csv(path: Path, rows: int = 300) -> None:
    from sklearn.datasets import load_digits
    d = load_digits()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"p{i}" for i in range(64)] + ["digit"])
        for x, y in zip(d.data[:rows], d.target[:rows], strict=True):
            w.writerow([f"{v:g}" for v in x] + [int(y)])


@pytest.mark.parametrize("source", ["csv", pytest.param("npz", marks=pytest.mark.slow)])
def test_changed_data_never_reuse_old_results(tmp_path: Path, source: str) -> None:
    """A run, a rerun on the same data (nothing trained), the data edited behind the job: refused
    with one line naming the data file and the store; the old results stay untouched."""
    if source == "csv":
        data = tmp_path / "d.csv"
        _digits_csv(data)
        spec = {"source": "csv", "path": "d.csv", "target": "digit", "splits": {"test": 0.25}}
    else:
        from sklearn.datasets import load_digits
        d = load_digits()
        data = tmp_path / "d.npz"
        np.savez(data, x=d.data[:300], y=d.target[:300])
        spec = {"source": "npz", "path": "d.npz", "splits": {"test": 0.25}}
    job = write_job(tmp_path, replace={"data": spec})
    root = tmp_path / "runs"
    assert _run(job, root).returncode == 0
    again = _run(job, root)
    assert again.returncode == 0 and "0 trainings" in again.stderr, again.stderr
    store = Store(root, load_job(str(job)))
    shards = {p: _sha(p) for p in store.shard_paths()}
    if source == "csv":
        data.write_text(data.read_text().replace("\n0,", "\n1,", 1))  # one pixel of one row
    else:
        np.savez(data, x=d.data[:300] * 1.0, y=np.roll(d.target[:300], 1))
    line = _one_line(_run(job, root), 2, str(data), str(store.dir), "data changed")
    assert "move" in line and {p: _sha(p) for p in store.shard_paths()} == shards


def test_the_same_numbers_saved_anew_are_the_same_data(tmp_path: Path) -> None:
    """The identity is of the arrays, not the file's bytes: an npz rewritten compressed resumes."""
    from sklearn.datasets import load_digits
    d = load_digits()
    data = tmp_path / "d.npz"
    np.savez(data, x=d.data[:200], y=d.target[:200])
    job = write_job(tmp_path, replace={"data": {"source": "npz", "path": "d.npz"}})
    assert _run(job, tmp_path / "runs").returncode == 0
    np.savez_compressed(data, x=d.data[:200], y=d.target[:200])
    r = _run(job, tmp_path / "runs")
    assert r.returncode == 0 and "0 trainings" in r.stderr, r.stderr


# --- the store opens only what it made -------------------------------------------------------------

def _store_of(tmp_path: Path, job: Path) -> Store:
    root = tmp_path / "runs"
    assert _run(job, root).returncode == 0
    return Store(root, load_job(str(job)))


@pytest.mark.parametrize("planted", ["shards", "logs", "claims"])
def test_a_store_directory_planted_as_a_link_is_refused(tmp_path: Path, victim: Path, planted: str) -> None:
    job = write_job(tmp_path, )
    store = Store(tmp_path / "runs", load_job(str(job)))
    (store.dir).mkdir(parents=True)
    (store.dir / planted).symlink_to(victim.parent, target_is_directory=True)
    _one_line(_run(job, store.root), 2, str(store.dir / planted), "symbolic link")


def test_a_shard_planted_as_a_link_is_never_written_through(tmp_path: Path, victim: Path) -> None:
    """The shard a Slurm array task will write, planted as a link to a token file: refused, the
    token untouched (it was truncated and written through)."""
    job = write_job(tmp_path, )
    store = Store(tmp_path / "runs", load_job(str(job)))
    store.init()
    env = {"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "1"}
    for name in ("slurm-77-0", "slurm-77-0-w0"):
        (store.shards / f"{name}.jsonl").symlink_to(victim)
    _one_line(_run(job, store.root, env=env), 2, "slurm-77-0", "symbolic link")
    r = harness("run", str(job), "--store", str(store.root), "--no-progress", env=env)
    _one_line(r, 2, "slurm-77-0-w0.jsonl", "symbolic link")


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo"])
@pytest.mark.parametrize("verb", ["status", "report", "export", "verify"])
def test_a_shard_that_is_no_file_is_refused_without_hanging(tmp_path: Path, kind: str, verb: str) -> None:
    job = write_job(tmp_path, )
    store = Store(tmp_path / "runs", load_job(str(job)))
    store.init()
    odd = store.shards / "odd.jsonl"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to("/dev/zero")
    extra = {"report": ["--out", str(tmp_path / "rep")], "export": ["--csv", str(tmp_path / "x.csv")]}.get(verb, [])
    r = harness(verb, str(job), "--store", str(store.root), *extra, timeout=60)
    _one_line(r, 2, str(odd), "a FIFO" if kind == "fifo" else "symbolic link")
    assert not (tmp_path / "x.csv").exists()


def test_verify_repair_never_appends_through_a_planted_quarantine_link(tmp_path: Path, victim: Path) -> None:
    job = write_job(tmp_path, )
    store = _store_of(tmp_path, job)
    [shard] = store.shard_paths()
    with shard.open("ab") as f:
        f.write(b"garbage line\n")
    Path(str(shard) + ".quarantine").symlink_to(victim)
    r = harness("verify", str(job), "--store", str(store.root), "--repair")
    _one_line(r, 2, ".quarantine", "symbolic link")


def test_a_record_with_an_unknown_status_is_refused(tmp_path: Path) -> None:
    job = write_job(tmp_path, )
    store = _store_of(tmp_path, job)
    [shard] = store.shard_paths()
    rec = json.loads(shard.read_text().splitlines()[0])
    shard.write_text(shard.read_text() + json.dumps({**rec, "status": "okk"}) + "\n")
    _one_line(harness("status", str(job), "--store", str(store.root)), 2, "unknown status 'okk'")


# --- every data source checked before anything runs ------------------------------------------------

def _mnist(path: Path, n_train: int = 60, n_test: int = 20, **change: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    np.savez(path, **{**arrays, **change})


STAGED = [
    ("lengths", {"x_train": np.zeros((50, 28, 28), np.uint8), "y_train": np.zeros(3, np.uint8)},
     "x_train has 50 rows but y_train has 3"),
    ("label 300", {"y_train": np.full(60, 300, np.int64)}, "labels from 300 to 300; expected 0..9"),
    ("NaN", {"x_test": np.full((20, 28, 28), np.nan, np.float32)}, "x_test holds NaN or inf"),
    ("object", {"y_test": np.array(["a"] * 20, dtype=object)}, "not a readable .npz"),
]


@pytest.mark.parametrize("case,change,message", STAGED, ids=[c[0] for c in STAGED])
def test_staged_mnist_is_checked_as_an_npz_is(tmp_path: Path, case: str, change: dict[str, np.ndarray],
                                               message: str) -> None:
    _mnist(tmp_path / "mnist.npz", **change)
    job = write_job(tmp_path, replace={"data": {"source": "mnist", "path": "mnist.npz"}})
    _one_line(_run(job, tmp_path / "runs"), 2, message)
    assert not (tmp_path / "runs").exists()


def test_staged_mnist_path_is_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    _mnist(tmp_path / "jobs" / "mnist.npz")
    job = write_job(tmp_path / "jobs", replace={"data": {"source": "mnist", "path": "mnist.npz"}})
    r = harness("plan", str(job), cwd=tmp_path)
    assert r.returncode == 0
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(job), "--store", str(tmp_path / "runs"),
                        "--executor", "debug", "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert r.returncode == 0, r.stderr


def _csv_job(tmp_path: Path, body: bytes) -> Path:
    (tmp_path / "d.csv").write_bytes(body)
    return write_job(tmp_path, replace={"data": {"source": "csv", "path": "d.csv", "target": "y"}})


CSVS = [
    ("header only", b"a,b,y\n", "has a header but no data rows"),
    ("not UTF-8", b"a,b,y\n1,2,0\n\xff\xfe,3,1\n", "not UTF-8 text (byte 0xff on line 3)"),
    ("long field", b"a,b,y\n1,2,0\n" + b'"' + b"1" * 200_000 + b'",3,1\n', "line 3: field larger than field limit"),
    ("NUL", b"a,b,y\n1,2,0\n3,4,\x00\n", "holds a NUL byte (line 3)"),
    ("label -1", b"a,b,y\n1,2,0\n3,4,1\n5,6,-1\n7,8,2\n", "line 4: target '-1' is not a class id"),
    ("stray text", b"a,b,y\n1,2,0\n3,4,1\n5,6,x\n7,8,2\n", "mixes class names ('x' on line 4) and numbers"),
    ("short row", b"a,b,y\n1,2,0\n3,1\n", "line 3 has 2 fields, the header 3"),
]


@pytest.mark.parametrize("case,body,message", CSVS, ids=[c[0] for c in CSVS])
def test_a_bad_csv_is_one_line(tmp_path: Path, case: str, body: bytes, message: str) -> None:
    job = _csv_job(tmp_path, body)
    _one_line(_run(job, tmp_path / "runs"), 2, "d.csv", message)
    assert not (tmp_path / "runs").exists()


def test_a_huge_sparse_csv_is_refused_by_its_size_without_reading_it(tmp_path: Path) -> None:
    job = _csv_job(tmp_path, b"")
    with (tmp_path / "d.csv").open("wb") as f:
        f.truncate(500 * 10**6)  # 500 MB of holes: read whole it took 1.07 GB
    start = time.monotonic()
    _one_line(_run(job, tmp_path / "runs"), 2, "477 MiB, over the 256 MiB a CSV source may be")
    assert time.monotonic() - start < 60


FUNCTIONS = [
    ("returns (1, 2)", "return (1, 2)", 2, "x has shape (); expected one row per example"),
    ("sys.exit(0)", "import sys; sys.exit(0)", 2, "data function my_data:load ended the process that checked it "
                                                  "(exit code 0)"),
    ("os._exit(0)", "import os; os._exit(0)", 2, "data function my_data:load ended the process"),
    ("hangs", "import time; time.sleep(3600)", 2, "data function my_data:load did not return within 5 s"),
]


@pytest.mark.parametrize("case,code,exit_code,message", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_a_data_function_is_checked_in_a_bounded_process(tmp_path: Path, case: str, code: str, exit_code: int,
                                                        message: str) -> None:
    (tmp_path / "my_data.py").write_text(f"def load():\n    {code}\n")
    job = write_job(tmp_path, replace={"data": {"source": "my_data:load"}},
                    dispatch={"unit_timeout": 5})
    _one_line(_run(job, tmp_path / "runs", timeout=120), exit_code, message)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("code", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_a_builder_that_exits_during_the_check_ends_the_run_non_zero(tmp_path: Path, code: str) -> None:
    (tmp_path / "my_models.py").write_text(f"def build(hp, input_shape, n_classes):\n    {code}\n")
    job = write_job(tmp_path, replace={"model": {"builder": "my_models:build"}})
    _one_line(_run(job, tmp_path / "runs", timeout=120), 2, "model builder my_models:build ended the process")
    assert not (tmp_path / "runs").exists()


# --- a full disk, everywhere --------------------------------------------------------------------------

@pytest.mark.slow
def test_a_full_disk_is_one_line_for_run_report_and_export(tmp_path: Path, small_disk: Path) -> None:
    full_disk = small_disk
    job = write_job(tmp_path, )
    old = full_disk / "old"
    assert _run(job, old).returncode == 0
    store = Store(old, load_job(str(job)))
    [shard] = store.shard_paths()
    shard.write_text("".join(shard.read_text().splitlines(keepends=True)[:4]))  # half the units pending
    st = os.statvfs(full_disk)
    (full_disk / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize))
    _one_line(harness("run", str(job), "--store", str(full_disk / "new"), "--no-progress"), 2, "No space left")
    _one_line(harness("run", str(job), "--store", str(old), "--no-progress"), 2, "No space left")
    _one_line(harness("report", str(job), "--store", str(old), "--out", str(full_disk / "rep")), 2, "No space left")
    _one_line(harness("export", str(job), "--store", str(old), "--csv", str(full_disk / "x.csv")), 2,
              "No space left")
    left = sorted(str(p.relative_to(full_disk)) for p in full_disk.rglob("*") if p.is_file())
    assert [p for p in left if not p.startswith("old/")] == ["filler"], left  # no partial PNG, CSV or shard


# --- exit codes ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_is_one_line_exit_143_and_resumable(tmp_path: Path) -> None:
    job = write_job(tmp_path, training={"epochs": 3})
    root = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(job), "--store", str(root), "--no-progress"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    logs = Store(root, load_job(str(job))).dir / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.stat().st_size for p in logs.glob("*.jsonl")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "rerun to resume" in stderr and "Traceback" not in stderr, stderr
    r = _run(job, root)
    assert r.returncode == 0 and "8/8 units done" in r.stderr, r.stderr


@pytest.mark.slow
def test_a_worker_killed_by_a_signal_alone_leaves_its_unit_retryable(tmp_path: Path) -> None:
    """A builder that SIGTERMs its own worker on one configuration: that unit is failed and retried
    (max_retries), not left pending for ever; the others are done; exit 1."""
    (tmp_path / "my_models.py").write_text(
        "import os, signal, keras\n"
        "def build(hp, input_shape, n_classes):\n"
        "    units = hp['units']\n"
        "    if units == 16:  # the driver's check builds the first configuration (8) only\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(units, activation='relu'),\n"
        "                             keras.layers.Dense(n_classes, activation='softmax')])\n")
    job = write_job(tmp_path, replace={"model": {"builder": "my_models:build"}},
                    training={"engine": "fit"}, dispatch={"max_retries": 1, "cpu_workers": 1})
    r = harness("run", str(job), "--store", str(tmp_path / "runs"), "--no-progress", timeout=600)
    assert r.returncode == 1, r.stderr
    assert "4/8 units done, 4 failed" in r.stderr and "killed by SIGTERM" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# --- the report of a store with failed units -----------------------------------------------------------

def test_the_report_renders_when_most_of_a_configurations_units_failed(tmp_path: Path) -> None:
    job = write_job(tmp_path, )
    store = _store_of(tmp_path, job)
    [shard] = store.shard_paths()
    recs = [json.loads(line) for line in shard.read_text().splitlines()]
    first = recs[0]["config"]
    for rec in [r for r in recs if r["config"] == first][:3]:
        rec.update(status="failed", error="RuntimeError: boom")
        del rec["result"]
    shard.write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = harness("report", str(job), "--store", str(store.root), "--out", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "rep" / "tiny.md").read_text()
    assert "3 of 4 trainings missing here" in text
    assert yaml.safe_load(job.read_text())["name"] == "tiny"
