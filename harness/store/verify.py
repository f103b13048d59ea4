"""`harness verify`: a store's integrity, line by line, and `--repair`.

Every line of every shard must be a complete record (one JSON object with the record's fields, see
`records.record_problem`) of this format and of this store's spec. A line that is not is reported
with its file and line; ok records of one unit beyond the first are counted as duplicates, and those
whose result differs from the first as disagreements. `repair` moves corrupt lines (and a torn
last line) to `<shard>.quarantine` beside the shard and rewrites the shard atomically without them;
a complete record is never removed: one of another format or spec is reported and left in place.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.files import append_regular, atomic_open, read_regular
from harness.store.records import Record, machine, record_problem
from harness.store.store import RECORD_FORMAT, Store


@dataclass(frozen=True)
class Problem:
    """One bad line: `movable` lines are not records (quarantined by repair); the others are
    complete records that belong elsewhere (another format or spec), left in place."""

    path: Path
    line: int
    what: str
    movable: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


@dataclass
class Verdict:
    """What `verify` found in a store."""

    shards: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)
    duplicates: int = 0       # ok records of a unit after its first
    disagreements: int = 0    # ... of the first's machine, whose result differs from the first's
    across_machines: int = 0  # ... of another machine, whose result differs (bits are claimed per machine)
    machines: Counter[str] = field(default_factory=Counter)  # ok records per machine (`records.machine`)

    @property
    def clean(self) -> bool:
        return not self.problems


def line_problem(raw: bytes, digest: str) -> tuple[Record | None, str | None, bool]:
    """A shard line -> (its record if complete, what is wrong with it, whether repair moves it)."""
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "corrupt: not JSON", True
    problem = record_problem(rec)
    if problem is not None:
        return None, f"corrupt: {problem}", True
    if rec["format"] != RECORD_FORMAT:
        return rec, f"format {rec['format']}, this harness writes {RECORD_FORMAT} (`harness migrate`)", False
    if rec["spec"] != digest:
        return rec, f"a record of spec {rec['spec']}, this store is spec {digest}", False
    return rec, None, False


def shard_lines(blob: bytes) -> list[tuple[int, bytes, bool]]:
    """(line number, bytes, terminated) of every non-blank line of a shard."""
    lines = blob.split(b"\n")
    out = [(n, raw, True) for n, raw in enumerate(lines[:-1], start=1) if raw.strip()]
    if lines[-1].strip():
        out.append((len(lines), lines[-1], False))
    return out


def verify(store: Store) -> Verdict:
    """Check every line of every shard of `store` (read only)."""
    store.check_format()
    verdict = Verdict()
    first_ok: dict[str, Record] = {}
    digest = store.spec.digest()
    for path in store.shard_paths():
        verdict.shards += 1
        for n, raw, terminated in shard_lines(read_regular(path)):
            rec, what, movable = line_problem(raw, digest)
            if not terminated:
                verdict.problems.append(Problem(path, n, "torn last line (no newline: a write cut short)"
                                                + ("; it holds a complete record" if rec else ""), True))
                continue
            if what is not None:
                verdict.problems.append(Problem(path, n, what, movable))
            if rec is None or what is not None:
                continue
            verdict.records += 1
            if rec["status"] == "ok":
                _count_ok(verdict, first_ok, rec)
    return verdict


def _count_ok(verdict: Verdict, first_ok: dict[str, Record], rec: Record) -> None:
    """An ok record: its machine, and whether it duplicates (and disagrees with) an earlier one."""
    verdict.machines[machine(rec)] += 1
    first = first_ok.setdefault(rec["unit"], rec)
    if first is rec:
        return
    verdict.duplicates += 1
    if rec["result"] != first["result"]:
        if machine(rec) == machine(first):
            verdict.disagreements += 1
        else:
            verdict.across_machines += 1


def quarantine_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".quarantine")


def quarantine(shard: Path, lines: list[bytes]) -> None:
    """Append `lines` to the shard's quarantine file (never through a link), fsynced before the
    shard is rewritten without them."""
    with append_regular(quarantine_path(shard)) as q:
        q.write(b"".join(raw + b"\n" for raw in lines))
        os.fsync(q.fileno())


def repair(store: Store, verdict: Verdict) -> list[str]:
    """Move every movable bad line of `verdict` to its shard's quarantine file (appended, fsynced
    first), then rewrite the shard without them (atomically). A torn last line that holds a complete
    record is kept, terminated. Run it while no `harness run` writes to the store."""
    done: list[str] = []
    digest = store.spec.digest()
    for path in sorted({p.path for p in verdict.problems if p.movable}):
        bad = {p.line for p in verdict.problems if p.movable and p.path == path}
        keep: list[bytes] = []
        moved: list[bytes] = []
        for n, raw, terminated in shard_lines(read_regular(path)):
            complete = line_problem(raw, digest)[0] is not None
            (moved if n in bad and not (not terminated and complete) else keep).append(raw)
        if moved:
            quarantine(path, moved)
        with atomic_open(path, "wb") as f:
            f.write(b"".join(raw + b"\n" for raw in keep))
        done.append(f"{path}: moved {len(moved)} line(s) to {quarantine_path(path).name}, kept {len(keep)}" if moved
                    else f"{path}: kept {len(keep)} line(s), the torn last one now terminated")
    return done
