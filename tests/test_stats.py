"""The statistics engine against lme4's published values, statsmodels REML and a numpy reference."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UserError
from harness.stats import core as stats
from harness.stats import kernels as stats_kernels
from harness.stats.core import Codes, decompose, decompose_groups
from harness.stats.design import Design, Layout
from tests.conftest import outputs_at_thread_counts

DATA = Path(__file__).resolve().parent / "data"


def read(name: str) -> dict[str, np.ndarray]:
    with open(DATA / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def simulate(rng: np.random.Generator, sizes: tuple[int, ...], n: int, sd: dict[str, float],
             nested: bool = False) -> dict[str, np.ndarray]:
    """A balanced table over crossed factors A, B (or B within A), replicated n times."""
    a, b = sizes
    i, j, _ = (x.ravel() for x in np.meshgrid(np.arange(a), np.arange(b), np.arange(n), indexing="ij"))
    y = 0.9 + rng.normal(0, sd["A"], a)[i] + rng.normal(0, sd["residual"], i.size)
    if nested:
        y += rng.normal(0, sd["B"], (a, b))[i, j]
    else:
        y += rng.normal(0, sd["B"], b)[j] + rng.normal(0, sd.get("A:B", 0.0), (a, b))[i, j]
    return {"A": i, "B": j, "y": y}


def reference_crossed(t: dict[str, np.ndarray], a: int, b: int, n: int) -> dict[str, float]:
    """Textbook two-way random-effects ANOVA from the rows (Montgomery, ch. 13)."""
    y = t["y"].reshape(a, b, n)
    g, ri, cj, cell = y.mean(), y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=2)
    msa = b * n * ((ri - g) ** 2).sum() / (a - 1)
    msb = a * n * ((cj - g) ** 2).sum() / (b - 1)
    msab = n * ((cell - ri[:, None] - cj[None, :] + g) ** 2).sum() / ((a - 1) * (b - 1))
    mse = ((y - cell[..., None]) ** 2).sum() / (a * b * (n - 1))
    return {"A": (msa - msab) / (b * n), "B": (msb - msab) / (a * n), "A:B": (msab - mse) / n, "residual": mse}


def reference_nested(t: dict[str, np.ndarray], a: int, b: int, n: int) -> dict[str, float]:
    """Textbook two-stage nested random-effects ANOVA."""
    y = t["y"].reshape(a, b, n)
    g, ri, cell = y.mean(), y.mean(axis=(1, 2)), y.mean(axis=2)
    msa = b * n * ((ri - g) ** 2).sum() / (a - 1)
    msb = n * ((cell - ri[:, None]) ** 2).sum() / (a * (b - 1))
    mse = ((y - cell[..., None]) ** 2).sum() / (a * b * (n - 1))
    return {"A": (msa - msb) / (b * n), "B:A": (msb - mse) / n, "residual": mse}


def test_penicillin_matches_lme4() -> None:
    d = decompose(read("penicillin.csv"), "diameter", ["plate", "sample"])
    assert d.names == ("plate", "sample", "residual")
    for name, want in {"plate": 0.7169, "sample": 3.730918, "residual": 0.3024}.items():
        assert d[name].variance == pytest.approx(want, rel=1e-4)
    assert d["plate"].df == 23 and d["sample"].df == 5 and d["residual"].df == 115
    assert sum(c.share for c in d.components) == pytest.approx(1.0)
    assert d.method == "anova" and not any(c.truncated for c in d.components)


def test_dyestuff_matches_lme4() -> None:
    d = decompose(read("dyestuff.csv"), "Yield", ["Batch"])
    assert d["Batch"].variance == pytest.approx(1764.05, rel=1e-4)
    assert d["residual"].variance == pytest.approx(2451.25, rel=1e-4)
    assert d.icc["Batch"] == pytest.approx(1764.05 / (1764.05 + 2451.25), rel=1e-4)


@settings(max_examples=25, deadline=None)
@given(a=st.integers(2, 6), b=st.integers(2, 6), n=st.integers(2, 4), nested=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_matches_numpy_reference(a: int, b: int, n: int, nested: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = simulate(rng, (a, b), n, {"A": 0.02, "B": 0.01, "A:B": 0.005, "residual": 0.01}, nested)
    d = decompose(t, "y", ["A", "B"], nested=["B:A"] if nested else [])
    want = reference_nested(t, a, b, n) if nested else reference_crossed(t, a, b, n)
    assert d.names == tuple(want)
    for name, v in want.items():
        assert d[name].variance == pytest.approx(max(v, 0.0), rel=1e-9, abs=1e-15)
        assert d[name].truncated == (v < 0)


def test_three_way_crossed_without_replication() -> None:
    """bo x init x order, one observation per cell: the three-way interaction is the residual."""
    rng = np.random.default_rng(3)
    shape = (4, 5, 6)
    i, j, k = (x.ravel() for x in np.indices(shape))
    y = rng.normal(0, 1, 4)[i] + rng.normal(0, 1, 5)[j] + rng.normal(0, 1, 6)[k] + rng.normal(0, 0.5, i.size)
    d = decompose({"bo": i, "init": j, "order": k, "y": y}, "y", ["bo", "init", "order"])
    assert d.names == ("bo", "init", "order", "bo:init", "bo:order", "init:order", "residual")
    cube = y.reshape(shape)
    def m(*axes: int) -> np.ndarray:
        return cube.mean(axis=axes, keepdims=True)

    resid = cube - m(0) - m(1) - m(2) + m(1, 2) + m(0, 2) + m(0, 1) - m(0, 1, 2)
    assert d["residual"].ms == pytest.approx((resid ** 2).sum() / (3 * 4 * 5), rel=1e-10)


@pytest.mark.parametrize("nested", [False, True])
def test_matches_statsmodels_reml(nested: bool) -> None:
    from tests.test_reml import statsmodels_reml

    rng = np.random.default_rng(11)
    t = simulate(rng, (8, 5), 3, {"A": 1.0, "B": 0.7, "A:B": 0.5, "residual": 0.6}, nested)
    d = decompose(t, "y", ["A", "B"], nested=["B:A"] if nested else [])
    assert not any(c.truncated for c in d.components)
    design = Design(("A", "B"), (8, 5), (0, 1) if nested else (0, 0))
    names, var, _ = statsmodels_reml(t["y"], np.stack([t["A"], t["B"]]), design, True)
    assert tuple(names) == d.names
    for name, v in zip(names, var, strict=True):
        assert d[name].variance == pytest.approx(v, rel=2e-3)


def test_unbalanced_goes_to_reml_and_names_the_missing_cells() -> None:
    rng = np.random.default_rng(5)
    t = simulate(rng, (6, 5), 2, {"A": 1.0, "B": 0.7, "A:B": 0.3, "residual": 0.5})
    t["y"][7] = np.nan  # a failed training
    d = decompose(t, "y", ["A", "B"])
    assert d.method == "reml" and d.n_missing == 1 and d.missing == ("A=0 B=3: 1 of 2",)
    assert d["residual"].df is None and d.n_obs == 59
    assert "Unbalanced" in d.to_markdown()


def test_unbalanced_without_statsmodels_is_fitted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    t = simulate(np.random.default_rng(5), (4, 3), 2, {"A": 1.0, "B": 1.0, "residual": 1.0})
    keep = np.ones(t["y"].size, bool)
    keep[:2] = False  # cell A=0 B=0 entirely missing
    d = decompose({k: v[keep] for k, v in t.items()}, "y", ["A", "B"])
    assert d.method == "reml" and d.missing == ("A=0 B=0: 0 of 2",) and d.missing_rows == 2


def test_truncation_and_shares() -> None:
    rng = np.random.default_rng(2)
    t = simulate(rng, (10, 10), 2, {"A": 1.0, "B": 0.0, "A:B": 0.0, "residual": 1.0})
    d = decompose(t, "y", ["A", "B"])
    trunc = [c for c in d.components if c.truncated]
    assert trunc and all(c.variance == 0.0 and c.share == 0.0 for c in trunc)
    assert sum(c.share for c in d.components) == pytest.approx(1.0)


def test_groups_equal_separate_fits_and_accept_codes() -> None:
    rng = np.random.default_rng(9)
    parts = [simulate(rng, (4, 4), 2, {"A": 1.0, "B": 0.5, "A:B": 0.2, "residual": 1.0}) for _ in range(3)]
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    table["cfg"] = np.repeat(["c10", "c2", "c1"], parts[0]["y"].size)
    g = decompose_groups(table, "y", ["A", "B"], "cfg")
    assert list(g) == ["c1", "c2", "c10"]
    for label, part in zip(["c10", "c2", "c1"], parts, strict=True):
        alone = decompose(part, "y", ["A", "B"])
        assert [c.variance for c in g[label].components] == pytest.approx([c.variance for c in alone.components])
    coded = dict(table, A=Codes(table["A"].astype(np.int32), tuple(map(str, range(4)))))
    assert decompose_groups(coded, "y", ["A", "B"], "cfg")["c2"].to_json_obj() == g["c2"].to_json_obj()


def test_numpy_and_numba_cell_sums_are_bit_identical() -> None:
    rng = np.random.default_rng(4)
    t = simulate(rng, (7, 6), 3, {"A": 0.01, "B": 0.01, "A:B": 0.01, "residual": 0.01})
    t["y"][[3, 50]] = np.nan
    t["g"] = rng.integers(0, 3, t["y"].size)
    table = stats._prepare(t, "y", ["A", "B"], [], "g")
    slow = stats._cell_stats(table, 3, numba=False)
    fast = stats._cell_stats(table, 3, numba=True)
    for x, y in zip(slow, fast, strict=True):
        assert x.tobytes() == y.tobytes()


def test_bootstrap_kernels_agree_and_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(1)
    layout = Layout.build(Design(("A", "B"), (9, 7), (0, 0)), 3)
    means, within, keys = rng.normal(size=(5, 63)), rng.random((5, 63)), np.arange(5, dtype=np.uint64)
    fast = stats_kernels.bootstrap_crossed2(means, within, keys, 42, 300, 9, 7, stats._qscale(layout),
                                            layout.mobius, layout.df, layout.kinv)
    generic = stats_kernels.bootstrap(means, within, keys, 42, 300, **stats._boot_inputs(layout))
    np.testing.assert_allclose(fast, generic, rtol=1e-10, atol=1e-14)
    q = stats_kernels.percentiles(fast, 0.025, 0.975)
    assert q.tobytes() == np.quantile(fast, [0.025, 0.975], axis=1).tobytes()


def test_nested_bootstrap_intervals_are_ordered() -> None:
    """The generic kernel on a nested design: ordered intervals, shares within [0, 1]."""
    t = simulate(np.random.default_rng(8), (5, 4), 2, {"A": 1.0, "B": 0.5, "residual": 0.3}, nested=True)
    d = decompose(t, "y", ["A", "B"], nested=["B:A"], bootstrap=400, seed=1)
    for c in d.components:
        assert c.ci is not None and c.ci[0] <= c.ci[1]
        assert c.share_ci is not None and 0.0 <= c.share_ci[0] <= c.share_ci[1] <= 1.0
    assert d.icc_ci is not None and d.icc_ci["A"][0] <= d.icc_ci["A"][1] <= d.icc_ci["B"][1]


def test_bootstrap_coverage_on_simulated_data() -> None:
    """95% intervals over many simulated tables (one group each) cover the true components often."""
    rng = np.random.default_rng(2024)
    truth = {"A": 1.0, "B": 0.5, "A:B": 0.25, "residual": 1.0}
    parts = [simulate(rng, (12, 12), 3, {k: v ** 0.5 for k, v in truth.items()}) for _ in range(80)]
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    table["sim"] = np.repeat(np.arange(80), parts[0]["y"].size)
    fits = decompose_groups(table, "y", ["A", "B"], "sim", bootstrap=300, seed=7)
    for name, var in truth.items():
        cover = np.mean([fits[k][name].ci[0] <= var <= fits[k][name].ci[1] for k in fits])
        assert cover >= 0.75, (name, cover)


def test_bootstrap_is_bit_identical_for_any_thread_count() -> None:
    code = ("import numpy as np; from harness.stats import decompose\n"
            "r = np.random.default_rng(0); i, j, k = (x.ravel() for x in np.indices((6, 5, 4)))\n"
            "y = r.normal(size=6)[i] + r.normal(size=5)[j] + r.normal(size=i.size)\n"
            "t = {'a': i, 'b': j, 'c': k, 'y': y}\n"
            "for f, nest in ((['a', 'b'], []), (['a', 'b', 'c'], ['c:b'])):\n"
            "    d = decompose(t, 'y', f, nested=nest, bootstrap=500, seed=3)\n"
            "    print(np.array([c.ci for c in d.components] + [c.share_ci for c in d.components]).tobytes().hex())\n")
    out = outputs_at_thread_counts(code)
    assert out[0] == out[1] and len(out[0]) > 100


def test_seed_changes_intervals_but_not_estimates() -> None:
    t = read("penicillin.csv")
    a = decompose(t, "diameter", ["plate", "sample"], bootstrap=200, seed=1)
    b = decompose(t, "diameter", ["plate", "sample"], bootstrap=200, seed=2)
    assert a["plate"].variance == b["plate"].variance and a["plate"].ci != b["plate"].ci
    assert a.to_json_obj() == decompose(t, "diameter", ["plate", "sample"], bootstrap=200, seed=1).to_json_obj()


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(factors=["plate", "nope"]), "no column 'nope'"),
    (dict(factors=["plate", "sample"], nested=["sample:x"]), "not one of the factors"),
    (dict(factors=["plate", "sample"], nested=["sample:plate", "plate:sample"]), "cycle"),
])
def test_user_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        decompose(read("penicillin.csv"), "diameter", **kwargs)


def test_factor_with_one_level_is_refused() -> None:
    t = read("dyestuff.csv")
    t["one"] = np.full(t["Yield"].size, "x")
    with pytest.raises(UserError, match="one: factor has one level"):
        decompose(t, "Yield", ["Batch", "one"])
    t["sub"] = t["Batch"]
    with pytest.raises(UserError, match="sub: factor has one level within each level of Batch"):
        decompose(t, "Yield", ["Batch", "sub"], nested=["sub:Batch"])


def test_markdown_and_json_shape() -> None:
    d = decompose(read("penicillin.csv"), "diameter", ["plate", "sample"], bootstrap=100)
    obj = d.to_json_obj()
    assert set(obj["components"]) == {"plate", "sample", "residual"}
    assert set(obj["components"]["plate"]) >= {"variance", "std", "share", "ci", "truncated", "df", "ms"}
    md = d.to_markdown()
    assert "| source | variance | std | share | 95% CI (bootstrap) | df | mean square |" in md
    assert "| plate | 0.7169 |" in md


def test_integer_and_text_columns_get_the_same_natural_level_order() -> None:
    """Integer factor columns take a faster path (no sort by label); their levels and codes must be
    what the same values as text give: "2" before "10", negative values through the label sort."""
    values = np.array([10, 2, 33, 2, 0, 10])
    whole, text = stats.as_codes("f", values), stats.as_codes("f", values.astype(str))
    assert whole.levels == text.levels == ("0", "2", "10", "33")
    assert whole.codes.tolist() == text.codes.tolist() == [2, 1, 3, 1, 0, 2]
    signed = np.array([-3, 5, -1, 5])
    assert stats.as_codes("f", signed).levels == stats.as_codes("f", signed.astype(str)).levels
