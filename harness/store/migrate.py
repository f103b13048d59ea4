"""Migrations of a store to the current record format, one version at a time.

`MIGRATIONS[v]` turns a record of format v into one of format v + 1. `migrate` rewrites every
shard atomically per version and then the store's spec.json; a torn last line (a crash mid-write,
never a complete record) is dropped. Run it while nothing writes to the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.files import atomic_write, read_regular
from harness.job.matrix import training_seeds
from harness.job.spec import JobSpec
from harness.store.store import RECORD_FORMAT, Store, check_format, parse_shard

Raw = dict[str, Any]  # a record of an older format, as parsed
TestSize = Callable[[int], int]  # split seed -> held-out examples (the data are loaded to know it)


def _v1_to_v2(spec: JobSpec, rec: Raw, test_size: TestSize) -> Raw:
    """Format 2 records what format 1 left to be recomputed: the test-set size, every trial
    run's seeds and the seed the optimiser library was given (hyperopt's: the bo seed)."""
    rec = {**rec, "format": 2}
    if rec.get("status") != "ok":
        return rec
    rec["test_size"] = test_size(rec["seeds"]["split"])
    if rec["kind"] == "study":
        result = rec["result"]
        for trial in result["trials"]:
            for j, run in enumerate(trial["runs"]):
                run["seeds"] = training_seeds(spec, rec["levels"], run=j)
        result["library_seed"] = rec["seeds"]["bo"]
    return rec


TIMINGS = ("wall_s", "train_s")  # format 2 kept them beside the result


def _v2_to_v3(spec: JobSpec, rec: Raw, test_size: TestSize) -> Raw:
    """Format 3 keeps what a unit cost apart from what it produced: wall_s and train_s (record),
    optimiser_s (a study's result), train_s and process_s (a policy run's result) move to
    `timings`; kind `article` is named `policy`, and `seeding` (what the noise stream reached in a
    model) `noise_seeding`. Results are otherwise unchanged."""
    rec = {**rec, "format": 3}
    if rec.get("kind") == "article":
        rec["kind"] = "policy"
    if "seeding" in rec:
        rec["noise_seeding"] = rec.pop("seeding")
    timings = {k: rec.pop(k) for k in TIMINGS if k in rec}
    if rec.get("status") == "ok":
        result = dict(rec["result"])
        timings.update({k: result.pop(k) for k in ("optimiser_s", "train_s", "process_s") if k in result})
        rec["result"] = result
    rec["timings"] = timings
    return rec


MIGRATIONS: dict[int, Callable[[JobSpec, Raw, TestSize], Raw]] = {1: _v1_to_v2, 2: _v2_to_v3}


def _migrate_shard(path: Path, version: int, spec: JobSpec, test_size: TestSize) -> int:
    numbered, _ = parse_shard(path, read_regular(path))
    records = [rec for _, rec in numbered]
    for n, rec in numbered:
        if rec.get("format") != version:
            check_format(rec.get("format"), f"{path}:{n}")
    out = [MIGRATIONS[version](spec, rec, test_size) if rec.get("format") == version else rec for rec in records]
    atomic_write(path, "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in out))
    return len(records)


def migrate(store: Store, spec: JobSpec, test_size: TestSize) -> list[str]:
    """Bring `store` to RECORD_FORMAT; returns one line per step taken (none: already current)."""
    found = store.format()
    if found is None:
        raise UserError(f"no store for this job spec in {store.dir}", file=spec.path)
    if not isinstance(found, int) or found > RECORD_FORMAT or found not in MIGRATIONS and found != RECORD_FORMAT:
        check_format(found, str(store.dir / "spec.json"))
    steps = []
    for version in range(found, RECORD_FORMAT):
        n = sum(_migrate_shard(p, version, spec, test_size) for p in store.shard_paths())
        header = json.loads((store.dir / "spec.json").read_text())
        atomic_write(store.dir / "spec.json", json.dumps({**header, "format": version + 1}, indent=1,
                                                          sort_keys=True, default=str))
        steps.append(f"format {version} -> {version + 1}: {n} records")
    return steps
