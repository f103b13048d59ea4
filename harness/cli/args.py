"""Shared argparse pieces: `type=` validators and the arguments every job verb takes."""

from __future__ import annotations

import argparse

STORE_HELP = "results store root (default: runs/)"


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse prints the message and exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def job_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("job", metavar="JOB", help="a YAML job file, or a name under jobs/")
    p.add_argument("--store", default="runs", help=STORE_HELP)
    return p
