"""Command line: `harness plan|run|report|export|status|decompose|slurm`.

Heavy modules (TensorFlow, numba, matplotlib) are imported inside the handlers so that
`harness --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from harness.errors import UserError

STORE_HELP = "results store root (default: runs/)"


def _job_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    p.add_argument("job", metavar="JOB", help="a YAML job file, or a name under jobs/")
    p.add_argument("--store", default="runs", help=STORE_HELP)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Seeded Keras trainings and hyperopt searches, decomposed into variance sources.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    _job_parser(sub, "plan", "validate a job file and print its matrix")

    p = _job_parser(sub, "run", "run (or resume) every unit of a job")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: from the job)")
    p.add_argument("--executor", choices=("local", "debug"), default="local",
                   help="local: persistent worker processes; debug: in this process")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only array shard I of N (default: from SLURM_ARRAY_TASK_ID/COUNT)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    _job_parser(sub, "report", "write reports/<job>.md from the store (no training)")
    p = sub.choices["report"]
    p.add_argument("--out", default="reports", help="report directory (default: reports/)")

    p = _job_parser(sub, "export", "write one CSV row per training")
    p.add_argument("--csv", required=True, metavar="FILE", help="output CSV path")

    _job_parser(sub, "status", "units done / failed / pending across shards")

    p = sub.add_parser("decompose", help="variance components of any CSV",
                       description="Random-effects variance decomposition of a CSV column.")
    p.add_argument("csv", metavar="FILE.csv")
    p.add_argument("--value", required=True, help="the numeric column to decompose")
    p.add_argument("--factors", nargs="+", required=True, help="random factor columns")
    p.add_argument("--nested", action="append", default=[], metavar="B:A",
                   help="factor B nested in factor A (repeatable)")
    p.add_argument("--group", default=None, help="decompose separately for each level of this column")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap replicates for 95%% CIs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print JSON instead of markdown")

    slurm = sub.add_parser("slurm", help="Slurm job arrays").add_subparsers(
        dest="slurm_verb", required=True, metavar="VERB")
    p = _job_parser(slurm, "submit", "submit the job as an array plus a dependent report job")
    p.add_argument("--partition", default=None)
    p.add_argument("--max-parallel", type=int, default=None, metavar="K")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch commands only")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    """Run one verb; import what it needs only now."""
    if args.verb == "decompose":
        from harness.decompose import decompose_csv
        print(decompose_csv(args.csv, value=args.value, factors=args.factors, nested=args.nested,
                            group=args.group, bootstrap=args.bootstrap, seed=args.seed,
                            as_json=args.json))
        return 0
    from harness import commands
    return commands.dispatch(args)


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"harness: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except UserError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; finished units are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
