"""Migrations of a store to the current record format, one version at a time.

`MIGRATIONS[v]` turns a record of format v into one of format v + 1. `migrate` reads and migrates
every shard first, then rewrites each atomically and the store's spec.json last; a line that is no
record is moved to the shard's quarantine file and named. A crash midway leaves shards of both
formats under the old header: a rerun finishes (each record goes from its own format). Run it
while nothing writes to the store.
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
from harness.store.store import RECORD_FORMAT, Store, check_format, parse_line
from harness.store.verify import quarantine, quarantine_path, shard_lines

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


def _migrated(path: Path, spec: JobSpec, test_size: TestSize) -> tuple[list[Raw], list[tuple[int, bytes]]]:
    """A shard's records brought to RECORD_FORMAT (each from its own format: a store a crash left
    half migrated finishes), and its lines that are no record (corrupt, or torn and incomplete),
    numbered. A last line missing only its newline is a record like the others. A record of a
    newer format is an error naming file and line (nothing is written)."""
    out, bad = [], []
    for n, raw, _ in shard_lines(read_regular(path)):
        rec = parse_line(raw)
        if rec is None:
            bad.append((n, raw))
            continue
        version = rec.get("format")
        if version != RECORD_FORMAT and version not in MIGRATIONS:
            check_format(version, f"{path}:{n}")
        while rec.get("format") in MIGRATIONS:
            rec = MIGRATIONS[rec["format"]](spec, rec, test_size)
        out.append(rec)
    return out, bad


def migrate(store: Store, spec: JobSpec, test_size: TestSize) -> list[str]:
    """Bring `store` to RECORD_FORMAT; returns one line per step taken (none: already current).
    Every shard is read and migrated before any is written (a newer record stops it with nothing
    changed); a line that is no record is moved to `<shard>.quarantine` and named, not a reason to
    stop."""
    found = store.format()
    if found is None:
        raise UserError(f"no store for this job spec in {store.dir}", file=spec.path)
    if not isinstance(found, int) or found > RECORD_FORMAT or found not in MIGRATIONS and found != RECORD_FORMAT:
        check_format(found, str(store.dir / "spec.json"))
    if found == RECORD_FORMAT:
        return []
    shards = {p: _migrated(p, spec, test_size) for p in store.shard_paths()}
    steps = []
    for path, (records, bad) in shards.items():
        if bad:
            quarantine(path, [raw for _, raw in bad])
            steps.append(f"{path}: line(s) {', '.join(str(n) for n, _ in bad)} are no record: moved to "
                         f"{quarantine_path(path).name}")
        atomic_write(path, "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in records))
    header = store.header() or {}
    store.write_header({**header, "format": RECORD_FORMAT})
    n = sum(len(records) for records, _ in shards.values())
    return steps + [f"format {found} -> {RECORD_FORMAT}: {n} records in {len(shards)} shard(s)"]
