"""Store formats through the CLI: a store of the previous format is refused with "migrate", and
`harness migrate` turns it into exactly what this harness writes; facts the report needs (the
test-set size) come from the store, not from assumptions about the dataset."""

from __future__ import annotations

import json
from pathlib import Path

from harness.job import load_job
from harness.store import Store
from tests.conftest import harness, write_job
from tests.test_training import _write_mnist


def _records(store: Store) -> dict[str, list[dict]]:
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in store.shard_paths()}


def _as_v2(rec: dict) -> dict:
    """A format-3 record as format 2 wrote it: timings beside (a study's, a policy run's: inside)
    the result, kind `article` for a seeding-policy run."""
    timings = rec.pop("timings")
    rec["format"] = 2
    if "noise_seeding" in rec:
        rec["seeding"] = rec.pop("noise_seeding")
    rec["kind"] = "article" if rec["kind"] == "policy" else rec["kind"]
    rec.update({k: timings.pop(k) for k in ("wall_s", "train_s") if k in timings and rec["kind"] != "article"})
    if rec["status"] == "ok":
        rec["result"].update(timings)
    return rec


def _downgrade(store: Store, to: int) -> None:
    """Rewrite a store as format `to` (1 or 2) wrote it; format 1 had no test sizes, no trial-run
    seeds, no library seed."""
    for path in store.shard_paths():
        out = []
        for rec in map(json.loads, path.read_text().splitlines()):
            rec = _as_v2(rec)
            if to == 2:
                out.append(json.dumps(rec, sort_keys=True))
                continue
            rec["format"] = 1
            rec.pop("test_size", None)
            if rec["kind"] == "study" and rec["status"] == "ok":
                rec["result"].pop("library_seed")
                for trial in rec["result"]["trials"]:
                    for run in trial["runs"]:
                        run.pop("seeds")
            out.append(json.dumps(rec, sort_keys=True))
        path.write_text("".join(line + "\n" for line in out))
    header = json.loads((store.dir / "spec.json").read_text())
    (store.dir / "spec.json").write_text(json.dumps({**header, "format": to}))


def test_a_format_1_store_is_refused_then_migrated_to_what_this_harness_writes(tmp_path: Path) -> None:
    job, root = write_job(tmp_path, objective={"runs": 2}), tmp_path / "store"
    assert harness("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress").returncode == 0
    store = Store(root, load_job(str(job)))
    written = _records(store)
    assert any(r["kind"] == "study" for recs in written.values() for r in recs)
    _downgrade(store, 1)
    refused = harness("report", str(job), "--store", str(root), "--out", str(tmp_path / "r"))
    assert refused.returncode == 2 and "older harness (format 1" in refused.stderr
    assert "harness migrate" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    r = harness("migrate", str(job), "--store", str(root))
    assert r.returncode == 0 and "format 1 -> 3" in r.stdout, r.stderr
    assert _records(store) == written
    assert "already" in harness("migrate", str(job), "--store", str(root)).stdout


def test_format_2_moves_timings_out_of_results_and_names_policy_runs(tmp_path: Path) -> None:
    """From format 2: every result identical but for its timings, which move to `timings`; a
    seeding-policy run's kind `article` becomes `policy` (records written by the seeding job's
    shape, without training)."""
    job, root = write_job(tmp_path), tmp_path / "store"
    assert harness("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress").returncode == 0
    store = Store(root, load_job(str(job)))
    written = _records(store)
    study = next(r for recs in written.values() for r in recs if r["kind"] == "study")
    assert {"wall_s", "train_s", "optimiser_s"} <= set(study["timings"]) and "optimiser_s" not in study["result"]
    _downgrade(store, 2)
    v2 = _records(store)
    assert any("optimiser_s" in r["result"] for recs in v2.values() for r in recs)
    r = harness("migrate", str(job), "--store", str(root))
    assert r.returncode == 0 and "format 2 -> 3: 9 records" in r.stdout, r.stdout + r.stderr
    assert _records(store) == written
    article = {"format": 2, "kind": "article", "status": "ok", "wall_s": 9.0,
               "result": {"policy": "none", "train_s": 7.0, "process_s": 8.0, "best_score": 0.5}}
    from harness.store.migrate import MIGRATIONS
    moved = MIGRATIONS[2](store.spec, article, lambda split: 0)
    assert moved["kind"] == "policy" and moved["result"] == {"policy": "none", "best_score": 0.5}
    assert moved["timings"] == {"wall_s": 9.0, "train_s": 7.0, "process_s": 8.0}


def test_the_report_reads_the_test_size_from_the_store(tmp_path: Path) -> None:
    npz = tmp_path / "mnist.npz"
    _write_mnist(npz, n_train=100, n_test=37)  # not MNIST's 10,000
    job = write_job(tmp_path, search={"max_evals": 2, "startup_trials": 1},
                    replace={"data": {"source": "mnist", "path": str(npz)}})
    root = tmp_path / "store"
    assert harness("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress").returncode == 0
    r = harness("report", str(job), "--store", str(root), "--out", str(tmp_path / "reports"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "reports" / "tiny.md").read_text()
    assert "| test split     | 37 examples" in text and "With 37 test examples" in text



def test_migrate_and_verify_compose_on_a_format_1_store_with_a_corrupt_line(tmp_path: Path) -> None:
    """A format-1 store in two shards, one with a corrupt line, the other missing only its final
    newline: migrate moves the corrupt line to quarantine and names it, keeps every record (the
    unterminated one too), and verify then finds the store clean. With a record of a newer format
    anywhere, migrate refuses with one line and writes nothing (no half-migrated store)."""
    job, root = write_job(tmp_path), tmp_path / "store"
    assert harness("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress").returncode == 0
    store = Store(root, load_job(str(job)))
    written = _records(store)
    _downgrade(store, 1)
    [path] = store.shard_paths()
    lines = path.read_bytes().splitlines(keepends=True)
    first, second = path, path.with_name("second.jsonl")
    first.write_bytes(lines[0] + b'{"format": 1, "unit": "x", "stat\n' + b"".join(lines[1:4]))
    second.write_bytes(b"".join(lines[4:]).rstrip(b"\n"))  # its last record without its newline
    newer = path.with_name("newer.jsonl")
    newer.write_bytes(b'{"format": 99, "unit": "y"}\n')
    before = {p.name: p.read_bytes() for p in store.shard_paths()}
    r = harness("migrate", str(job), "--store", str(root))
    assert r.returncode == 2 and "newer.jsonl:1" in r.stderr and "newer harness" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in store.shard_paths()} == before  # nothing written
    newer.unlink()
    r = harness("migrate", str(job), "--store", str(root))
    assert r.returncode == 0, r.stderr
    assert f"{first}: line(s) 2 are no record" in r.stdout and "format 1 -> 3" in r.stdout
    assert (first.with_name(first.name + ".quarantine")).read_bytes() == b'{"format": 1, "unit": "x", "stat\n'
    after = [rec for recs in _records(store).values() for rec in recs]
    assert sorted(after, key=lambda r: r["index"]) == sorted(written[path.name], key=lambda r: r["index"])
    v = harness("verify", str(job), "--store", str(root))
    assert v.returncode == 0 and "0 bad line(s)" in v.stdout, v.stdout + v.stderr
