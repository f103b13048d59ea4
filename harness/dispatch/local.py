"""The local executor: persistent worker processes (spawned, so each sets its device and threads
before importing TensorFlow), fed batches over pipes by the driver."""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.dispatch.base import Batch, Done, take
from harness.dispatch.process import sigint_held, worker_main
from harness.dispatch.slots import Slot, plan_slots, shard_prefix
from harness.errors import UserError
from harness.job.spec import JobSpec
from harness.store.claims import BatchClaims
from harness.store.records import failed, new_record
from harness.store.store import ShardWriter, Store
from harness.training import determinism

STOP_EXITCODES = (-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP)  # what a stop of the whole run sends


@dataclass
class _Live:
    """A running worker process as the driver sees it."""

    name: str
    proc: Any
    conn: Connection
    slot: Slot
    mode: str                    # its op-determinism mode at start (binding where fixed at start)
    batch: Batch | None = None   # the batch it is training
    deadline: float | None = None  # when that batch has run out of time (dispatch.unit_timeout)
    trained: int = 0             # trainings since it started
    ready: bool = False          # it has said it is ready (started up)


def successor_mode(queued: list[str], mode: str, others: list[str], per_process: bool) -> str | None:
    """The mode a fresh worker in the slot of a worker in `mode` starts in, or None when the slot
    is not needed: its own mode while batches of it are queued (or any batch at all where a
    process switches modes itself); else the other queued mode, if its batches outnumber the
    other live workers already in it (`queued`: the modes of the queued batches)."""
    if not queued:
        return None
    if not per_process or mode in queued:
        return mode
    other = queued[-1]
    return other if queued.count(other) > others.count(other) else None


class LocalExecutor:
    """Persistent worker processes. A worker that dies has its in-flight units recorded as failed
    by the driver and is replaced. Under engine `fit`, whose fresh model per training grows a
    process by ~5 MB, a worker is replaced after `RECYCLE_FIT_TRAININGS` trainings (the others
    stay flat). Where the backend fixes op determinism at process start (jax), a worker trains
    batches of its own mode and is replaced by one of the other mode when only those are left."""

    RECYCLE_FIT_TRAININGS = 150
    MAX_FAILED_STARTS = 3  # workers in a row that die before they are ready: the run stops
    STOP_GRACE_S = 0.5  # after a worker's death by a stop signal: time for the driver's own to arrive

    def __init__(self, spec: JobSpec, store: Store, engine: str, workers: int | None = None) -> None:
        """`engine`: the label the driver resolved once (`harness.training.engines.resolve`)."""
        self.spec, self.store, self.engine = spec, store, engine
        self.recycle_after = self.RECYCLE_FIT_TRAININGS if engine == "fit" else None
        self.mode_per_process = determinism.mode_fixed_at_start()
        self.slots = plan_slots(spec, workers)
        self.prefix = shard_prefix("local")
        self._spawned = 0
        self._ctx = mp.get_context("spawn")

    def spawn(self, slot: Slot, mode: str) -> _Live:
        parent, child = self._ctx.Pipe()
        name = f"{self.prefix}-w{self._spawned}"
        self._spawned += 1
        proc = self._ctx.Process(target=worker_main, name=name, daemon=True,
                                 args=(child, self.spec, str(self.store.root), name, slot, mode, self.engine))
        with sigint_held():  # Ctrl-C is the driver's alone, from the worker's first instruction
            proc.start()
        child.close()
        return _Live(name, proc, parent, slot, mode)

    def execute(self, batches: list[Batch], done: Done, claims: BatchClaims) -> None:
        run = _Run(self, batches, done, claims)
        try:
            run.start()
            run.loop()
        finally:
            run.close()


class _Run:
    """One `execute`: the queue of batches, the live workers, and a handler per event."""

    def __init__(self, pool: LocalExecutor, batches: list[Batch], done: Done, claims: BatchClaims) -> None:
        self.pool, self.done, self.claims = pool, done, claims
        self.queue = list(reversed(batches))
        self.live: dict[Connection, _Live] = {}
        self.driver: ShardWriter | None = None  # the driver's own shard, for dead workers' units
        self.failed_starts = 0

    def start(self) -> None:
        """One worker per slot (no more than batches), each in the mode of the batch it will most
        likely take first."""
        slots = self.pool.slots[:max(1, len(self.queue))]
        first = list(reversed(self.queue))[:len(slots)]
        modes = [b[0][0].mode for b in first] + [self.pool.spec.determinism.modes[0]] * (len(slots) - len(first))
        for slot, mode in zip(slots, modes, strict=True):
            self._start(slot, mode)

    def loop(self) -> None:
        while self.live:
            ready = wait(list(self.live), timeout=self._time_left())
            for w in [w for conn, w in self.live.items() if conn in ready]:
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError):
                    self.on_death(w)
                    continue
                self.on_message(w, kind, payload)
            self.expire()

    def close(self) -> None:
        for w in self.live.values():
            w.proc.terminate()
        for w in self.live.values():
            w.proc.join(timeout=5)  # before the driver lets their claims go
        if self.driver is not None:
            self.driver.close()

    def on_message(self, w: _Live, kind: str, payload: Any) -> None:
        """A worker is ready or finished a batch: report its units, recycle it if due, feed it."""
        if kind == "error":  # a full disk, a file in the store it did not make: the worker's one line
            raise UserError(payload)
        if w.batch is not None:
            self.claims.release(w.batch[0])
        w.ready, w.batch, w.deadline = True, None, None
        self.failed_starts = 0
        if kind == "done":
            for uid, status, n in payload:
                self.done(uid, status, n)
            w.trained += sum(n for _, _, n in payload)
            if self.queue and self.pool.recycle_after and w.trained >= self.pool.recycle_after:
                self._replace(w)  # a fresh process in its place: memory back to its start
                return
        self.feed(w)

    def feed(self, w: _Live) -> None:
        """The next batch of its mode, or stop it (and start one of the other mode if needed)."""
        nxt = self._next(w.mode)
        if nxt is None:
            self._replace(w)
            return
        w.conn.send(nxt)
        w.batch = nxt
        limit = self.pool.spec.dispatch.unit_timeout
        w.deadline = None if limit is None else time.monotonic() + limit * len(nxt[0])

    def _time_left(self) -> float | None:
        """Seconds until the first in-flight batch runs out of time; None: no deadline."""
        deadlines = [w.deadline for w in self.live.values() if w.deadline is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def expire(self) -> None:
        """Kill each worker whose batch has run past its time (k units: k x unit_timeout); its
        unrecorded units are failed with the reason and a fresh worker takes its slot."""
        now = time.monotonic()
        for w in [w for w in self.live.values() if w.deadline is not None and w.deadline <= now]:
            w.proc.kill()
            w.proc.join(timeout=5)
            del self.live[w.conn]
            w.conn.close()
            assert w.batch is not None
            self._record_death(w.batch, f"timed out after {self.pool.spec.dispatch.unit_timeout:g} s "
                                        f"(dispatch.unit_timeout)")
            self._start(w.slot, self._successor(w))

    def on_death(self, w: _Live) -> None:
        """A worker's pipe closed: its batch is charged one attempt and a fresh worker takes its
        slot (too many failed starts end the run). A stop from outside (scancel, kill of the
        process group) reaches the driver too, whose own handler ends the run meanwhile: a worker
        killed by a signal alone is a death like any other, its units retryable."""
        w.proc.join(timeout=5)
        del self.live[w.conn]
        code = w.proc.exitcode
        if code in STOP_EXITCODES:
            time.sleep(self.pool.STOP_GRACE_S)  # the driver's own SIGTERM / SIGINT, if any, is handled here
        if w.batch is not None:
            died = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            self._record_death(w.batch, f"worker process died ({died})")
        if not w.ready:
            self.failed_starts += 1
            if self.failed_starts >= self.pool.MAX_FAILED_STARTS:
                raise UserError(f"worker {w.name} exited (code {w.proc.exitcode}) before it was ready, "
                                f"{self.failed_starts} starts in a row: see the traceback above and "
                                f"{self.pool.store.dir / 'logs' / (w.name + '.log')}") from None
        self._start(w.slot, self._successor(w))

    def _start(self, slot: Slot, mode: str | None) -> None:
        if mode is not None:
            w = self.pool.spawn(slot, mode)
            self.live[w.conn] = w

    def _replace(self, w: _Live) -> None:
        """Stop a worker; start its successor in the same slot if one is needed."""
        w.conn.send(None)
        w.proc.join(timeout=30)
        if w.proc.is_alive():
            w.proc.terminate()
        del self.live[w.conn]
        self._start(w.slot, self._successor(w))

    def _successor(self, w: _Live) -> str | None:
        return successor_mode([b[0][0].mode for b in self.queue], w.mode,
                              [x.mode for x in self.live.values() if x is not w], self.pool.mode_per_process)

    def _next(self, mode: str) -> Batch | None:
        """The next batch for a worker in `mode` that still has units to train here (claimed,
        not recorded elsewhere); None when there is none for it."""
        while (batch := self._pop(mode)) is not None:
            mine = take(self.claims, batch)
            if mine is not None:
                return mine
        return None

    def _pop(self, mode: str) -> Batch | None:
        """The queue's next batch, or (one mode per process) the next one of `mode`."""
        if not self.pool.mode_per_process:
            return self.queue.pop() if self.queue else None
        for i in range(len(self.queue) - 1, -1, -1):
            if self.queue[i][0][0].mode == mode:
                return self.queue.pop(i)
        return None

    def _record_death(self, batch: Batch, reason: str) -> None:
        """A dead (or killed) worker's batch: units it recorded are reported as recorded; the
        others count as one failed attempt each, with `reason` (so a unit that kills its worker
        is not retried forever). Then the batch's claims are let go."""
        states = self.pool.store.states()
        units, attempts = batch
        for u in units:
            st = states.get(u.id)
            if st is not None and st.ok is not None:
                self.done(u.id, "ok", 0)
                continue
            if st is None or not any(f.get("attempt") == attempts.get(u.id, 1) for f in st.failures):
                self.driver = self.driver or self.pool.store.writer(f"{self.pool.prefix}-driver")
                self.driver.append(failed(new_record(self.pool.spec, u, attempts.get(u.id, 1), self.pool.engine,
                                                     f"{self.pool.prefix}-driver"),
                                          reason))
            self.done(u.id, "failed", 0)
        self.claims.release(units)
