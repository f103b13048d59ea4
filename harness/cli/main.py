"""Command line: `harness plan|run|report|export|status|verify|migrate|decompose|slurm submit`.

The one dispatcher: parse, then hand the Namespace to the verb's Command class (commands.py).
A UserError is one line on stderr and exit 2; Ctrl-C is exit 130, SIGTERM (scancel, kill) 143,
each with one line; finished units are kept and a rerun resumes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Sequence

from harness.cli.commands import JOB_VERBS, SLURM_VERBS
from harness.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Seeded Keras trainings and hyperopt searches, decomposed into variance sources.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in JOB_VERBS:
        command.setup_arguments(sub)
    slurm = sub.add_parser("slurm", help="Slurm job arrays").add_subparsers(
        dest="slurm_verb", required=True, metavar="VERB")
    for command in SLURM_VERBS:
        command.setup_arguments(slurm)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"harness: warning: {message}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM reached this process: it stops as Ctrl-C stops it (exit 143 instead of 130)."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.command.from_args(args)
    except UserError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("harness: terminated (SIGTERM); finished units are kept, rerun to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("harness: interrupted; finished units are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
