"""What fixed-shape replica stacks cost: engine `vectorized` trains every stack at exactly
`REPLICAS` replicas (padding a short one), so that a seed's bits do not depend on how many units
the scheduler grouped with it. Side by side in one process, per group size R: the padded path
(what runs) and one stack of exactly R (the previous behaviour, whose kernels, and so bits,
changed with R on AVX2-only CPUs). Trainings per minute of the R real trainings.

    .venv/bin/python bench/replica_blocks.py [--repeats 3] > bench/RESULTS-replica-blocks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.throughput import CONFIG, job  # noqa: E402

SIZES = (1, 2, 5, 8, 16, 17, 32)


def per_minute(call: object, seeds: list[dict[str, int]], repeats: int) -> float:
    """Trainings per minute of `call(seeds)`, best of `repeats` after a warm-up."""
    call(seeds)  # type: ignore[operator]
    best = min(_timed(call, seeds) for _ in range(repeats))
    return len(seeds) / best * 60


def _timed(call: object, seeds: list[dict[str, int]]) -> float:
    start = time.perf_counter()
    call(seeds)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (the best is kept)")
    args = p.parse_args()
    from harness.training import determinism
    determinism.prepare_process("on")
    determinism.apply_threads(2, 1)
    determinism.set_ops("on")
    from bench.throughput import cpu_model
    from harness.job.matrix import training_seeds
    from harness.training.engines.vectorized import REPLICAS
    from harness.training.trainer import Trainer
    spec = job("vectorized")
    trainer = Trainer(spec)
    engine, ds = trainer.engine, trainer.dataset(training_seeds(spec, {})["split"])
    training, model_args = trainer.settings(CONFIG)
    seeds = [training_seeds(spec, {"init": i, "order": i}) for i in range(max(SIZES))]
    blocks = lambda s: engine.train_many(ds, training, model_args, s)  # noqa: E731
    exact_r = lambda s: engine._train_block(ds, training, model_args, s)  # noqa: E731
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}; AVX-512: "
          f"{'yes' if 'avx512f' in Path('/proc/cpuinfo').read_text() else 'no'}; Python "
          f"{platform.python_version()}; load before {os.getloadavg()[0]:.2f}\n")
    print(f"Digits, Dense({CONFIG['units']}, relu), adam, batch 32, {CONFIG['epochs']} epochs; 2 intra-op threads; "
          f"stacks of {REPLICAS}; best of {args.repeats}.\n")
    print(f"| R (units grouped) | one stack of R (before) / min | stacks of {REPLICAS}, padded (now) / min "
          "| now / before |")
    print("|---:|---:|---:|---:|")
    for r in SIZES:
        before = per_minute(exact_r, seeds[:r], args.repeats)
        now = per_minute(blocks, seeds[:r], args.repeats)
        print(f"| {r} | {before:.0f} | {now:.0f} | {now / before:.2f} |", flush=True)


if __name__ == "__main__":
    main()
