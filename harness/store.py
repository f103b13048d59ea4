"""Results store: runs/<job>/<spec-hash>/ with the frozen spec and append-only JSON-lines shards.

One writer per shard file; every record is one line, flushed and fsynced, with a format
version. Readers skip a torn last line (a crash mid-write) and say so. A writer reopening a
shard first cuts such a torn tail so the next record starts on a fresh line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import UserError
from harness.spec import JobSpec

RECORD_FORMAT = 1


class ShardWriter:
    """Appends records to one shard file; the only writer of that file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = open(path, "ab+")
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

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"format": RECORD_FORMAT, **record}, sort_keys=True, allow_nan=True)
        self._f.write(line.encode() + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_shard(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete records of one shard and the number of torn (unterminated) lines skipped."""
    blob = path.read_bytes()
    lines = blob.split(b"\n")
    torn = 1 if lines and lines[-1] else 0
    out = []
    for raw in lines[:-1]:
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            torn += 1
            continue
        if rec.get("format") != RECORD_FORMAT:
            raise UserError(f"record format {rec.get('format')} is not {RECORD_FORMAT}; this store was "
                            f"written by another harness version", file=str(path))
        out.append(rec)
    return out, torn


@dataclass
class UnitState:
    """What the store knows of one unit: its accepted ok record and failed attempts."""

    ok: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    disagreements: int = 0


class Store:
    """The directory of one job spec's results."""

    def __init__(self, root: str | Path, spec: JobSpec) -> None:
        self.spec = spec
        self.dir = Path(root) / spec.name / spec.digest()
        self.shards = self.dir / "shards"

    def init(self) -> None:
        """Create the directory and freeze the spec (atomically; once)."""
        self.shards.mkdir(parents=True, exist_ok=True)
        frozen = self.dir / "spec.json"
        if not frozen.exists():
            tmp = frozen.with_suffix(f".tmp-{socket.gethostname()}-{os.getpid()}")
            tmp.write_text(json.dumps({"format": RECORD_FORMAT, "name": self.spec.name,
                                       "canonical": self.spec.canonical(), "job_file": self.spec.raw},
                                      indent=1, sort_keys=True, default=str))
            os.replace(tmp, frozen)

    def writer(self, name: str) -> ShardWriter:
        return ShardWriter(self.shards / f"{name}.jsonl")

    def records(self, warn: bool = True) -> Iterator[dict[str, Any]]:
        """Every complete record of every shard, shard files in name order."""
        if not self.shards.is_dir():
            return
        for path in sorted(self.shards.glob("*.jsonl")):
            recs, torn = read_shard(path)
            if torn and warn:
                print(f"harness: skipped {torn} torn line(s) in {path}", file=sys.stderr)
            yield from recs

    def states(self) -> dict[str, UnitState]:
        """Per unit id: the first ok record (later ok records are duplicates) and failures."""
        states: dict[str, UnitState] = {}
        for rec in self.records():
            st = states.setdefault(rec["unit"], UnitState())
            if rec["status"] != "ok":
                st.failures.append(rec)
            elif st.ok is None:
                st.ok = rec
            elif rec.get("result") != st.ok.get("result"):
                st.disagreements += 1
        return states
