"""Results store: runs/<job>/<spec-hash>/ with the frozen spec and append-only JSON-lines shards.

One writer per shard file; every record is one line, flushed and fsynced, with a format version
(`RECORD_FORMAT`). Readers skip a torn last line (a crash mid-write: no newline) and say so; any
other line that does not parse is corruption, an error naming the file and line. A writer
reopening a shard first cuts a torn tail so the next record starts on a fresh line. A store
written by an older format is migrated in place (`harness migrate`, harness/store/migrate.py);
one written by a newer harness is refused until the harness is upgraded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from harness.errors import UserError
from harness.files import FULL, DiskFull, atomic_write, open_regular, read_regular, real_dir, under
from harness.job.spec import JobSpec
from harness.store.records import Record, machine, record_problem

# 2: test_size, each trial run's seeds, a study's library_seed; 3: timings apart from results, kind
# `policy` (was `article`) (migrate.py: one version at a time)
RECORD_FORMAT = 3


class StoreFull(DiskFull):
    """The store's disk (or quota) is full: the run stops with one line; every complete record
    stays readable and a rerun after freeing space resumes."""

    def __init__(self, where: str, exc: OSError) -> None:
        super().__init__(where, exc, "the store (every complete record is kept; the run resumes)")


class ShardWriter:
    """Appends records to one shard file; the only writer of that file."""

    def __init__(self, path: Path) -> None:
        """`path`: in a directory the store checked (`Store.subdir`); opened without following a
        link, a regular file or refused."""
        self.path = path
        try:
            self._f: IO[bytes] = open(open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT), "ab+", buffering=0)
        except OSError as exc:
            if exc.errno in FULL:
                raise StoreFull(str(path), exc) from None
            raise
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
            if exc.errno in FULL:
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


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """A shard line as the JSON object it holds; None when it holds none (corrupt)."""
    try:
        rec = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


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
        rec = parse_line(raw)
        if rec is None:
            raise UserError(f"line {n} is corrupt (not a JSON record); `harness verify --repair` moves it to a "
                            f"quarantine file", file=str(path))
        out.append((n, rec))
    return out, torn


def read_shard(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Complete records of one shard with their line numbers, each of this format, and the number
    of torn (unterminated) last lines (0 or 1)."""
    numbered, torn = parse_shard(path, read_regular(path))
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

    def subdir(self, name: str, create: bool = False) -> Path:
        """The store's directory `name` (shards, logs, claims), every component below the store
        root a real directory (created where missing when `create`), else one UserError line."""
        return real_dir(self.root, self.dir / name, create)

    def init(self, data: dict[str, Any] | None = None) -> None:
        """Create the directory and freeze the spec (atomically; once) with the identity of the
        data it trains on (`data`, the driver's check's). An existing store must be of this format
        (else: migrate or upgrade) and of the same data (else one line naming file and store)."""
        self.subdir("shards", create=True)
        self._ensure_free()
        header = self.header()
        if header is not None:
            check_format(header.get("format"), str(self.dir / "spec.json"))
            if data is not None:
                self._check_data(header, data)
            return
        self.write_header({"format": RECORD_FORMAT, "name": self.spec.name, "canonical": self.spec.canonical(),
                            "job_file": self.spec.raw, **({"data": data} if data is not None else {})})

    def write_header(self, header: dict[str, Any]) -> None:
        """Replace spec.json (atomically)."""
        atomic_write(self.dir / "spec.json", json.dumps(header, indent=1, sort_keys=True, default=str))

    def _ensure_free(self, need: int = 16 * 2**10) -> None:
        """Refuse (StoreFull) when the store's disk has less than `need` bytes free, before any
        worker starts: a run on a full disk stops with one line, not in its workers."""
        st = os.statvfs(self.dir)
        if st.f_bavail * st.f_frsize < need:
            raise StoreFull(str(self.dir), OSError(FULL[0], os.strerror(FULL[0])))

    def _check_data(self, header: dict[str, Any], data: dict[str, Any]) -> None:
        """The data now must be the data the store's results came from; a store made before data
        were recorded adopts them (said on stderr)."""
        old = header.get("data")
        if old is None:
            self.write_header({**header, "data": data})
            print(f"harness: {self.dir} predates data digests; recorded the current data's ({data['digest'][:16]})",
                  file=sys.stderr)
        elif old.get("digest") != data["digest"]:
            raise UserError(f"the data changed since this store's results were trained (data digest "
                            f"{str(old.get('digest'))[:16]} then, {data['digest'][:16]} now); its results came from "
                            f"the old data: restore it, or move {self.dir} aside (or run with another --store) to "
                            f"train on the new data", file=data.get("file") or self.spec.path, key="data")

    def header(self) -> dict[str, Any] | None:
        """spec.json as written (None: no store here yet); read without following a link."""
        frozen = self.dir / "spec.json"
        real_dir(self.root, self.dir)
        try:
            header = json.loads(read_regular(frozen))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(f"unreadable store header ({exc})", file=str(frozen)) from None
        if not isinstance(header, dict):
            raise UserError("unreadable store header (not a JSON object)", file=str(frozen))
        return header

    def format(self) -> int | None:
        """The format spec.json says this store is in (None: no store here yet)."""
        header = self.header()
        return None if header is None else header.get("format")

    def check_format(self) -> None:
        found = self.format()
        if found is not None:
            check_format(found, str(self.dir / "spec.json"))

    def writer(self, name: str) -> ShardWriter:
        return ShardWriter(self.subdir("shards", create=True) / f"{name}.jsonl")

    def shard_paths(self) -> list[Path]:
        return sorted(self.subdir("shards").glob("*.jsonl")) if self.shards.is_dir() else []

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
            with open(open_regular(path), "rb") as f:
                f.seek(start)
                blob = f.read(max(0, os.fstat(f.fileno()).st_size - start))
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
