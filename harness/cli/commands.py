"""One Command class per verb (asv's habit): `setup_arguments` declares its arguments, `run` does
the work with plain arguments. `from_args` is the only place a Namespace is unpacked. Heavy
modules are imported inside `run`, so `harness --help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from harness.cli.args import job_arguments, non_negative_int, positive_int
from harness.errors import UserError


class Command:
    """A verb of the CLI."""

    name: ClassVar[str]
    help: ClassVar[str]

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(cls.name, help=cls.help, description=cls.help)
        p.set_defaults(command=cls)
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        raise NotImplementedError


class Plan(Command):
    name, help = "plan", "validate a job file and print its matrix"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        return job_arguments(super().setup_arguments(sub))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job)

    @staticmethod
    def run(job: str) -> int:
        from harness.job import load_job
        spec = load_job(job)
        lv = ", ".join(f"{s} {len(v)}" for s, v in spec.levels.items())
        print(f"job {spec.name} ({spec.path}), spec {spec.digest()}")
        print(f"seed levels: {lv}; determinism: {', '.join(spec.determinism.modes)}; engine {spec.training.engine}")
        runs = f", {len(spec.seeding.policies) * spec.seeding.runs} seeding-policy runs" if spec.seeding else ""
        print(f"units: {spec.eval_units()} evaluation, {spec.study_units()} study{runs}; trainings: {spec.trainings()}")
        return 0


SHOWN_FAILURES = 20  # failed units listed after a run; `harness status` counts them all


class Run(Command):
    name, help = "run", "run (or resume) every unit of a job; exit 0: all done, 1: some failed"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = job_arguments(super().setup_arguments(sub))
        p.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: from the job)")
        p.add_argument("--executor", choices=("local", "debug"), default="local",
                       help="local: persistent worker processes; debug: in this process")
        p.add_argument("--part", "--shard", dest="part", default=None, metavar="I/N",
                       help="run only part I of N of the plan, as array task I of N would (default: from "
                            "SLURM_ARRAY_TASK_ID/COUNT; --shard is its old name)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job, args.store, args.workers, args.executor, args.part, not args.no_progress)

    @staticmethod
    def run(job: str, store_root: str, workers: int | None, executor: str, part_text: str | None,
            progress: bool) -> int:
        from harness.cli.progress import progress_factory
        from harness.dispatch.array import parse_part
        from harness.dispatch.check import checked, vectorizable
        from harness.dispatch.driver import run_units
        from harness.dispatch.executors import make_executor
        from harness.job import load_job
        from harness.job.matrix import array_part
        from harness.store import Store
        from harness.training import determinism, engines
        from harness.units import plan

        spec = load_job(job)
        units = plan(spec)
        part = parse_part(part_text)
        if part is not None:
            units = array_part(units, *part)
        data = checked(spec)  # data and model, before any worker starts or anything is written
        store = Store(store_root, spec)
        backend = determinism.backend_name()
        engine = engines.resolve(spec.training.engine, backend, spec.training.xla)  # once, here: its notice on stderr
        why_not = vectorizable(spec) if engine == "vectorized" else None
        if why_not:
            engines.notice(f"engine vectorized cannot train this model ({why_not}); using exact")
            engine = engines.resolve("exact", backend, spec.training.xla)
        runner = make_executor(executor, spec, store, engine, workers)  # may refuse: before any write
        store.init(data)
        summary = run_units(spec, store, runner, units, progress_factory(spec, progress))
        print(f"{spec.name}: {summary.done}/{summary.units} units done, {len(summary.failed)} failed; "
              f"{summary.trainings} trainings in {summary.seconds:.1f} s; store {store.dir}", file=sys.stderr)
        for u, error in summary.failed[:SHOWN_FAILURES]:
            print(f"  failed unit {u.id} ({u.kind}): {error}", file=sys.stderr)
        if len(summary.failed) > SHOWN_FAILURES:
            print(f"  ... and {len(summary.failed) - SHOWN_FAILURES} more failed units", file=sys.stderr)
        return summary.exit_code


class Status(Command):
    name, help = "status", "units done / failed / pending across shards"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = job_arguments(super().setup_arguments(sub))
        p.add_argument("--check", action="store_true", help="exit 1 while any unit is pending or failed")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job, args.store, args.check)

    @staticmethod
    def run(job: str, store_root: str, check: bool = False) -> int:
        from harness.job import load_job
        from harness.store import Store
        from harness.units import plan
        spec = load_job(job)
        store = Store(store_root, spec)
        states = store.states()
        by_kind: dict[str, Counter[str]] = {}
        for u in plan(spec):
            st = states.get(u.id)
            by_kind.setdefault(u.kind, Counter())["pending" if st is None else "done" if st.ok else "failed"] += 1
        print(f"job {spec.name}, store {store.dir}, {len(store.shard_paths())} shard(s)")
        for kind, c in by_kind.items():
            print(f"  {kind:5s} units: {c['done']} done, {c['failed']} failed, {c['pending']} pending")
        dis = sum(st.disagreements for st in states.values())
        if dis:
            print(f"  {dis} duplicate record(s) disagree with the first: the training is not deterministic here")
        unfinished = sum(c["failed"] + c["pending"] for c in by_kind.values())
        return 1 if check and unfinished else 0


class Report(Command):
    name, help = "report", "write reports/<job>.md from the store (no training)"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = job_arguments(super().setup_arguments(sub))
        p.add_argument("--out", default="reports", help="report directory (default: reports/)")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job, args.store, args.out)

    @staticmethod
    def run(job: str, store_root: str, out: str) -> int:
        from harness.api import open_store
        from harness.reporting.sections import write_report
        print(write_report(*open_store(job, store_root), Path(out)))
        return 0


class Export(Command):
    name, help = "export", "write one CSV row per training"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = job_arguments(super().setup_arguments(sub))
        p.add_argument("--csv", required=True, metavar="FILE", help="output CSV path")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job, args.store, args.csv)

    @staticmethod
    def run(job: str, store_root: str, csv_path: str) -> int:
        from harness.api import open_store
        from harness.files import atomic_open
        from harness.store.export import write_csv
        target = Path(csv_path)
        if target.is_dir() or not target.parent.is_dir():
            raise UserError("expected a CSV file path in an existing directory", file=csv_path)
        spec, store = open_store(job, store_root)
        with atomic_open(target, "w", newline="") as f:
            n = write_csv(spec, store, f)
        print(f"{n} rows -> {csv_path}", file=sys.stderr)
        return 0


class Verify(Command):
    name, help = "verify", "check a store's integrity line by line (exit 1 on any bad line); --repair quarantines"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = job_arguments(super().setup_arguments(sub))
        p.add_argument("--repair", action="store_true",
                       help="move corrupt lines to <shard>.quarantine (run while nothing writes the store)")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job, args.store, args.repair)

    @staticmethod
    def run(job: str, store_root: str, repair: bool) -> int:
        from harness.api import open_store
        from harness.store.verify import repair as repair_store
        from harness.store.verify import verify
        _, store = open_store(job, store_root)
        verdict = verify(store)
        for problem in verdict.problems:
            print(problem)
        if repair and not verdict.clean:
            for step in repair_store(store, verdict):
                print(step)
            verdict = verify(store)
        print(f"{store.dir}: {verdict.shards} shard(s), {verdict.records} record(s), {len(verdict.problems)} bad "
              f"line(s); {verdict.duplicates} duplicate(s), {verdict.disagreements} disagree with the first")
        if len(verdict.machines) > 1:
            print(f"mixed hardware: {len(verdict.machines)} machines ("
                  + "; ".join(f"{m}: {n} record(s)" for m, n in verdict.machines.most_common())
                  + f"); bit-identity is claimed per machine: {verdict.across_machines} duplicate(s) differ "
                    f"across machines")
        return 0 if verdict.clean else 1


class Migrate(Command):
    name, help = "migrate", "bring a store written by an older harness to this one's record format"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        return job_arguments(super().setup_arguments(sub))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        return cls.run(args.job, args.store)

    @staticmethod
    def run(job: str, store_root: str) -> int:
        from functools import cache

        from harness.job import load_job
        from harness.store import Store
        from harness.store.migrate import migrate
        from harness.training import data
        spec = load_job(job)

        @cache
        def test_size(split_seed: int) -> int:
            return len(data.load(spec.data, split_seed, spec.path).y_test)

        steps = migrate(Store(store_root, spec), spec, test_size)
        print("\n".join(steps) if steps else "the store is already in this harness's format")
        return 0


class Decompose(Command):
    name, help = "decompose", "variance components of any CSV"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = super().setup_arguments(sub)
        p.description = "Random-effects variance decomposition of a CSV column."
        p.add_argument("csv", metavar="FILE.csv")
        p.add_argument("--value", required=True, help="the numeric column to decompose")
        p.add_argument("--factors", nargs="+", required=True, help="random factor columns")
        p.add_argument("--nested", action="append", default=[], metavar="B:A",
                       help="factor B nested in factor A (repeatable)")
        p.add_argument("--group", default=None, help="decompose separately for each level of this column")
        p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                       help="keep only the rows where COLUMN holds VALUE (repeatable); a harness export's rows "
                            "of several kinds need one, e.g. --where kind=eval")
        p.add_argument("--ci", choices=("gpq", "mls", "bootstrap", "none"), default=None,
                       help="95%% interval method (default gpq: generalized pivotal quantities; mls: closed "
                            "form, variances only; bootstrap: multi-way cluster bootstrap)")
        p.add_argument("--draws", type=non_negative_int, default=0, metavar="N",
                       help="GPQ draws or bootstrap replicates (0: 5000 for gpq, 1000 for the bootstrap)")
        p.add_argument("--bootstrap", type=non_negative_int, default=None, metavar="N",
                       help="shorthand for --ci bootstrap --draws N (0: no intervals)")
        p.add_argument("--seed", type=int, default=0, help="seed of the GPQ draws or the bootstrap")
        p.add_argument("--json", action="store_true", help="print JSON instead of markdown")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        from harness.stats.decompose_csv import decompose_csv
        ci = args.ci or ("gpq" if args.bootstrap is None else "bootstrap" if args.bootstrap else "none")
        print(decompose_csv(args.csv, value=args.value, factors=args.factors, nested=args.nested,
                            group=args.group, ci=ci, draws=args.draws, bootstrap=args.bootstrap or 0,
                            seed=args.seed, as_json=args.json, where=args.where))
        return 0


class SlurmSubmit(Command):
    name, help = "submit", "submit the job as an array plus a dependent report job"

    @classmethod
    def setup_arguments(cls, sub: Any) -> argparse.ArgumentParser:
        p = job_arguments(super().setup_arguments(sub))
        p.add_argument("--partition", default=None)
        p.add_argument("--max-parallel", type=positive_int, default=None, metavar="K")
        p.add_argument("--dry-run", action="store_true", help="print the sbatch commands only")
        return p

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> int:
        from harness.dispatch.slurm import submit
        from harness.job import load_job
        return submit(load_job(args.job), args.store, args.partition, args.max_parallel, args.dry_run)


JOB_VERBS: tuple[type[Command], ...] = (Plan, Run, Report, Export, Status, Verify, Migrate, Decompose)
SLURM_VERBS: tuple[type[Command], ...] = (SlurmSubmit,)
