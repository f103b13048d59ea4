"""Results store: runs/<job>/<spec-hash>/ with the frozen spec and append-only JSON-lines shards.

One writer per shard file; every record is one line, flushed and fsynced, with a format version
(`RECORD_FORMAT`). Readers skip a torn last line (a crash mid-write: no newline) and say so; any
other line that does not parse is corruption, an error naming the file and line. A writer
reopening a shard first cuts a torn tail so the next record starts on a fresh line. A store
written by an older format is migrated in place (`harness migrate`, harness/store/migrate.py);
one written by a newer harness is refused until the harness is upgraded.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from harness.errors import UserError
from harness.files import atomic_write, under
from harness.job.spec import JobSpec
from harness.store.records import Record, machine, record_problem

# 2: test_size, each trial run's seeds, a study's library_seed; 3: timings apart from results, kind
# `policy` (was `article`) (migrate.py: one version at a time)
RECORD_FORMAT = 3


class StoreFull(UserError):
    """The store's disk (or quota) is full: the run stops with one line; every complete record
    stays readable and a rerun after freeing space resumes."""

    def __init__(self, where: str, exc: OSError) -> None:
        super().__init__(f"{exc.strerror or exc} while writing the store: free space and run again "
                         f"(every complete record is kept; the run resumes)", file=where)


class ShardWriter:
    """Appends records to one shard file; the only writer of that file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = open(path, "ab+", buffering=0)
        self._cut_torn_tail()

    def _cut_torn_tail(self) -> None:
        size = self._f.seek(0, os.SEEK_END)
        if size == 0:
            return
        self._f.seek(max(0, size - 65536))
        tail = self._f.read()
        if tail.endswith(b"\n"):
            return
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        self._f.truncate(keep)
        self._f.seek(keep)

    def append(self, record: Record) -> None:
        """One record as one fsynced line, written unbuffered. A write that fails (a full disk)
        cuts the file back to where it was, so the shard still ends on a whole record."""
        data = memoryview((json.dumps({"format": RECORD_FORMAT, **record}, sort_keys=True,
                                      allow_nan=True) + "\n").encode())
        fd = self._f.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, end)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(str(self.path), exc) from None
            raise

    def close(self) -> None:
        self._f.close()


def check_format(found: object, where: str) -> None:
    """Refuse a record or store of another format, saying which way to go."""
    if found == RECORD_FORMAT:
        return
    if isinstance(found, int) and not isinstance(found, bool) and 0 < found < RECORD_FORMAT:
        raise UserError(f"written by an older harness (format {found}, this one reads {RECORD_FORMAT}): "
                        f"run `harness migrate JOB --store DIR` once to bring the store up to date", file=where)
    if isinstance(found, int) and not isinstance(found, bool) and found > RECORD_FORMAT:
        raise UserError(f"written by a newer harness (format {found}, this one reads up to {RECORD_FORMAT}): "
                        f"upgrade the harness to read it", file=where)
    raise UserError(f"not a harness record (format {found!r})", file=where)


def parse_shard(path: Path, blob: bytes) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """The complete records of a shard's bytes, with their line numbers, and whether its last line
    is torn. A line that is not a JSON object before the last one is corruption: a UserError naming
    file and line."""
    lines = blob.split(b"\n")
    torn = bool(lines[-1])
    out = []
    for n, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        if not isinstance(rec, dict):
            raise UserError(f"line {n} is corrupt (not a JSON record); `harness verify --repair` moves it to a "
                            f"quarantine file", file=str(path))
        out.append((n, rec))
    return out, torn


def read_shard(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Complete records of one shard with their line numbers, each of this format, and the number
    of torn (unterminated) last lines (0 or 1)."""
    numbered, torn = parse_shard(path, path.read_bytes())
    for n, rec in numbered:
        check_format(rec.get("format"), f"{path}:{n}")
    return numbered, int(torn)


@dataclass
class UnitState:
    """What the store knows of one unit: its accepted ok record and failed attempts."""

    ok: Record | None = None
    failures: list[Record] = field(default_factory=list)
    disagreements: int = 0  # ok records of the same machine whose result differs from the first's


class Store:
    """The directory of one job spec's results."""

    def __init__(self, root: str | Path, spec: JobSpec) -> None:
        self.spec = spec
        self.root = Path(root)
        self.dir = under(self.root, spec.name, spec.digest(), what="store directory")
        self.shards = self.dir / "shards"

    def init(self) -> None:
        """Create the directory and freeze the spec (atomically; once). An existing store must be
        of this format (else: migrate or upgrade)."""
        self.shards.mkdir(parents=True, exist_ok=True)
        frozen = self.dir / "spec.json"
        if frozen.exists():
            self.check_format()
            return
        atomic_write(frozen, json.dumps({"format": RECORD_FORMAT, "name": self.spec.name,
                                         "canonical": self.spec.canonical(), "job_file": self.spec.raw},
                                        indent=1, sort_keys=True, default=str))

    def format(self) -> int | None:
        """The format spec.json says this store is in (None: no store here yet)."""
        frozen = self.dir / "spec.json"
        try:
            return json.loads(frozen.read_text()).get("format")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as exc:
            raise UserError(f"unreadable store header ({exc})", file=str(frozen)) from None

    def check_format(self) -> None:
        found = self.format()
        if found is not None:
            check_format(found, str(self.dir / "spec.json"))

    def writer(self, name: str) -> ShardWriter:
        return ShardWriter(self.shards / f"{name}.jsonl")

    def shard_paths(self) -> list[Path]:
        return sorted(self.shards.glob("*.jsonl")) if self.shards.is_dir() else []

    def records(self, warn: bool = True) -> Iterator[Record]:
        """Every complete record of this spec in every shard, shard files in name order. Each is
        checked (`records.record_problem`): one that is not a record is an error naming file and
        line; one of another spec (appended from elsewhere) is skipped with a warning."""
        self.check_format()
        digest = self.spec.digest()
        for path in self.shard_paths():
            numbered, torn = read_shard(path)
            foreign = 0
            for n, rec in numbered:
                problem = record_problem(rec)
                if problem is not None:
                    raise UserError(f"line {n} is not a record: {problem}; `harness verify --repair` moves it to a "
                                    f"quarantine file", file=str(path))
                if rec["spec"] != digest:
                    foreign += 1
                    continue
                yield cast(Record, rec)  # checked just above
            if warn and (torn or foreign):
                print(f"harness: skipped in {path}: " + ", ".join(
                    ([f"{int(torn)} torn line(s)"] if torn else [])
                    + ([f"{foreign} record(s) of another spec (`harness verify` names them)"] if foreign else [])),
                    file=sys.stderr)

    def states(self) -> dict[str, UnitState]:
        """Per unit id: the first ok record (later ok records are duplicates) and failures."""
        states: dict[str, UnitState] = {}
        for rec in self.records():
            st = states.setdefault(rec["unit"], UnitState())
            if rec["status"] != "ok":
                st.failures.append(rec)
            elif st.ok is None:
                st.ok = rec
            elif rec.get("result") != st.ok.get("result") and machine(rec) == machine(st.ok):
                st.disagreements += 1  # bits are claimed per machine: other hardware may differ
        return states

    def ok_records(self) -> list[Record]:
        """The accepted ok record of every finished unit."""
        return [st.ok for st in self.states().values() if st.ok is not None]


class Tail:
    """Follows a store's shards as they grow: the units recorded ok so far, reading only the
    complete lines added since the last look (claims re-check the store before every batch).
    Corrupt lines are the full readers' to report; here they are passed over."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.offsets: dict[Path, int] = {}
        self.ok: set[str] = set()

    def refresh(self) -> set[str]:
        for path in self.store.shard_paths():
            start = self.offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(start)
                blob = f.read()
            end = blob.rfind(b"\n") + 1
            for raw in blob[:end].splitlines():
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(rec, dict) and rec.get("status") == "ok":
                    self.ok.add(str(rec.get("unit")))
            self.offsets[path] = start + end
        return self.ok
