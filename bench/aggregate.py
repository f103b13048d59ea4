"""Benchmark of the statistics engine: per-configuration two-way variance components.

Times, best of several runs, on tables of configurations x init x order x repeats:
point estimates (this engine vs pandas groupby vs numpy on a dense array vs statsmodels MixedLM,
the last on a few configurations and extrapolated), bootstrap B=1000 (numba kernel vs numpy
fancy-index gather), GPQ intervals (vs that bootstrap), and `harness decompose` on a CSV as a
whole process (numba cache warm) vs a pandas read_csv + groupby script. Prints a markdown table;
`--write` also saves bench/RESULTS-aggregate.md.

    python bench/aggregate.py [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.stats import Codes, decompose_groups  # noqa: E402

SIZES = [(200, 20, 20, 5), (50, 10, 10, 3)]
PANDAS_SCRIPT = textwrap.dedent("""
    import sys
    import pandas as pd
    df = pd.read_csv(sys.argv[1])
    g = df.groupby(["config", "init", "order"])["accuracy"]
    cell = g.agg(["mean", "count"]).reset_index()
    df["dev2"] = (df["accuracy"] - g.transform("mean")) ** 2
    sse = df.groupby("config")["dev2"].sum()
    n = cell["count"].iloc[0]
    a, b = df["init"].nunique(), df["order"].nunique()
    cell["c"] = cell["mean"] - cell.groupby("config")["mean"].transform("mean")
    ri = cell.groupby(["config", "init"])["c"].transform("mean")
    co = cell.groupby(["config", "order"])["c"].transform("mean")
    cell["ri2"], cell["co2"], cell["ab2"] = ri ** 2, co ** 2, (cell["c"] - ri - co) ** 2
    s = cell.groupby("config")[["ri2", "co2", "ab2"]].sum() * n
    msa, msb, msab = s["ri2"] / (a - 1), s["co2"] / (b - 1), s["ab2"] / ((a - 1) * (b - 1))
    mse = sse / (a * b * (n - 1))
    out = pd.DataFrame({"init": (msa - msab) / (b * n), "order": (msb - msab) / (a * n),
                        "init:order": (msab - mse) / n, "residual": mse})
    print(out.clip(lower=0).to_string())
""")


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def table(g: int, a: int, b: int, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Accuracies near 0.9 with init, order and interaction effects, rows in (config, init, order) order."""
    rng = np.random.default_rng(seed)
    cfg, i, j, _ = (x.ravel().astype(np.int32) for x in np.indices((g, a, b, n)))
    y = (0.9 + rng.normal(0, 0.004, (g, a))[cfg, i] + rng.normal(0, 0.002, (g, b))[cfg, j]
         + rng.normal(0, 0.001, (g, a, b))[cfg, i, j] + rng.normal(0, 0.006, cfg.size))
    return {"config": cfg, "init": i, "order": j, "accuracy": y}


def engine_columns(t: dict[str, np.ndarray], g: int, a: int, b: int) -> dict[str, object]:
    return {"config": Codes(t["config"], tuple(f"c{k}" for k in range(g))),
            "init": Codes(t["init"], tuple(map(str, range(a)))),
            "order": Codes(t["order"], tuple(map(str, range(b)))), "accuracy": t["accuracy"]}


def numpy_dense(y: np.ndarray, g: int, a: int, b: int, n: int) -> np.ndarray:
    """Textbook two-way random-effects ANOVA on a dense (config, init, order, repeat) array."""
    y = y.reshape(g, a, b, n)
    cell = y.mean(axis=3)
    c = cell - cell.mean(axis=(1, 2), keepdims=True)
    ri, co = c.mean(axis=2, keepdims=True), c.mean(axis=1, keepdims=True)
    msa = b * n * (ri ** 2).sum(axis=(1, 2)) / (a - 1)
    msb = a * n * (co ** 2).sum(axis=(1, 2)) / (b - 1)
    msab = n * ((c - ri - co) ** 2).sum(axis=(1, 2)) / ((a - 1) * (b - 1))
    mse = ((y - cell[..., None]) ** 2).sum(axis=(1, 2, 3)) / (a * b * (n - 1))
    return np.maximum(np.stack([(msa - msab) / (b * n), (msb - msab) / (a * n), (msab - mse) / n, mse], 1), 0)


def pandas_groupby(df: object, a: int, b: int, n: int) -> object:
    """The same estimates with pandas groupby (what a notebook would do)."""
    g = df.groupby(["config", "init", "order"])["accuracy"]  # type: ignore[attr-defined]
    cell = g.mean().reset_index(name="mean")
    sse = ((df["accuracy"] - g.transform("mean")) ** 2).groupby(df["config"]).sum()  # type: ignore[index]
    cell["c"] = cell["mean"] - cell.groupby("config")["mean"].transform("mean")
    ri = cell.groupby(["config", "init"])["c"].transform("mean")
    co = cell.groupby(["config", "order"])["c"].transform("mean")
    cell["ri2"], cell["co2"], cell["ab2"] = ri ** 2, co ** 2, (cell["c"] - ri - co) ** 2
    s = cell.groupby("config")[["ri2", "co2", "ab2"]].sum() * n
    msa, msb, msab = s["ri2"] / (a - 1), s["co2"] / (b - 1), s["ab2"] / ((a - 1) * (b - 1))
    mse = sse / (a * b * (n - 1))
    return ((msa - msab) / (b * n), (msb - msab) / (a * n), (msab - mse) / n, mse)


def statsmodels_per_config(t: dict[str, np.ndarray], a: int, b: int, n: int, configs: int) -> float:
    """Seconds per configuration of a REML fit with statsmodels MixedLM (init, order and their
    interaction as crossed variance components)."""
    import warnings

    from reml_speed import mixedlm  # bench/reml_speed.py, beside this script

    rows = a * b * n
    start = time.perf_counter()
    for k in range(configs):
        sl = slice(k * rows, (k + 1) * rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mixedlm(t["accuracy"][sl], np.stack([t["init"][sl], t["order"][sl]]), [1, 2, 3]).fit(reml=True)
    return (time.perf_counter() - start) / configs


def numpy_bootstrap(y: np.ndarray, g: int, a: int, b: int, n: int, nrep: int, seed: int = 0) -> np.ndarray:
    """Cluster bootstrap with numpy fancy-index gathers of the cell grid, one replicate at a time."""
    y = y.reshape(g, a, b, n)
    cell = y.mean(axis=3)
    w = ((y - cell[..., None]) ** 2).sum(axis=3)
    rng = np.random.default_rng(seed)
    gi = np.arange(g)[:, None, None]
    out = np.empty((g, nrep, 4))
    for r in range(nrep):
        ri = rng.integers(0, a, (g, a))[:, :, None]
        cj = rng.integers(0, b, (g, b))[:, None, :]
        m, ww = cell[gi, ri, cj], w[gi, ri, cj]
        c = m - m.mean(axis=(1, 2), keepdims=True)
        rm, cm = c.mean(axis=2, keepdims=True), c.mean(axis=1, keepdims=True)
        msa = b * n * (rm ** 2).sum(axis=(1, 2)) / (a - 1)
        msb = a * n * (cm ** 2).sum(axis=(1, 2)) / (b - 1)
        msab = n * ((c - rm - cm) ** 2).sum(axis=(1, 2)) / ((a - 1) * (b - 1))
        mse = ww.sum(axis=(1, 2)) / (a * b * (n - 1))
        out[:, r] = np.maximum(np.stack([(msa - msab) / (b * n), (msb - msab) / (a * n), (msab - mse) / n,
                                         mse], 1), 0)
    return np.quantile(out, [0.025, 0.975], axis=1)


def write_csv(t: dict[str, np.ndarray], path: str) -> None:
    with open(path, "w") as fh:
        fh.write("config,init,order,repeat,accuracy\n")
        n = t["accuracy"].size
        rep = np.arange(n) % (n // (t["config"].max() + 1) // ((t["init"].max() + 1) * (t["order"].max() + 1)))
        fh.writelines(f"c{c},{i},{o},{r},{v!r}\n" for c, i, o, r, v in zip(
            t["config"].tolist(), t["init"].tolist(), t["order"].tolist(), rep.tolist(), t["accuracy"].tolist(),
            strict=True))


def process_seconds(cmd: list[str], repeat: int = 5) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return best(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env), repeat)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt_row(task: str, shape: tuple[int, ...], ours: float, other: str, theirs: float) -> str:
    label = " x ".join(map(str, shape)) + f" = {int(np.prod(shape)):,}"
    line = f"| {task} | {label} | {ours:.4f} | {other} | {theirs:.4f} | {theirs / ours:.1f}x |"
    print(line, flush=True)
    return line


def run_shape(shape: tuple[int, int, int, int]) -> list[str]:
    """All the comparisons on one table size."""
    import pandas as pd

    g, a, b, n = shape
    t = table(*shape)
    cols = engine_columns(t, g, a, b)
    factors = ["init", "order"]
    decompose_groups(cols, "accuracy", factors, "config", bootstrap=10)  # warm the numba caches
    decompose_groups(cols, "accuracy", factors, "config", ci="gpq", draws=10)
    ours = best(lambda: decompose_groups(cols, "accuracy", factors, "config"), 20)
    df = pd.DataFrame(t)
    out = [fmt_row("point estimates", shape, ours, "pandas groupby", best(lambda: pandas_groupby(df, a, b, n))),
           fmt_row("point estimates", shape, ours, "numpy dense array",
                   best(lambda: numpy_dense(t["accuracy"], g, a, b, n), 20))]
    per = statsmodels_per_config(t, a, b, n, 1)
    out.append(fmt_row("point estimates", shape, ours, f"statsmodels MixedLM (1 config fitted, x {g})", per * g))
    boot = best(lambda: decompose_groups(cols, "accuracy", factors, "config", bootstrap=1000), 3)
    out.append(fmt_row("bootstrap B=1000", shape, boot, "numpy fancy-index gather",
                       best(lambda: numpy_bootstrap(t["accuracy"], g, a, b, n, 1000), 1)))
    gpq = best(lambda: decompose_groups(cols, "accuracy", factors, "config", ci="gpq"), 3)
    out.append(fmt_row("GPQ intervals, 5000 draws (the default)", shape, gpq, "this engine's bootstrap B=1000",
                       boot))
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, script = os.path.join(tmp, "table.csv"), os.path.join(tmp, "pandas_decompose.py")
        write_csv(t, csv_path)
        Path(script).write_text(PANDAS_SCRIPT)
        cmd = [sys.executable, "-m", "harness", "decompose", csv_path, "--value", "accuracy",
               "--factors", *factors, "--group", "config", "--ci", "none"]  # point estimates, as pandas
        process_seconds(cmd, 1)  # warm the page cache
        out.append(fmt_row("`harness decompose` process", shape, process_seconds(cmd),
                           "pandas read_csv + groupby script", process_seconds([sys.executable, script, csv_path])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="also write bench/RESULTS-aggregate.md")
    args = parser.parse_args()
    import pandas as pd

    rows = [line for shape in SIZES for line in run_shape(shape)]
    head = ["| task | configs x init x order x repeats = rows | this engine (s) | baseline | baseline (s) "
            "| speed-up |", "|---|---|---:|---|---:|---:|"]
    machine = (f"Machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}, "
               f"numpy {np.__version__}, pandas {pd.__version__}; NUMBA_NUM_THREADS default; load average "
               f"{os.getloadavg()[1]:.1f} at the end (other processes share the cores; the parallel bootstrap "
               "suffers most).")
    text = "\n".join(["# Aggregation benchmark (`python bench/aggregate.py`)", "", machine, "", *head, *rows,
                      ""])
    print("\n" + text)
    if args.write:
        (REPO / "bench" / "RESULTS-aggregate.md").write_text(text)


if __name__ == "__main__":
    main()
