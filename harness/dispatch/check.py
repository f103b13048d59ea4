"""The driver's check (`training.preflight.check`) in a child process, bounded: a user's builder
or data function that exits (`sys.exit`, `os._exit`), crashes the process or hangs ends the run
with one line naming that function, never the driver with it (nor with exit 0). Engine
`vectorized`'s probe (`VectorizedEngine.probe`) runs the same way, in a child under jax."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from harness.dispatch.process import ignore_sigint, sigint_held
from harness.errors import UserError
from harness.job.spec import JobSpec
from harness.training import determinism

CHECK_TIMEOUT_S = 600.0  # without dispatch.unit_timeout: a data download and a model build fit in it


def checked(spec: JobSpec) -> dict[str, Any]:
    """The data's identity once data and model passed the check; else one UserError line: the
    check's own, or what became of the process while it ran a user's function."""
    return dict(_in_child(spec, _child, None))


def vectorizable(spec: JobSpec) -> str | None:
    """Why engine vectorized cannot train this job's model (None: it can), found under jax in a
    child before any training."""
    reason = _in_child(spec, _probe_child, "jax")
    return str(reason) if reason else None


def _in_child(spec: JobSpec, target: Any, backend: str | None) -> Any:
    """What `target(conn, spec)` sends back as ("ok", payload) from a spawned child (started
    under Keras backend `backend`, else the driver's)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(theirs, spec), name="harness-check", daemon=True)
    saved = dict(os.environ)
    with sigint_held():  # Ctrl-C is the driver's alone, as for workers
        if backend:
            os.environ["KERAS_BACKEND"] = backend  # what the spawned interpreter starts with
        try:
            proc.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    theirs.close()
    limit = spec.dispatch.unit_timeout or CHECK_TIMEOUT_S  # from the call of a user's function
    deadline = time.monotonic() + max(limit, CHECK_TIMEOUT_S)  # start-up and imports: the check limit
    what, key = "the driver's check of the data and model", "data"
    try:
        while ours.poll(max(0.0, deadline - time.monotonic())):
            try:
                kind, payload = ours.recv()
            except EOFError:  # it ended without a word: its exit code says how
                proc.join(timeout=5)
                break
            if kind == "calling":
                what, key = payload
                deadline = time.monotonic() + limit
            elif kind == "ok":
                return payload
            elif kind == "error":
                raise UserError(payload)
            else:
                raise RuntimeError(f"the driver's check failed:\n{payload}")
        else:
            raise UserError(f"{what} did not return within {limit:g} s while the driver checked it "
                            f"({'dispatch.unit_timeout' if spec.dispatch.unit_timeout else 'the check limit'}); "
                            f"the run stopped before anything was written", file=spec.path, key=key)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    raise UserError(f"{what} ended the process that checked it (exit code {proc.exitcode}) instead of "
                    f"returning or raising; the run stopped before anything was written", file=spec.path, key=key)


def _child(conn: Connection, spec: JobSpec) -> None:
    """In the child: run the check, say which user function is about to run, send the outcome."""
    ignore_sigint()
    from harness.training import preflight
    try:
        identity = preflight.check(spec, lambda what, key: conn.send(("calling", (what, key))))
    except UserError as exc:
        conn.send(("error", str(exc)))
    except Exception:
        conn.send(("bug", traceback.format_exc()))
    else:
        conn.send(("ok", identity))


def _probe_child(conn: Connection, spec: JobSpec) -> None:
    """In the child (under jax): probe engine vectorized on the job's first configuration (the
    one the check builds); send the reason it cannot train it, or None."""
    ignore_sigint()
    determinism.prepare_process(spec.determinism.modes[0])
    from harness.training.engines import VectorizedEngine
    from harness.training.trainer import Trainer
    try:
        trainer = Trainer(spec, "vectorized")
        training, args = trainer.settings(dict(spec.configurations[0]) if spec.configurations else {})
        assert isinstance(trainer.engine, VectorizedEngine)
        conn.send(("ok", trainer.engine.probe(trainer.dataset(0), training, args)))
    except UserError as exc:
        conn.send(("error", str(exc)))
    except Exception:
        conn.send(("bug", traceback.format_exc()))
