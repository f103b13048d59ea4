"""95% intervals of variance components: GPQ and MLS against exact results, coverage, reproducibility."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.errors import UserError
from harness.stats import kernels as kern
from harness.stats.core import Codes, decompose, decompose_groups
from tests.conftest import outputs_at_thread_counts

DATA = Path(__file__).resolve().parent / "data"


def read(name: str) -> dict[str, np.ndarray]:
    with open(DATA / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def crossed(rng: np.random.Generator, nsim: int, a: int, std: tuple[float, float, float, float]) -> dict:
    """nsim datasets (group "sim") of an a x a crossed design with interaction and 2 repeats."""
    sim, i, j, _ = (x.ravel().astype(np.int32) for x in np.indices((nsim, a, a, 2)))
    y = (rng.normal(0, std[0], (nsim, a))[sim, i] + rng.normal(0, std[1], (nsim, a))[sim, j]
         + rng.normal(0, std[2], (nsim, a, a))[sim, i, j] + rng.normal(0, std[3], sim.size))
    names = tuple(f"l{k}" for k in range(max(a, nsim)))
    return {"sim": Codes(sim, names[:nsim]), "A": Codes(i, names[:a]), "B": Codes(j, names[:a]), "y": y}


@pytest.mark.parametrize("df", [1, 3, 24])
def test_pivots_are_chi_square(df: int) -> None:
    """df / w is chi-square(df): a Kolmogorov-Smirnov test on 20,000 draws (fixed seed)."""
    chi = df / kern.pivots(11, np.array([float(df)]), 20000)[:, 0]
    assert sps.kstest(chi, sps.chi2(df).cdf).pvalue > 0.01


@pytest.mark.parametrize("n", [7, 999, 10000])
def test_percentiles_are_numpys_exactly(n: int) -> None:
    """The selection (sampled brackets, ties, fallback) gives numpy.quantile's values bit for bit."""
    rng = np.random.default_rng(n)
    for x in (rng.normal(size=n), np.maximum(rng.normal(size=n), 0.0), np.round(rng.normal(size=n), 1)):
        for p in ((0.025, 0.975), (0.0, 1.0), (0.5, 0.5)):
            got = kern._quantile_pair(x.copy(), p[0], p[1], np.empty(n))
            assert got == (np.quantile(x, p[0]), np.quantile(x, p[1]))


def test_residual_interval_is_the_exact_chi_square_one() -> None:
    """The residual depends on one mean square: MLS is exact, GPQ within Monte Carlo error."""
    t = read("dyestuff.csv")
    ms, df = 2451.25, 24
    exact = (ms * df / sps.chi2.ppf(0.975, df), ms * df / sps.chi2.ppf(0.025, df))
    assert decompose(t, "Yield", ["Batch"], ci="mls")["residual"].ci == pytest.approx(exact, rel=1e-9)
    assert decompose(t, "Yield", ["Batch"], ci="gpq", draws=20000)["residual"].ci == pytest.approx(exact, rel=0.03)


def test_dyestuff_and_penicillin_against_lme4_profile() -> None:
    """lme4's profile intervals (Dyestuff: sd Batch [12.2, 84.1], residual sd [38.2, 63.7]) are
    likelihood-ratio approximations; GPQ's overlap them and are wider, as the exact F intervals are."""
    d = decompose(read("dyestuff.csv"), "Yield", ["Batch"], ci="gpq", seed=0)
    batch, resid = (tuple(np.sqrt(d[n].ci)) for n in ("Batch", "residual"))
    assert 12.2 < batch[0] < 25 and 84.1 < batch[1] < 150
    assert 38.2 < resid[0] < 39.5 and 63.7 < resid[1] < 72
    p = decompose(read("penicillin.csv"), "diameter", ["plate", "sample"], ci="gpq", seed=0)
    for name in p.names:
        assert p[name].ci[0] < p[name].variance < p[name].ci[1]


def test_gpq_coverage_guard() -> None:
    """A fast, fixed-seed version of bench/ci_coverage.py: 300 datasets of the issue's 6 x 6 design.
    GPQ covers each component near 95% (loose bounds); the bootstrap's main effects fall short."""
    std = (0.02, 0.012, 0.006, 0.004)
    cols = crossed(np.random.default_rng(14), 300, 6, std)
    gpq = decompose_groups(cols, "y", ["A", "B"], "sim", ci="gpq", draws=2000, seed=1)
    boot = decompose_groups(cols, "y", ["A", "B"], "sim", bootstrap=400, seed=1)
    for name, var in zip(("A", "B", "A:B", "residual"), np.square(std), strict=True):
        cover = np.mean([gpq[k][name].ci[0] <= var <= gpq[k][name].ci[1] for k in gpq])
        assert 0.90 <= cover <= 0.99, (name, cover)
        if name in ("A", "B"):
            assert np.mean([boot[k][name].ci[0] <= var <= boot[k][name].ci[1] for k in boot]) < 0.88


def test_gpq_is_bit_identical_for_any_thread_count() -> None:
    code = ("import numpy as np; from harness.stats import decompose_groups\n"
            "r = np.random.default_rng(0); g, i, j, k = (x.ravel() for x in np.indices((5, 6, 5, 4)))\n"
            "y = r.normal(size=(5, 6))[g, i] + r.normal(size=5)[j] + r.normal(size=i.size)\n"
            "t = {'g': g, 'a': i, 'b': j, 'c': k, 'y': y}\n"
            "for f, nest in ((['a', 'b'], []), (['a', 'b', 'c'], ['c:b'])):\n"
            "    fits = decompose_groups(t, 'y', f, 'g', nested=nest, ci='gpq', draws=3000, seed=3)\n"
            "    for _, d in fits.items():\n"
            "        ci = [c.ci for c in d.components] + [c.share_ci for c in d.components]\n"
            "        print(np.array(ci + list(d.icc_ci.values())).tobytes().hex())\n")
    out = outputs_at_thread_counts(code)
    assert out[0] == out[1] and len(out[0]) > 1000


def test_gpq_interval_of_a_group_does_not_depend_on_the_others() -> None:
    cols = crossed(np.random.default_rng(3), 4, 6, (1.0, 1.0, 0.5, 0.5))
    together = decompose_groups(cols, "y", ["A", "B"], "sim", ci="gpq", seed=5)
    rows = cols["sim"].codes == 2
    alone = decompose({"A": Codes(cols["A"].codes[rows], cols["A"].levels),
                       "B": Codes(cols["B"].codes[rows], cols["B"].levels), "y": cols["y"][rows]},
                      "y", ["A", "B"], ci="gpq", seed=5)
    for c in alone.components:  # the same up to the last bits of the mean squares
        assert together["l2"][c.name].ci == pytest.approx(c.ci, rel=1e-12)
    assert alone.to_json_obj()["ci_method"] == "gpq" and alone.to_json_obj()["draws"] == 5000


def test_shares_and_iccs_are_ordered_and_nested_iccs_sum_shares() -> None:
    t = read("penicillin.csv")
    d = decompose(t, "diameter", ["plate", "sample"], ci="gpq")
    for c in d.components:
        assert 0.0 <= c.share_ci[0] <= c.share <= c.share_ci[1] <= 1.0
    assert d.icc_ci["plate"] == d["plate"].share_ci  # crossed: the ICC is the factor's share
    m = decompose(t, "diameter", ["plate", "sample"], ci="mls")
    assert m["sample"].share_ci is None and m.icc_ci is None and m["sample"].ci[0] > 0


def test_method_choice_errors() -> None:
    t = read("dyestuff.csv")
    with pytest.raises(UserError, match="ci must be one of gpq, mls, bootstrap, none"):
        decompose(t, "Yield", ["Batch"], ci="jackknife")
    with pytest.raises(UserError, match="asks for the bootstrap, but ci is 'gpq'"):
        decompose(t, "Yield", ["Batch"], ci="gpq", bootstrap=10)
    assert decompose(t, "Yield", ["Batch"], bootstrap=10).to_json_obj()["ci_method"] == "bootstrap"
    assert decompose(t, "Yield", ["Batch"]).to_json_obj()["ci_method"] == "none"


def test_few_levels_warn() -> None:
    t = read("penicillin.csv")
    keep = np.isin(t["sample"], ["A", "B", "C"])
    d = decompose({k: v[keep] for k, v in t.items()}, "diameter", ["plate", "sample"], ci="gpq")
    (line,) = d.warnings({"sample": "seeds"})
    assert line.startswith("Warning: only 3 sample seeds: the 95% interval of its std spans [")
    assert "use at least 6" in line and "Warning: only 3 sample levels" in d.to_markdown()
    assert not decompose(t, "diameter", ["plate", "sample"], ci="gpq").warnings()


def test_residual_share_is_the_exact_f_interval_of_a_one_way_design() -> None:
    """One mean square besides the residual: Satterthwaite's df is exact and the residual's share
    sigma_e^2 / (sigma_a^2 + sigma_e^2) has the exact F interval (n per level, 6 levels)."""
    from harness.stats.intervals import residual_share

    n, df = 4, np.array([5.0, 18.0])
    kinv = np.linalg.inv(np.array([[n, 1.0], [0.0, 1.0]]))
    ms = np.array([[3.0, 0.7], [0.5, 1.2]])
    got = residual_share(df, kinv, ms)
    f = ms[:, 0] / ms[:, 1]  # estimates E[MS_a] / sigma_e^2 = n / share - (n - 1)
    lo = n / (n - 1 + f / sps.f.ppf(0.025, 5, 18))
    hi = np.minimum(n / (n - 1 + f / sps.f.ppf(0.975, 5, 18)), 1.0)
    assert got == pytest.approx(np.stack([lo, hi]), rel=1e-9)
