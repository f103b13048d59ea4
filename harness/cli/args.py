"""Shared argparse pieces: `type=` validators and the arguments every job verb takes."""

from __future__ import annotations

import argparse
from collections.abc import Callable

STORE_HELP = "results store root (default: runs/)"


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse `type=` for integers >= low (argparse prints the message and exits 2 otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def job_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("job", metavar="JOB", help="a YAML job file, or a name under jobs/")
    p.add_argument("--store", default="runs", help=STORE_HELP)
    return p
