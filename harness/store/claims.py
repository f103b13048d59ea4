"""Claims on units, so that runs sharing a store (two local runs, a local run beside a Slurm array,
two arrays of different sizes) train each unit once instead of each training everything.

A claim is a file `<store>/claims/<unit id>.json` naming its owner: host, pid, the process's start
time (so a reused pid is not taken for its owner) and when it was claimed. It is created whole or
not at all: written to a private temporary file, then hard-linked to its name, which fails when the
name exists (`O_EXCL` semantics, also over NFS). A driver claims a batch's units just before it
trains them, re-reads the store (a unit someone else recorded meanwhile is not trained again), and
releases them once their records are written. A claim whose owner is dead is reclaimed: on the same
host when its pid is gone, on another host when it is older than the job's `dispatch.lease`. So a
unit is trained twice only when an owner died with it in flight.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.files import FULL, open_regular, read_regular, real_dir
from harness.job.matrix import Unit
from harness.store.store import Store, StoreFull, Tail

HOST = socket.gethostname()


def proc_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux's /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; fields after the command name start at 3


def owner_alive(claim: dict[str, Any], lease: float, now: float) -> bool:
    """Whether a claim's owner may still be training: its process exists (same host), else its
    claim is younger than the lease (another host, whose processes this one cannot see)."""
    if claim.get("host") != HOST:
        return now - float(claim.get("time", 0)) < lease
    pid = claim.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    started = claim.get("proc_start")
    return started is None or proc_start(pid) in (None, started)


class Claims:
    """This process's claims in one claims directory."""

    def __init__(self, root: Path, directory: Path, lease: float) -> None:
        """`directory`: below the store `root`; checked a real directory before each use."""
        self.root, self.dir, self.lease = root, directory, lease
        self.me = {"host": HOST, "pid": os.getpid(), "proc_start": proc_start(os.getpid()),
                   "token": uuid.uuid4().hex}
        self.held: set[str] = set()

    def _path(self, uid: str) -> Path:
        return self.dir / f"{uid}.json"

    def read(self, uid: str) -> dict[str, Any] | None:
        """A unit's claim, None when there is none; an unreadable one reads as ownerless (a link or
        anything but a regular file is refused, one line)."""
        try:
            claim = json.loads(read_regular(self._path(uid), limit=2**16))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return claim if isinstance(claim, dict) else {}

    def claim(self, uid: str) -> bool:
        """Take a unit: True when this process now holds it (a new claim, or a dead owner's)."""
        if self._create(uid):
            return True
        with self._lock():  # one reclaimer at a time: a live claim made meanwhile is never removed
            other = self.read(uid)
            if other is not None and owner_alive(other, self.lease, time.time()):
                return False
            self._path(uid).unlink(missing_ok=True)
            return self._create(uid)

    def held_elsewhere(self, uid: str) -> dict[str, Any] | None:
        """The claim of a live owner other than this process, if there is one."""
        claim = self.read(uid)
        if claim is None or claim.get("token") == self.me["token"]:
            return None
        return claim if owner_alive(claim, self.lease, time.time()) else None

    def release(self, uids: list[str]) -> None:
        """Give up this process's claims on these units (another's claim is left alone)."""
        for uid in uids:
            if uid in self.held:
                self.held.discard(uid)
                claim = self.read(uid)
                if claim is not None and claim.get("token") == self.me["token"]:
                    self._path(uid).unlink(missing_ok=True)

    def release_all(self) -> None:
        self.release(sorted(self.held))

    def sweep(self) -> None:
        """Remove dead owners' claims (left by a run killed after its units were recorded, which
        no later run would otherwise touch)."""
        if not real_dir(self.root, self.dir).is_dir():
            return
        with self._lock():
            for path in self.dir.glob("*.json"):
                claim = self.read(path.stem)
                if claim is not None and not owner_alive(claim, self.lease, time.time()):
                    path.unlink(missing_ok=True)

    def _create(self, uid: str) -> bool:
        """The claim file, made whole under a temporary name and linked to its own (fails when
        it exists)."""
        tmp = self.dir / f".{uid}.{self.me['token']}.tmp"
        try:
            real_dir(self.root, self.dir, create=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with open(fd, "w") as f:
                f.write(json.dumps({**self.me, "time": time.time()}))
            os.link(tmp, self._path(uid))
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in FULL:
                raise StoreFull(str(self.dir), exc) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
        self.held.add(uid)
        return True

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(open_regular(self.dir / ".lock", os.O_WRONLY | os.O_CREAT), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


class BatchClaims:
    """What an executor asks before and after training a batch: which of its units to train now
    (claimed here, not recorded by anyone), and when to let them go. Units held by live owners
    elsewhere are skipped and remembered, so the driver can wait for them."""

    POLL_S = 1.0

    def __init__(self, store: Store, lease: float) -> None:
        self.claims = Claims(store.root, store.dir / "claims", lease)
        self.tail = Tail(store)
        self.elsewhere: set[str] = set()

    def take(self, units: list[Unit]) -> list[Unit]:
        """The units of a batch this process should train now; each claimed until `release`."""
        mine = [u for u in units if self.claims.claim(u.id)]
        self.elsewhere |= {u.id for u in units} - {u.id for u in mine}
        recorded = self.tail.refresh()  # a unit recorded by another run since this pass began
        self.claims.release([u.id for u in mine if u.id in recorded])
        return [u for u in mine if u.id not in recorded]

    def release(self, units: list[Unit]) -> None:
        self.claims.release([u.id for u in units])

    def release_all(self) -> None:
        """Let go of every claim this process holds, and sweep up dead owners' claims."""
        self.claims.release_all()
        self.claims.sweep()

    def wait_elsewhere(self) -> None:
        """Block until no unit skipped as held elsewhere is still held by a live owner (each is
        then recorded, or its owner died and a next pass reclaims it)."""
        held = sorted(self.elsewhere)
        first = next((c for c in map(self.claims.held_elsewhere, held) if c), None)
        if first is not None:
            print(f"harness: waiting for {len(held)} unit(s) claimed by another run (host {first.get('host')}, "
                  f"pid {first.get('pid')})", file=sys.stderr)
        while any(self.claims.held_elsewhere(uid) for uid in held):
            time.sleep(self.POLL_S)
        self.elsewhere.clear()
