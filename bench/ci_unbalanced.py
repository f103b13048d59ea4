"""Coverage of the nominal 95% intervals on unbalanced tables (REML estimates; GPQ and MLS on
Henderson III mean squares with Satterthwaite df), by simulation.

Two designs with known components (normal effects): the issue's crossed init x order study, 8 x 8
levels, 2 repeats per cell (true variances 1 / 0.5 / 0.2 / 1), and a three-way crossed bo x init x
order design at 5 levels with one observation per cell (the three-way interaction is the residual;
true variances bo 1, init 0.5, order 0.5, each two-way interaction 0.2, residual 1). Rows are
deleted at random: none (the balanced ANOVA path, for reference), 1 row, 10% and 30% of the rows.
Each set of datasets is decomposed in one `decompose_groups` call per method (the dataset is the
group); the table counts how often each interval holds the true variance (and, for GPQ, the share
interval the true share; on unbalanced tables the residual's share interval is Satterthwaite's F
interval), how many REML fits passed the convergence check, and how many put a
component on the boundary (0; on balanced data: how many ANOVA estimates were truncated). The
cluster bootstrap runs on the balanced tables only (asked for on an unbalanced one, it gives GPQ).
`--write` puts the table in bench/RESULTS-coverage.md, after bench/ci_coverage.py's balanced ones
(section "Unbalanced tables", replaced on each run).

    python bench/ci_unbalanced.py [--datasets 400] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.stats import Codes, decompose_groups  # noqa: E402
from harness.training.determinism import hardware  # noqa: E402

CROSSED = ("init x order 8 x 8, 2 repeats", ("init", "order"), (8, 8), 2, (1.0, 0.5, 0.2, 1.0))
THREE_WAY = ("bo x init x order 5 x 5 x 5, 1 per cell", ("bo", "init", "order"), (5, 5, 5), 1,
             (1.0, 0.5, 0.5, 0.2, 0.2, 0.2, 1.0))
MISSING = (("none", 0.0), ("1 row", 1.0), ("10%", 0.1), ("30%", 0.3))
SECTION = "## Unbalanced tables"  # its heading in bench/RESULTS-coverage.md


def labels(k: int) -> tuple[str, ...]:
    return tuple(f"l{i}" for i in range(k))


def simulate(rng: np.random.Generator, nsim: int, design: tuple, drop: float) -> dict:
    """nsim datasets (group "sim") of a crossed design with every interaction random, `drop` rows
    deleted at random per dataset (a count when >= 1, else a fraction)."""
    _, factors, sizes, n, var = design
    axes = np.indices((nsim, *sizes, n)).reshape(len(sizes) + 2, -1).astype(np.int32)
    sim, coords = axes[0], axes[1:-1]
    # one effect per term, in the order `decompose` names the sources: mains, then pairs, ...
    y = np.zeros(sim.size)
    masks = sorted((m for m in range(1, 1 << len(sizes)) if n > 1 or m != (1 << len(sizes)) - 1),
                   key=lambda m: (bin(m).count("1"), [f for f in range(len(sizes)) if m >> f & 1]))
    for mask, v in zip(masks, var[:-1], strict=True):
        bits = [f for f in range(len(sizes)) if mask >> f & 1]
        shape = (nsim,) + tuple(sizes[f] for f in bits)
        y += rng.normal(0, np.sqrt(v), shape)[(sim, *[coords[f] for f in bits])]
    y += rng.normal(0, np.sqrt(var[-1]), sim.size)
    per = int(np.prod(sizes)) * n
    count = int(drop) if drop >= 1 else int(round(drop * per))
    for s in range(nsim):
        y[s * per + rng.choice(per, count, replace=False)] = np.nan
    cols: dict = {"sim": Codes(sim, labels(nsim)), "y": y}
    for f, name in enumerate(factors):
        cols[name] = Codes(coords[f], labels(sizes[f]))
    return cols


def cover(cols: dict, design: tuple, method: str, seed: int) -> tuple[dict, dict, float, float, float]:
    """Per component: the fraction of intervals holding the true variance, the same for the share;
    the fraction of converged fits, of fits with a boundary estimate, and the seconds per dataset."""
    _, factors, _, _, var = design
    start = time.perf_counter()
    fits = decompose_groups(cols, "y", list(factors), "sim", ci=method, seed=seed)
    records = [fit for _, fit in fits.items()]
    seconds = (time.perf_counter() - start) / len(records)
    names = records[0].names
    truth = dict(zip(names, var, strict=True))
    share = dict(zip(names, np.array(var) / sum(var), strict=True))
    hits = {k: np.mean([f[k].ci[0] <= truth[k] <= f[k].ci[1] for f in records]) for k in names}
    shares = {k: np.mean([f[k].share_ci[0] <= share[k] <= f[k].share_ci[1] if f[k].share_ci else np.nan
                          for f in records]) for k in names}
    converged = np.mean([f.converged for f in records])
    boundary = np.mean([any(c.boundary or c.truncated for c in f.components) for f in records])
    return hits, shares, float(converged), float(boundary), seconds


def study(nsim: int) -> list[str]:
    rows = ["| design | missing | datasets | component | true variance | GPQ | MLS | bootstrap B=1000 "
            "| share: GPQ | converged | boundary or truncated |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d, design in enumerate((CROSSED, THREE_WAY)):
        for k, (label, drop) in enumerate(MISSING):
            cols = simulate(np.random.default_rng([20, d, k]), nsim, design, drop)
            gpq = cover(cols, design, "gpq", seed=k)
            mls = cover(cols, design, "mls", seed=k)
            boot = cover(cols, design, "bootstrap", seed=k)[0] if drop == 0 else {}  # else: GPQ
            for name, v in zip(gpq[0], design[4], strict=True):
                b = f"{100 * boot[name]:.1f}%" if boot else "(GPQ)"
                line = (f"| {design[0]} | {label} | {nsim} | {name} | {v:g} | {100 * gpq[0][name]:.1f}% "
                        f"| {100 * mls[0][name]:.1f}% | {b} | {100 * gpq[1][name]:.1f}% | {100 * gpq[2]:.1f}% "
                        f"| {100 * gpq[3]:.1f}% |")
                print(line, flush=True)
                rows.append(line)
            print(f"  ({gpq[4] * 1000:.1f} ms per dataset with GPQ, {mls[4] * 1000:.1f} with MLS)", flush=True)
    return rows


def machine_line(start: float) -> str:
    """Where and how a study ran: the CPU (read, not assumed), Python, numpy, the load, its seconds."""
    cpu = f"{hardware()['cpu']}, {hardware()['cpu_isa']}"
    return (f"Machine: {os.cpu_count()} cores ({cpu}), shared; Python {platform.python_version()}, numpy "
            f"{np.__version__}; load average {os.getloadavg()[1]:.1f} at the end; the study took "
            f"{time.perf_counter() - start:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=400, help="datasets per cell of the table")
    parser.add_argument("--write", action="store_true", help="also write the section of bench/RESULTS-coverage.md")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = study(args.datasets)
    machine = machine_line(start)
    se = 100 * np.sqrt(0.95 * 0.05 / args.datasets)
    text = "\n".join([f"{SECTION} (`python bench/ci_unbalanced.py --datasets {args.datasets} --write`)", "",
                      " ".join(__doc__.split("\n\n")[1].split()), "", machine, "",
                      f"Monte Carlo standard error of a coverage near 95%: {se:.1f} points.", "", *rows, ""])
    print("\n" + text)
    if args.write:
        path = REPO / "bench" / "RESULTS-coverage.md"
        balanced = path.read_text().split("\n" + SECTION)[0].rstrip("\n")
        path.write_text(balanced + "\n\n" + text)


if __name__ == "__main__":
    main()
