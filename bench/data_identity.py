"""What the data's identity costs (issue 19): the driver's check reads each source once per run and
hashes the arrays it gave (`harness.training.data.identity`). Side by side in one process: reading
the data alone, the SHA-256 of the arrays, and the whole check (`data.check`: read, hash, validate,
split), for the default job's digits and for a 500 MB npz of float32 features written here.

    .venv/bin/python bench/data_identity.py > bench/RESULTS-data-identity.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.job.spec import DataSpec  # noqa: E402
from harness.training import data  # noqa: E402
from harness.training.determinism import hardware  # noqa: E402


def best(call: object, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, spec: DataSpec, size: int, repeats: int) -> str:
    raw = data._raw(spec, "")
    read = best(lambda: data._raw(spec, ""), repeats)
    digest = best(lambda: data.identity(spec, raw, ""), repeats)
    check = best(lambda: data.check(spec, ""), repeats)
    return (f"| {name} | {size / 1e6:,.1f} MB | {read:.4f} s | {digest:.4f} s | {check:.4f} s | "
            f"{digest / read:.2f}x | {size / 1e6 / digest:,.0f} MB/s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mb", type=int, default=500)
    args = ap.parse_args()
    print("# What the data's identity costs\n")
    print(f"`.venv/bin/python bench/data_identity.py` on {hardware()['cpu']} ({hardware()['cpu_isa']}), "
          f"{os.cpu_count()} cores; best of "
          f"{args.repeats}. *read*: the source's arrays from disk; *hash*: their SHA-256 (once per run, in the "
          f"driver's check); *check*: read + hash + every check + the split of seed 0 (what the driver's check "
          f"does with the data).\n")
    print("| data | arrays | read | hash | check | hash / read | hash rate |")
    print("|---|---|---|---|---|---|---|")
    digits = DataSpec("digits", None, 0.25, None, None)
    print(row("digits (the default job)", digits, sum(a.nbytes for a in data._raw(digits, "").values()),
              args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.npz"
        n = args.mb * 10**6 // (4 * 256)
        rng = np.random.default_rng(0)
        np.savez(path, x=rng.random((n, 256), dtype=np.float32), y=rng.integers(0, 10, n).astype(np.int32))
        spec = DataSpec("npz", str(path), 0.25, None, None)
        print(row(f"npz, {n:,} x 256 float32", spec, path.stat().st_size, args.repeats))


if __name__ == "__main__":
    main()
