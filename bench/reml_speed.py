"""REML on unbalanced tables: this engine against statsmodels MixedLM on the same data (time, and
how close each gets to the optimum).

Datasets of bench/ci_unbalanced.py's two designs (8 x 8 init x order with 2 repeats; 5 x 5 x 5
bo x init x order with one observation per cell), 1 row, 10% or 30% of the rows deleted. For each
dataset: `harness.stats.decompose` with ci="none" (REML estimates; the cell statistics, Henderson III
moment estimates and the REML fit from its starts) and with the default GPQ intervals, best of
3 runs; statsmodels MixedLM (`fit(reml=True)`, its default optimiser, as the previous code called it),
best of 3 runs too. The -2 REML log-likelihood of both fits is compared (statsmodels' llf: the same REML criterion
as lme4's and this engine's): "short" counts the statsmodels fits more than 0.01 above this
engine's optimum; where statsmodels reaches it (within 1e-4), the largest difference of the
estimated shares is listed. `--write` saves bench/RESULTS-reml.md.

    python bench/reml_speed.py [--datasets 20] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ci_unbalanced import CROSSED, MISSING, THREE_WAY, machine_line, simulate  # noqa: E402

from harness.stats import decompose  # noqa: E402


def mixedlm(y: np.ndarray, coords: np.ndarray, masks: list[int]) -> object:
    """statsmodels MixedLM of centred y with one random intercept per term (a factor mask over the
    rows of `coords`, (factors, rows) level codes), as the harness once called it."""
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    mats = []
    for mask in masks:
        picked = coords[[f for f in range(coords.shape[0]) if mask >> f & 1]]
        _, index = np.unique(picked, axis=1, return_inverse=True)
        z = np.zeros((y.size, int(index.max()) + 1))
        z[np.arange(y.size), index.reshape(-1)] = 1.0
        mats.append([z])
    names = [f"t{m}" for m in masks]
    spec = VCSpec(names, [[[str(j) for j in range(m[0].shape[1])]] for m in mats], mats)
    return MixedLM(y - y.mean(), np.ones((y.size, 1)), np.zeros(y.size), exog_vc=spec)


def statsmodels_fit(y: np.ndarray, coords: np.ndarray, masks: list[int]) -> tuple[np.ndarray, float, float]:
    """Variances (residual last), -2 REML log-likelihood and seconds of a MixedLM fit (best of 3)."""
    seconds = np.inf
    for _ in range(3):  # best of 3, as for this engine
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = mixedlm(y, coords, masks).fit(reml=True)
        seconds = min(seconds, time.perf_counter() - start)
    return np.append(np.maximum(np.asarray(fit.vcomp), 0.0), fit.scale), -2.0 * float(fit.llf), seconds


def ours(cols: dict, factors: list[str], ci: str) -> tuple[object, float]:
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        fit = decompose(cols, "y", factors, ci=ci)
        best = min(best, time.perf_counter() - start)
    return fit, best


def reml_criterion(cols: dict, factors: list[str], variances: np.ndarray, masks: list[int]) -> float:
    """-2 REML log-likelihood at given variances, computed densely from the rows (numpy)."""
    ok = ~np.isnan(cols["y"])
    y = cols["y"][ok]
    v = variances[-1] * np.eye(y.size)
    coords = np.stack([cols[f][ok] for f in factors])
    for mask, s2 in zip(masks, variances[:-1], strict=True):
        key = np.zeros(y.size, np.int64)
        for f in range(len(factors)):
            if mask >> f & 1:
                key = key * 10 + coords[f]
        v += s2 * (key[:, None] == key[None, :])
    x = np.ones((y.size, 1))
    vinv = np.linalg.inv(v)
    xvx = x.T @ vinv @ x
    p = vinv - vinv @ x @ np.linalg.inv(xvx) @ x.T @ vinv
    return float(np.linalg.slogdet(v)[1] + np.linalg.slogdet(xvx)[1] + y @ p @ y + (y.size - 1) * np.log(2 * np.pi))


def study(nsim: int) -> list[str]:
    rows = ["| design | missing | datasets | statsmodels MixedLM, median s | this engine, REML only, median ms "
            "| ratio | with GPQ intervals, median ms | statsmodels short (> 0.01) | its worst gap "
            "| largest share difference where it converged | this engine converged |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d, design in enumerate((CROSSED, THREE_WAY)):
        title, factors, sizes, n, _ = design
        k = len(sizes)
        masks = sorted((m for m in range(1, 1 << k) if n > 1 or m != (1 << k) - 1),
                       key=lambda m: (bin(m).count("1"), [f for f in range(k) if m >> f & 1]))
        for label, drop in MISSING[1:]:
            t_sm, t_ours, t_gpq, gaps, diffs, conv = [], [], [], [], [], []
            for s in range(nsim):
                one = simulate(np.random.default_rng([7, d, s]), 1, design, drop)
                cols = {f: one[f].codes for f in factors} | {"y": one["y"]}
                fit, sec = ours(cols, list(factors), "none")
                _, sec_gpq = ours(cols, list(factors), "gpq")
                ok = ~np.isnan(cols["y"])
                var, dev, sec_sm = statsmodels_fit(cols["y"][ok], np.stack([cols[f][ok] for f in factors]), masks)
                mine = np.array([c.variance for c in fit.components])
                gap = dev - reml_criterion(cols, list(factors), mine, masks)
                t_sm.append(sec_sm)
                t_ours.append(sec)
                t_gpq.append(sec_gpq)
                gaps.append(gap)
                conv.append(fit.converged)
                if abs(gap) < 1e-4:
                    diffs.append(float(np.abs(mine / mine.sum() - var / var.sum()).max()))
            short = sum(g > 0.01 for g in gaps)
            line = (f"| {title} | {label} | {nsim} | {np.median(t_sm):.3f} | {1000 * np.median(t_ours):.1f} "
                    f"| {np.median(t_sm) / np.median(t_ours):.0f}x | {1000 * np.median(t_gpq):.1f} | {short} "
                    f"| {max(gaps):.3f} | {100 * max(diffs, default=np.nan):.2f} points "
                    f"| {sum(conv)} of {nsim} |")
            print(line, flush=True)
            rows.append(line)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=20, help="datasets per row")
    parser.add_argument("--write", action="store_true", help="also write bench/RESULTS-reml.md")
    args = parser.parse_args()
    decompose(simulate(np.random.default_rng(0), 1, CROSSED, 3), "y", ["init", "order"], ci="gpq")  # warm numba
    start = time.perf_counter()
    rows = study(args.datasets)
    machine = machine_line(start)
    text = "\n".join([f"# REML: this engine against statsmodels (`python bench/reml_speed.py --datasets "
                      f"{args.datasets} --write`)", "", " ".join(__doc__.split("\n\n")[1].split()), "",
                      machine, "", *rows, ""])
    print("\n" + text)
    if args.write:
        (REPO / "bench" / "RESULTS-reml.md").write_text(text)


if __name__ == "__main__":
    main()
