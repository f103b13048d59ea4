"""The job verbs: plan, run, report, export, status (decompose and slurm live elsewhere)."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError
from harness.matrix import Unit, batches, count_trainings, plan, shard
from harness.spec import JobSpec, load_job
from harness.store import Store


def dispatch(args: argparse.Namespace) -> int:
    spec = load_job(args.job)
    verb = args.verb if args.verb != "slurm" else f"slurm_{args.slurm_verb}"
    return {"plan": cmd_plan, "run": cmd_run, "report": cmd_report, "export": cmd_export,
            "status": cmd_status,
            "slurm_submit": cmd_slurm_submit}[verb](spec, args)


def cmd_slurm_submit(spec: JobSpec, args: argparse.Namespace) -> int:
    from harness.slurm import submit
    return submit(spec, args)


def unit_trainings(spec: JobSpec, unit: Unit) -> int:
    s = spec.search
    return 1 if unit.kind == "eval" else s.max_evals * spec.objective_runs + s.reevaluate_init * s.reevaluate_order


def cmd_plan(spec: JobSpec, args: argparse.Namespace) -> int:
    units = plan(spec)
    kinds = Counter(u.kind for u in units)
    lv = ", ".join(f"{s} {len(v)}" for s, v in spec.levels.items())
    print(f"job {spec.name} ({spec.path}), spec {spec.digest()}")
    print(f"seed levels: {lv}; determinism: {', '.join(spec.determinism.modes)}; engine {spec.training.engine}")
    print(f"units: {kinds['eval']} evaluation, {kinds['study']} study; trainings: {count_trainings(spec)}")
    return 0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """--shard I/N, else Slurm's array variables, else None (run everything)."""
    where = "--shard"
    if text is None:
        env = os.environ
        task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return None
        where = (f"Slurm array task {task} (min {env.get('SLURM_ARRAY_TASK_MIN', '0')}, "
                 f"step {env.get('SLURM_ARRAY_TASK_STEP', '1')}, count {count}); submit a contiguous "
                 f"--array=0-N[:step] or pass --shard I/N")
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))  # --array=0-30:10: tasks 0, 10, 20, 30
        text = f"{(int(task) - int(env.get('SLURM_ARRAY_TASK_MIN', '0'))) // step}/{count}"
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"{where}: expected I/N with integers, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise UserError(f"{where}: expected shard I/N with 0 <= I < N, got {text!r}")
    return i, n


def cmd_run(spec: JobSpec, args: argparse.Namespace) -> int:
    from harness import data
    from harness.executors import make_executor

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: expected an integer >= 1, got {args.workers}")
    units = plan(spec)
    part = parse_shard(args.shard)
    if part is not None:
        units = shard(units, *part)
    data.check(spec.data, spec.path)
    store = Store(args.store, spec)
    executor = make_executor(args.executor, spec, store, args.workers)  # may refuse: before any write
    store.init()
    max_tries = spec.dispatch.max_retries + 1
    started = time.monotonic()
    trained = 0
    for _ in range(max_tries):
        states = store.states()
        pending = [u for u in units if u.id not in states or
                   (states[u.id].ok is None and len(states[u.id].failures) < max_tries)]
        if not pending:
            break
        attempts = {u.id: len(states[u.id].failures) + 1 if u.id in states else 1 for u in pending}
        size = {u.id: unit_trainings(spec, u) for u in pending}
        progress = Progress(len(pending), sum(size.values()), not args.no_progress)
        work = [(b, {u.id: attempts[u.id] for u in b}) for b in batches(pending, spec.dispatch.batch_units)]
        try:
            executor.execute(work, progress.reporter(size))
        finally:
            progress.close()
        trained += progress.trainings
    states = store.states()
    done = sum(1 for u in units if u.id in states and states[u.id].ok)
    failed = [u for u in units if u.id in states and states[u.id].ok is None]
    print(f"{spec.name}: {done}/{len(units)} units done, {len(failed)} failed; {trained} trainings in "
          f"{time.monotonic() - started:.1f} s; store {store.dir}", file=sys.stderr)
    for u in failed[:5]:
        print(f"  failed unit {u.id} ({u.kind}): {states[u.id].failures[-1].get('error')}", file=sys.stderr)
    return 0


class Progress:
    """units done / failed / left, trainings per minute and ETA (tqdm over trainings)."""

    def __init__(self, units: int, trainings: int, show: bool) -> None:
        from tqdm import tqdm
        self.left, self.done, self.failed, self.trainings = units, 0, 0, 0
        self.start = time.monotonic()
        self.bar = tqdm(total=trainings, unit="training", disable=not show, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)
        self._postfix()

    def _postfix(self) -> None:
        minutes = (time.monotonic() - self.start) / 60
        rate = self.trainings / minutes if minutes > 0 else 0.0
        self.bar.set_postfix_str(f"units {self.done} done / {self.failed} failed / {self.left} left, "
                                 f"{rate:.0f} trainings/min", refresh=False)

    def update(self, status: str, trainings: int) -> None:
        self.left -= 1
        if status == "ok":
            self.done += 1
            self.trainings += trainings
        else:
            self.failed += 1
        self._postfix()
        self.bar.update(trainings)

    def reporter(self, size: dict[str, int]) -> Callable[[str, str, int], None]:
        """The executor's per-unit callback; a failed unit advances the bar by its planned size."""
        return lambda uid, status, n: self.update(status, n or size[uid])

    def close(self) -> None:
        self.bar.close()


def _existing_store(spec: JobSpec, args: argparse.Namespace) -> Store:
    store = Store(args.store, spec)
    if not store.shards.is_dir():
        raise UserError(f"no results for this job spec in {store.dir}; run `harness run {args.job}` first",
                        file=spec.path)
    return store


def cmd_report(spec: JobSpec, args: argparse.Namespace) -> int:
    from harness.report import write_report
    path = write_report(spec, _existing_store(spec, args), Path(args.out))
    print(path)
    return 0


def cmd_export(spec: JobSpec, args: argparse.Namespace) -> int:
    from harness.results import columns, training_rows
    rows = training_rows(spec, _existing_store(spec, args).states())
    out = Path(args.csv)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns(spec), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)
    print(f"{len(rows)} rows -> {out}", file=sys.stderr)
    return 0


def cmd_status(spec: JobSpec, args: argparse.Namespace) -> int:
    store = Store(args.store, spec)
    states = store.states()
    units = plan(spec)
    by_kind: dict[str, Counter[str]] = {}
    for u in units:
        st = states.get(u.id)
        state = "pending" if st is None else "done" if st.ok else "failed"
        by_kind.setdefault(u.kind, Counter())[state] += 1
    shards = sorted(p.name for p in store.shards.glob("*.jsonl")) if store.shards.is_dir() else []
    print(f"job {spec.name}, store {store.dir}, {len(shards)} shard(s)")
    for kind, c in by_kind.items():
        print(f"  {kind:5s} units: {c['done']} done, {c['failed']} failed, {c['pending']} pending")
    dis = sum(st.disagreements for st in states.values())
    if dis:
        print(f"  {dis} duplicate record(s) disagree with the first: the training is not deterministic here")
    return 0
