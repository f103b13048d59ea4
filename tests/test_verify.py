"""`harness verify JOB [--store DIR] [--repair]`: every line of every shard checked, bad lines
named by file and line, duplicates and disagreements counted, exit 1 on corruption; `--repair`
quarantines corrupt lines beside the shard and keeps every complete record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.job import load_job
from harness.job.spec import JobSpec
from harness.store import Store
from harness.store.records import Record, new_record
from harness.units import plan
from tests.conftest import write_job


def _ok(spec: JobSpec, i: int, acc: float = 0.5) -> Record:
    """A complete ok record of the plan's i-th unit, as a worker writes it."""
    rec = new_record(spec, plan(spec)[i], 1, "exact", "w0")
    return {**rec, "status": "ok", "result": {"metrics": {"accuracy": acc, "loss": 1.0}}, "seeds": {"init": 1},
            "timings": {"wall_s": 0.1}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store", load_job(str(write_job(tmp_path))))
    s.init()
    return s


def _verify(store: Store, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = main(["verify", store.spec.path, "--store", str(store.root), *extra])
    return code, capsys.readouterr().out.splitlines()


def _lines(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().split(b"\n") if ln]


def test_a_clean_store_verifies(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    w = store.writer("w0")
    for i in range(3):
        w.append(_ok(store.spec, i))
    code, out = _verify(store, capsys)
    assert code == 0 and out == [f"{store.dir}: 1 shard(s), 3 record(s), 0 bad line(s); 0 duplicate(s), "
                                 f"0 disagree with the first"]


def test_corruption_is_reported_by_line_and_repair_keeps_every_record(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    w = store.writer("w0")
    w.append(_ok(store.spec, 0))
    w.close()
    shard = store.shards / "w0.jsonl"
    with open(shard, "ab") as f:
        f.write(b'{"format": 3, "unit": "b", "sta\n')                  # line 2: a damaged line
        f.write(b"[1, 2]\n")                                              # line 3: JSON, not a record
        no_unit = {k: v for k, v in _ok(store.spec, 1).items() if k != "unit"}
        f.write(json.dumps({"format": 3, **no_unit}).encode() + b"\n")    # line 4: a field missing
        f.write(json.dumps({"format": 3, **_ok(store.spec, 2)}).encode() + b"\n")  # line 5: fine
        f.write(b"\xff\xfe garbage\n")                                    # line 6: not even UTF-8
        f.write(b'{"format": 3, "unit": "c", "sta')                       # line 7: torn tail
    with pytest.raises(UserError, match="line 2 is corrupt"):
        store.states()  # what every other verb sees
    code, out = _verify(store, capsys)
    assert code == 1
    assert out[:5] == [f"{shard}:2: corrupt: not JSON", f"{shard}:3: corrupt: a JSON list, not a record",
                       f"{shard}:4: corrupt: no 'unit' field", f"{shard}:6: corrupt: not JSON",
                       f"{shard}:7: torn last line (no newline: a write cut short)"]
    assert out[5].endswith("2 record(s), 5 bad line(s); 0 duplicate(s), 0 disagree with the first")

    code, out = _verify(store, capsys, "--repair")
    assert code == 0 and f"{shard}: moved 5 line(s) to w0.jsonl.quarantine, kept 2" in out
    quarantine = store.shards / "w0.jsonl.quarantine"
    assert len(_lines(quarantine)) == 5 and _lines(quarantine)[0].startswith(b'{"format": 3, "unit": "b"')
    states = store.states()  # readable again, every complete record still there
    assert sorted(states) == sorted(u.id for u in plan(store.spec)[:3:2])
    assert _verify(store, capsys)[0] == 0


def test_duplicates_and_disagreements_are_counted(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    w1, w2 = store.writer("w1"), store.writer("w2")
    w1.append(_ok(store.spec, 0, acc=0.5))
    w2.append(_ok(store.spec, 0, acc=0.5))   # a duplicate that agrees
    w2.append(_ok(store.spec, 0, acc=0.7))   # ... and one that does not
    w2.append({**_ok(store.spec, 1), "status": "failed", "error": "boom", "result": None})
    code, out = _verify(store, capsys)
    assert code == 0 and out[-1].endswith("2 shard(s), 4 record(s), 0 bad line(s); 2 duplicate(s), "
                                          "1 disagree with the first")


def test_a_store_of_two_machines_says_so(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """Bits are claimed per machine: a unit trained on an AVX2 and an AVX-512 CPU may differ in the
    last bits without being a disagreement; verify names the machines, status stays quiet."""
    def on(isa: str, acc: float) -> Record:
        return {**_ok(store.spec, 0, acc), "env": {"cpu": "AMD EPYC", "cpu_isa": isa, "gpus": []}}
    store.writer("w1").append(on("avx2", 0.5))
    store.writer("w2").append(on("avx512", 0.5000001))
    code, out = _verify(store, capsys)
    assert code == 0 and out[-2].endswith("1 duplicate(s), 0 disagree with the first"), out
    assert out[-1] == ("mixed hardware: 2 machines (AMD EPYC [avx2]: 1 record(s); AMD EPYC [avx512]: 1 record(s)); "
                       "bit-identity is claimed per machine: 1 duplicate(s) differ across machines")
    assert main(["status", store.spec.path, "--store", str(store.root)]) == 0
    assert "not deterministic" not in capsys.readouterr().out


def test_a_record_of_another_spec_is_reported_and_never_moved(store: Store,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    w = store.writer("w0")
    w.append(_ok(store.spec, 0))
    w.append({**_ok(store.spec, 1), "spec": "0123456789abcdef"})
    w.close()
    shard = store.shards / "w0.jsonl"
    before = shard.read_bytes()
    code, out = _verify(store, capsys, "--repair")
    assert code == 1 and out[0] == f"{shard}:2: a record of spec 0123456789abcdef, this store is spec " \
                                   f"{store.spec.digest()}"
    assert shard.read_bytes() == before and not (store.shards / "w0.jsonl.quarantine").exists()
    assert list(store.states()) == [plan(store.spec)[0].id]  # every reader skips it, and says so
    assert "1 record(s) of another spec" in capsys.readouterr().err


def test_a_torn_tail_holding_a_whole_record_is_kept(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    shard = store.shards / "w0.jsonl"
    shard.write_bytes(json.dumps({"format": 3, **_ok(store.spec, 0)}).encode())  # only the newline is missing
    code, out = _verify(store, capsys)
    assert code == 1 and out[0].endswith(":1: torn last line (no newline: a write cut short); it holds a "
                                         "complete record")
    code, out = _verify(store, capsys, "--repair")
    assert code == 0 and any(ln.endswith("kept 1 line(s), the torn last one now terminated") for ln in out), out
    assert list(store.states()) == [plan(store.spec)[0].id]
    assert not (store.shards / "w0.jsonl.quarantine").exists()


def test_verify_without_a_store_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path)
    assert main(["verify", str(job), "--store", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no results for this job spec" in err[0]
