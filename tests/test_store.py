"""The store: append-only shards, torn lines, dedupe, format versions."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.job import load_job
from harness.store import store as store_module
from harness.store.store import RECORD_FORMAT, Store, read_shard
from tests.conftest import write_job


@functools.cache
def _digest() -> str:
    """The tiny job's spec digest (the same wherever the job file is)."""
    return load_job(str(write_job(Path(tempfile.mkdtemp())))).digest()


def _rec(unit: str, status: str = "ok", acc: float = 0.5) -> dict:
    """A complete record of an evaluation unit `unit` (ids need not be the plan's here)."""
    outcome = ({"result": {"metrics": {"accuracy": acc}}, "seeds": {"init": 1}, "timings": {"wall_s": 0.1}}
               if status == "ok" else {"error": "boom"})
    return {"unit": unit, "index": 0, "kind": "eval", "mode": "on", "levels": {"init": 0}, "config": {},
            "attempt": 1, "job": "tiny", "spec": _digest(), "worker": "w0", "status": status, **outcome}


def test_torn_tail_skipped_then_cut_by_the_next_writer(tmp_path: Path) -> None:
    store = Store(tmp_path, load_job(str(write_job(tmp_path))))
    store.init()
    w = store.writer("w0")
    w.append(_rec("a"))
    w.close()
    path = store.shards / "w0.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"format": 3, "unit": "b", "sta')  # a crash mid-write
    numbered, torn = read_shard(path)
    recs = [r for _, r in numbered]
    assert [r["unit"] for r in recs] == ["a"] and torn == 1
    w = store.writer("w0")  # a rerun reopens the shard: the torn line must not glue to the next
    w.append(_rec("b"))
    w.close()
    numbered, torn = read_shard(path)
    recs = [r for _, r in numbered]
    assert [r["unit"] for r in recs] == ["a", "b"] and torn == 0


def test_states_dedupe_and_flag_disagreement(tmp_path: Path) -> None:
    store = Store(tmp_path, load_job(str(write_job(tmp_path))))
    store.init()
    w1, w2 = store.writer("w1"), store.writer("w2")
    w1.append(_rec("a", "failed"))
    w1.append(_rec("a", acc=0.5))
    w2.append(_rec("a", acc=0.5))
    w2.append(_rec("b", acc=0.5))
    w2.append(_rec("b", acc=0.6))
    states = store.states()
    assert len(states["a"].failures) == 1 and states["a"].ok["result"]["metrics"]["accuracy"] == 0.5
    assert states["a"].disagreements == 0 and states["b"].disagreements == 1


def test_other_format_refused(tmp_path: Path) -> None:
    store = Store(tmp_path, load_job(str(write_job(tmp_path))))
    store.init()
    (store.shards / "old.jsonl").write_text(json.dumps({"format": 0, "unit": "a", "status": "ok"}) + "\n")
    with pytest.raises(UserError, match="format 0"):
        store.states()


@pytest.mark.parametrize(("found", "says"), [(RECORD_FORMAT - 1, "older harness.*harness migrate"),
                                             (RECORD_FORMAT + 1, "newer harness.*upgrade")])
def test_older_store_says_migrate_newer_says_upgrade(tmp_path: Path, found: int, says: str) -> None:
    store = Store(tmp_path, load_job(str(write_job(tmp_path))))
    store.init()
    (store.shards / "w.jsonl").write_text(json.dumps({**_rec("a"), "format": found}) + "\n")
    with pytest.raises(UserError, match=says):
        store.states()
    header = json.loads((store.dir / "spec.json").read_text())
    (store.dir / "spec.json").write_text(json.dumps({**header, "format": found}))
    with pytest.raises(UserError, match=f"spec.json: written by an? .*{says}"):
        store.init()


def test_corrupt_middle_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    store = Store(tmp_path, load_job(str(write_job(tmp_path))))
    store.init()
    w = store.writer("w0")
    w.append(_rec("a"))
    w.close()
    path = store.shards / "w0.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"format": 3, "unit": "b", "sta\n')  # a damaged line with a newline after it
    w = store.writer("w0")
    w.append(_rec("c"))
    w.close()
    with pytest.raises(UserError, match=r"w0\.jsonl: line 2 is corrupt"):
        store.states()


def test_the_format_version_is_not_part_of_the_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_job(str(write_job(tmp_path)))
    before = Store(tmp_path, spec).dir
    monkeypatch.setattr(store_module, "RECORD_FORMAT", RECORD_FORMAT + 1)
    assert Store(tmp_path, spec).dir == before and "format" not in spec.canonical()


def test_a_store_or_report_path_that_leaves_its_root_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Names are one path component (test_bad_jobs); a link planted under the root is resolved and
    refused too, before anything is written through it."""
    from harness.cli.main import main
    monkeypatch.chdir(tmp_path)
    job = write_job(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(elsewhere)
    with pytest.raises(UserError, match="store directory .* resolves to .*elsewhere.*, outside"):
        Store(tmp_path / "runs", load_job(str(job)))
    assert main(["run", str(job), "--store", "runs", "--executor", "debug", "--no-progress"]) == 2
    assert "outside" in capsys.readouterr().err and list(elsewhere.iterdir()) == []

    store = Store(tmp_path / "store", load_job(str(job)))
    store.init()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "tiny.md").symlink_to(elsewhere / "owned.md")
    assert main(["report", str(job), "--store", "store"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "the report reports/tiny.md resolves to" in err[0], err
    assert list(elsewhere.iterdir()) == []


def test_export_into_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main
    job = write_job(tmp_path)
    Store(tmp_path / "store", load_job(str(job))).init()
    assert main(["export", str(job), "--store", str(tmp_path / "store"), "--csv", str(tmp_path / "no/x.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "expected a CSV file path in an existing directory" in err[0]
