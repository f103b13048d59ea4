"""Coverage of the nominal 95% variance-component intervals: bootstrap vs GPQ vs MLS, by simulation.

Datasets are drawn with known components (normal effects) in three balanced designs: two-way crossed
A x B with interaction and 2 repeats per cell, one-way with 5 repeats per level, and a Pastes-like
nested design (casks within batches, 3 casks per batch, 2 samples per cask), at 4, 6, 12 and 30
levels per factor (the nested design: of batch). Each set of datasets is decomposed in one
`decompose_groups` call per method (the dataset is the group), and the table counts how often each
printed interval holds the true variance (a zero component is covered when the lower bound is 0), and how
often the share interval holds the true share of the total (MLS gives no share intervals).
Also the cost of the intervals for the 400k-row table of bench/aggregate.py. `--write` saves
bench/RESULTS-coverage.md.

    python bench/ci_coverage.py [--datasets 1000] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.stats import Codes, decompose_groups  # noqa: E402

LEVELS = (4, 6, 12, 30)
METHODS = ("bootstrap", "gpq", "mls")
# name, true std per source (residual last); the first is the init x order study
CROSSED = [("issue: 0.02 / 0.012 / 0.006 / 0.004", (0.02, 0.012, 0.006, 0.004)),
           ("zero B: 0.01 / 0 / 0.005 / 0.004", (0.01, 0.0, 0.005, 0.004)),
           ("dominant residual: 0.002 / 0.002 / 0.002 / 0.01", (0.002, 0.002, 0.002, 0.01))]
ONEWAY = [("zero A: 0 / 1", (0.0, 1.0)), ("even: 0.7 / 1", (0.7, 1.0)), ("dominant A: 3 / 1", (3.0, 1.0))]
NESTED = [("Pastes-like: 1.3 / 2.9 / 0.8", (1.3, 2.9, 0.8))]


def labels(k: int) -> tuple[str, ...]:
    return tuple(f"l{i}" for i in range(k))


def crossed(rng: np.random.Generator, nsim: int, a: int, std: tuple[float, ...], n: int = 2) -> dict:
    """nsim datasets of an a x a crossed design with interaction and n repeats per cell."""
    sim, i, j, _ = (x.ravel().astype(np.int32) for x in np.indices((nsim, a, a, n)))
    y = (rng.normal(0, std[0], (nsim, a))[sim, i] + rng.normal(0, std[1], (nsim, a))[sim, j]
         + rng.normal(0, std[2], (nsim, a, a))[sim, i, j] + rng.normal(0, std[3], sim.size))
    return {"sim": Codes(sim, labels(nsim)), "A": Codes(i, labels(a)), "B": Codes(j, labels(a)), "y": y}


def oneway(rng: np.random.Generator, nsim: int, a: int, std: tuple[float, ...], n: int = 5) -> dict:
    sim, i, _ = (x.ravel().astype(np.int32) for x in np.indices((nsim, a, n)))
    y = rng.normal(0, std[0], (nsim, a))[sim, i] + rng.normal(0, std[1], sim.size)
    return {"sim": Codes(sim, labels(nsim)), "A": Codes(i, labels(a)), "y": y}


def nested(rng: np.random.Generator, nsim: int, a: int, std: tuple[float, ...], casks: int = 3,
           n: int = 2) -> dict:
    sim, i, j, _ = (x.ravel().astype(np.int32) for x in np.indices((nsim, a, casks, n)))
    y = (rng.normal(0, std[0], (nsim, a))[sim, i] + rng.normal(0, std[1], (nsim, a, casks))[sim, i, j]
         + rng.normal(0, std[2], sim.size))
    return {"sim": Codes(sim, labels(nsim)), "A": Codes(i, labels(a)), "B": Codes(j, labels(casks)), "y": y}


DESIGNS: list[tuple[str, Callable[..., dict], list, list[str], list[str]]] = [
    ("two-way crossed A x B, interaction, 2 repeats", crossed, CROSSED, ["A", "B"], []),
    ("one-way A, 5 repeats", oneway, ONEWAY, ["A"], []),
    ("nested B (3 casks) in A (batches), 2 samples", nested, NESTED, ["A", "B"], ["B:A"]),
]


def cover(columns: dict, factors: list[str], nest: list[str], std: tuple[float, ...], method: str,
          seed: int) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per component: the fraction of datasets whose 95% interval holds the true variance, the same
    for its share of the total (NaN without share intervals), and the median ratio of the std
    interval's ends (hi / lo; inf when lo is 0)."""
    fits = decompose_groups(columns, "y", factors, "sim", nested=nest, ci=method, seed=seed)
    names = fits[next(iter(fits))].names
    var = np.square(std)
    truth = dict(zip(names, var, strict=True))
    share = dict(zip(names, var / var.sum(), strict=True))
    hits = {k: 0.0 for k in names}
    shares = {k: 0.0 for k in names}
    span: dict[str, list[float]] = {k: [] for k in names}
    for _, fit in fits.items():
        for c in fit.components:
            assert c.ci is not None
            lo, hi = c.ci
            hits[c.name] += lo <= truth[c.name] <= hi
            shares[c.name] += c.share_ci[0] <= share[c.name] <= c.share_ci[1] if c.share_ci else np.nan
            span[c.name].append(np.sqrt(hi / lo) if lo > 0 else np.inf)
    n = len(fits)
    return ({k: v / n for k, v in hits.items()}, {k: v / n for k, v in shares.items()},
            {k: float(np.median(v)) for k, v in span.items()})


def study(nsim: int, nsim30: int) -> list[str]:
    rows = ["| design | true std (A / B / ... / residual) | levels | datasets | component | bootstrap B=1000 "
            "| GPQ 5000 draws | MLS | share: bootstrap | share: GPQ | GPQ std interval hi/lo (median) |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for d, (title, make, settings, factors, nest) in enumerate(DESIGNS):
        for s, (label, std) in enumerate(settings):
            for k, a in enumerate(LEVELS):
                count = nsim30 if a == 30 else nsim
                cols = make(np.random.default_rng([d, s, k]), count, a, std)
                res = {m: cover(cols, factors, nest, std, m, seed=k) for m in METHODS}
                for name in res["gpq"][0]:
                    cells = [f"{100 * res[m][0][name]:.1f}%" for m in METHODS]
                    cells += [f"{100 * res[m][1][name]:.1f}%" for m in ("bootstrap", "gpq")]
                    ratio = res["gpq"][2][name]
                    line = (f"| {title} | {label} | {a} | {count} | {name} | {' | '.join(cells)} "
                            f"| {'from 0' if ratio == np.inf else f'{ratio:.1f}x'} |")
                    print(line, flush=True)
                    rows.append(line)
    return rows


def cost() -> list[str]:
    """Seconds for the intervals of the 200 configurations of bench/aggregate.py's 400k-row table."""
    sys.path.insert(0, str(REPO / "bench"))
    from aggregate import engine_columns, table  # the same table as the aggregate benchmark

    g, a, b, _ = shape = (200, 20, 20, 5)
    cols = engine_columns(table(*shape), g, a, b)
    f = ["init", "order"]
    for m in METHODS:  # warm the numba caches
        decompose_groups(cols, "accuracy", f, "config", ci=m, draws=10 if m != "mls" else 0)
    out = ["| intervals for 200 x 20 x 20 x 5 = 400,000 rows (point estimates included) | seconds |",
           "|---|---:|"]
    for label, kw in [("none (point estimates only)", dict(ci="none")),
                      ("bootstrap B=1000", dict(ci="bootstrap", draws=1000)),
                      ("GPQ 5000 draws (the default)", dict(ci="gpq")),
                      ("GPQ 10000 draws", dict(ci="gpq", draws=10000)),
                      ("MLS", dict(ci="mls"))]:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fits = decompose_groups(cols, "accuracy", f, "config", **kw)
            fits["c0"]  # noqa: B018 (records are built lazily; the intervals are not)
            times.append(time.perf_counter() - t)
        out.append(f"| {label} | {min(times):.4f} |")
        print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=1000, help="datasets per cell (4, 6, 12 levels)")
    parser.add_argument("--datasets-30", type=int, default=400, help="datasets per cell at 30 levels")
    parser.add_argument("--write", action="store_true", help="also write bench/RESULTS-coverage.md")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = study(args.datasets, args.datasets_30)
    costs = cost()
    machine = (f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}; "
               f"NUMBA_NUM_THREADS default; load average {os.getloadavg()[1]:.1f} at the end; the study took "
               f"{time.perf_counter() - start:.0f} s.")
    se = [100 * np.sqrt(0.95 * 0.05 / k) for k in (args.datasets, args.datasets_30)]
    text = "\n".join(["# Coverage of 95% variance-component intervals (`python bench/ci_coverage.py`)", "",
                      __doc__.split("\n\n")[1].replace("\n", " "), "", machine, "",
                      f"Monte Carlo standard error of a coverage near 95%: {se[0]:.1f} points with "
                      f"{args.datasets} datasets, {se[1]:.1f} with {args.datasets_30}.", "", *rows, "", "## Cost", "",
                      *costs, ""])
    print("\n" + text)
    if args.write:  # keeps bench/ci_unbalanced.py's section, which follows these tables
        path = REPO / "bench" / "RESULTS-coverage.md"
        unbalanced = path.read_text().partition("\n## Unbalanced tables")[1:] if path.exists() else ("", "")
        path.write_text(text + "".join(unbalanced))


if __name__ == "__main__":
    main()
