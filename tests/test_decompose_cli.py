"""`harness decompose` end to end, in a fresh process: output shapes and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
REPO = DATA.parent.parent
PENICILLIN = str(DATA / "penicillin.csv")


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "harness", "decompose", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def test_json_components() -> None:
    r = harness(PENICILLIN, "--value", "diameter", "--factors", "plate", "sample", "--ci", "none", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ci_method"] == "none"
    comps = json.loads(r.stdout)["components"]
    assert list(comps) == ["plate", "sample", "residual"]
    assert comps["sample"]["variance"] == pytest.approx(3.730918, rel=1e-4)
    assert comps["plate"]["df"] == 23 and comps["plate"]["truncated"] is False
    assert "ci" not in comps["plate"] and sum(c["share"] for c in comps.values()) == pytest.approx(1.0)


def test_grouped_bootstrap_json(tmp_path: Path) -> None:
    lines = Path(PENICILLIN).read_text().splitlines()
    rows = [f"{line},left" for line in lines[1:]]
    for line in lines[1:]:
        name, value, plate, sample = line.split(",")
        rows.append(f"{name},{float(value) * 2},{plate},{sample},right")
    path = tmp_path / "grouped.csv"
    path.write_text("\n".join([lines[0] + ",half", *rows]) + "\n")
    r = harness(str(path), "--value", "diameter", "--factors", "plate", "sample", "--group", "half",
                "--bootstrap", "50", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    groups = json.loads(r.stdout)["groups"]
    assert list(groups) == ["left", "right"] and groups["left"]["ci_method"] == "bootstrap"
    lo, hi = groups["left"]["components"]["sample"]["ci"]
    assert 0 <= lo <= hi


def test_markdown_table() -> None:
    r = harness(PENICILLIN, "--value", "diameter", "--factors", "plate", "sample")
    assert r.returncode == 0, r.stderr
    assert "| source | variance | std | share | 95% CI (GPQ) | df | mean square |" in r.stdout
    assert "generalized pivotal quantities (GPQ), 5000 draws, seed 0" in r.stdout
    assert "| residual | 0.3024 |" in r.stdout


@pytest.mark.parametrize(("args", "method", "extra"), [
    ([], "gpq", {"draws": 5000, "seed": 0}), (["--ci", "mls"], "mls", {}),
    (["--ci", "gpq", "--draws", "300", "--seed", "4"], "gpq", {"draws": 300, "seed": 4}),
    (["--bootstrap", "40"], "bootstrap", {"bootstrap": 40, "seed": 0}),
    (["--ci", "bootstrap", "--draws", "30"], "bootstrap", {"bootstrap": 30}), (["--bootstrap", "0"], "none", {}),
])
def test_ci_choices(args: list[str], method: str, extra: dict) -> None:
    r = harness(PENICILLIN, "--value", "diameter", "--factors", "plate", "sample", "--json", *args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ci_method"] == method and extra.items() <= out.items()
    assert ("ci" in out["components"]["plate"]) == (method != "none")


def test_quoted_fields_and_missing_values(tmp_path: Path) -> None:
    lines = Path(PENICILLIN).read_text().splitlines()
    fields = [line.split(",") for line in lines[1:]]
    fields[5][1] = ""  # a failed training
    rows = [",".join(f'"{x}"' for x in row) for row in fields]
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    r = harness(str(path), "--value", "diameter", "--factors", "plate", "sample", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "reml" and out["n_missing_cells"] == 1


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "args", "message"), [
    (None, ["--factors", "plate", "sample"], "no such file"),
    ("", ["--factors", "a"], "empty file"),
    ("y,a,b\n1,x,p\n", ["--factors", "a", "nope"], "no column 'nope'"),
    ("y,a,b\n1,x,p\nzz,x,q\n1,z,p\n2,z,q\n", ["--factors", "a", "b"], "line 3: column 'y' is not numeric: 'zz'"),
    ("y,a,b\n1,x,p\n2,x,q\n", ["--factors", "a", "b"], "a: factor has one level"),
    ("y,a,b\n1,x,p\n2,x\n", ["--factors", "a", "b"], "line 3: expected 3 fields"),
    ("y,a,b\n", ["--factors", "a", "b"], "no data rows"),
    ("y,a\n1,x\n2,x\n3,z\n4,z\n", ["--factors", "a", "--ci", "gpq", "--bootstrap", "5"],
     "bootstrap=5 asks for the bootstrap, but ci is 'gpq'"),
    ("y,a,b\n1,x,p\n3,z,q\n", ["--factors", "a", "b"], "2 observations leave no degrees of freedom for a, b"),
    ("y,a,b\n1,x,p\n3,z,q\n4,z,p\n", ["--factors", "a", "b"], "3 observations leave no degrees of freedom"),
    ("y,a,b\n1,,p\n3,z,q\n4,z,p\n5,x,q\n", ["--factors", "a", "b"],
     "a: 1 row has an empty or missing label (data row 1)"),
    ("y,a,b\n1,nan,p\n3,z,q\n4,z,p\n5,x,q\n", ["--factors", "a", "b"], "a: 1 row has an empty or missing label"),
])
def test_user_errors_exit_2_with_one_line(tmp_path: Path, text: str | None, args: list[str],
                                          message: str) -> None:
    path = str(tmp_path / "absent.csv") if text is None else _write(tmp_path, text)
    r = harness(path, "--value", "y", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: error: {path}") and message in lines[0], r.stderr


@pytest.mark.parametrize(("text", "expect"), [
    ("y,a,b\n,x,p\n2,x,q\n3,z,p\n4,z,q\n5,x,p\n", "4 observations; levels a 2 x b 2; 1 per cell. Balanced"),
    ("a,y,b\nx,,p\nx,2,q\nz,3,p\nz,4,q\nx,5,p\n", "4 observations; levels a 2 x b 2; 1 per cell. Balanced"),
    ("y,a,b\n0.5,x,p\n0.5,x,q\n0.5,z,p\n0.5,z,q\n,x,p\n0.5,x,p\n0.5,z,q\n",
     "All 6 values are equal (0.5): every component is 0 and shares are undefined."),
])
def test_degenerate_inputs_give_an_honest_table(tmp_path: Path, text: str, expect: str) -> None:
    """An empty first field (pandas' NaN) is a missing value; all-equal values give no shares."""
    r = harness(_write(tmp_path, text), "--value", "y", "--factors", "a", "b")
    assert r.returncode == 0 and r.stderr == "" and expect in r.stdout, r.stdout + r.stderr


def test_unbalanced_gets_intervals_and_says_what_was_done(tmp_path: Path) -> None:
    lines = Path(PENICILLIN).read_text().splitlines()
    path = tmp_path / "short.csv"
    path.write_text("\n".join([lines[0], *lines[1:7], *lines[9:]]) + "\n")  # two trainings failed
    r = harness(str(path), "--value", "diameter", "--factors", "plate", "sample", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "reml" and out["ci_method"] == "gpq" and out["converged"] is True
    assert out["n_missing_cells"] == 2 and out["n_missing_rows"] == 2
    assert all(c["ci"][0] <= c["variance"] <= c["ci"][1] for c in out["components"].values())


def test_unknown_ci_method_is_refused() -> None:
    r = harness(PENICILLIN, "--value", "diameter", "--factors", "plate", "--ci", "jackknife")
    assert r.returncode == 2 and r.stdout == "" and "invalid choice: 'jackknife'" in r.stderr


def test_the_api_has_the_cli_defaults() -> None:
    import harness as api

    r = harness(PENICILLIN, "--value", "diameter", "--factors", "plate", "sample", "--json")
    assert r.returncode == 0, r.stderr
    ours = api.decompose(PENICILLIN, value="diameter", factors=["plate", "sample"]).to_json_obj()
    assert ours == json.loads(r.stdout) and ours["ci_method"] == "gpq"
