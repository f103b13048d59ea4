"""Every figure the answer quotes is the figure in the table it links to: a tiny job with every
installed optimiser side by side (a boolean choice and a float step in its space), run and reported
through the CLI, its markdown parsed back. And the progress bar counts only what finished."""

from __future__ import annotations

import importlib.util
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from harness.cli.progress import Progress
from harness.job import load_job
from harness.job.spec import Dimension
from harness.reporting.common import source_text, value_text
from harness.units import plan
from tests.conftest import harness, write_job

LIBRARIES = {"hyperopt.tpe": "hyperopt", "keras_tuner.bayesian": "keras_tuner", "optuna.tpe": "optuna",
             "skopt.gp": "skopt"}
OPTIMISERS = [name for name, module in LIBRARIES.items() if importlib.util.find_spec(module)]
MODEL = '''import keras


def build(hp, input_shape, n_classes):
    stack = [keras.Input(shape=input_shape), keras.layers.Dense(hp["units"], activation="relu")]
    if hp["dropout"]:
        stack.append(keras.layers.Dropout(0.2))
    return keras.Sequential(stack + [keras.layers.Dense(n_classes, activation="softmax")])
'''
NUMBER = r"-?[\d.]+"
Table = list[dict[str, str]]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of every installed optimiser over 2 bo x 2 init chains of 3 trials, selecting on a
    validation split, beside two fixed configurations."""
    if len(OPTIMISERS) < 2:
        pytest.skip("fewer than two optimiser libraries installed")
    tmp = tmp_path_factory.mktemp("four")
    (tmp / "consistency_model.py").write_text(MODEL)
    job = write_job(tmp, name="four", replace={
        "data": {"source": "digits", "splits": {"test": 0.25, "validation": 0.2, "max_train": 240}},
        "model": {"builder": "consistency_model:build"},
        "training": {"optimizer": "adam", "batch_size": 32, "epochs": 1},
        "search": {"algorithms": OPTIMISERS, "max_evals": 3, "startup_trials": 2,
                   "space": {"units": {"quniform": [8, 24, 8]}, "dropout": {"choice": [False, True]},
                             "learning_rate": {"quniform": [0.003, 0.03, 0.003]}},
                   "chains": {"init": 2, "order": 1}, "reevaluate": {"init": 2, "order": 1}},
        "evaluate": {"configurations": [{"units": 8, "dropout": False, "learning_rate": 0.01},
                                        {"units": 16, "dropout": True, "learning_rate": 0.01}]},
        "seeds": {"root": 7, "init": 2, "order": 2, "repeat": 1, "bo": 2}})
    store, out = tmp / "store", tmp / "reports"
    r = harness("run", str(job), "--store", str(store), "--executor", "debug", "--no-progress", timeout=600)
    assert r.returncode == 0, r.stderr
    r = harness("report", str(job), "--store", str(store), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return (out / "four.md").read_text()


def table_after(text: str, marker: str, nth: int = 0) -> Table:
    """The `nth` markdown table after the first line starting with `marker`, as rows keyed by header
    (a header's second use gets '_1')."""
    lines = text[text.index("\n" + marker) + 1:].splitlines()
    starts = [i for i in range(1, len(lines)) if lines[i].startswith("|") and not lines[i - 1].startswith("|")]
    body = lines[starts[nth]:]
    body = body[:next((i for i, line in enumerate(body) if not line.startswith("|")), len(body))]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in body]
    headers = [h + ("_1" if h in cells[0][:i] else "") for i, h in enumerate(cells[0])]
    return [dict(zip(headers, row, strict=True)) for row in cells[2:]]


def answer_line(text: str, start: str) -> str:
    answer = text[text.index("## The answer"):text.index("\n|")]
    lines = [line.strip() for line in answer.splitlines() if line.strip().startswith(start)]
    assert len(lines) == 1, (start, answer)
    return lines[0]


def share(row: dict[str, str]) -> float:
    return float(row["share"].rstrip("%"))


def source(row: dict[str, str]) -> str:
    return row["source"].removesuffix(" (truncated at 0)")


def same_percent(quoted: str, table: float) -> bool:
    """A whole percent quoted from a share the table gives to one decimal."""
    return abs(float(quoted) - table) <= 0.55


def shares_quoted(listed: str, table: Table, residual: str) -> None:
    """Each 'source P% [lo-hi%]' of an answer's list ('; '-separated) is its row's share in `table`."""
    names = {source_text(source(r), residual): r for r in table if source(r) != "total"}
    for item in listed.strip().split("; "):
        name, pct = re.fullmatch(r"(.+) (\d+)%(?: \[\d+-\d+%\])?", item).groups()
        assert name in names, (name, list(names))
        assert same_percent(pct, share(names[name])), (name, pct, names[name])


def test_the_header_and_the_tables_name_every_optimiser(report: str) -> None:
    matrix = next(line for line in report.splitlines() if line.startswith("| matrix"))
    assert all(name in matrix for name in OPTIMISERS)
    chains = table_after(report, "**Winner's curse.**")
    assert [row["optimiser"] for row in chains] == [n for n in OPTIMISERS for _ in range(4)]


def test_values_print_one_way_everywhere(report: str) -> None:
    assert not re.search(r"\d\.\d{6,}", report)  # no float printed at full precision
    assert not re.search(r"dropout=(0|1)\b", report)  # a boolean is True or False, whichever library chose it
    spread = {row["hyperparameter"]: row for row in table_after(report, "**Agreement.**")}
    assert spread["dropout"]["median"] in ("True", "False") and spread["dropout"]["min"] == ""
    for row in table_after(report, "**Winner's curse.**"):
        lr = float(re.search(r"learning_rate=([\d.]+)", row["chosen"]).group(1))
        assert abs(lr / 0.003 - round(lr / 0.003)) < 1e-9


def test_the_winners_curse_compares_validation_with_validation_everywhere(report: str) -> None:
    chains = table_after(report, "**Winner's curse.**")
    assert {"best seen (validation)", "fresh seeds (validation)", "fresh seeds (test)"} <= set(chains[0])
    for row in chains:
        gap = float(row["best seen (validation)"]) - float(row["fresh seeds (validation)"])
        assert abs(gap - float(row["gap (pts)"])) <= 0.011
    side = table_after(report, "## Optimisers side by side")
    for row in side:
        mine = [float(c["gap (pts)"]) for c in chains if c["optimiser"] == row["optimiser"]]
        assert abs(statistics.fmean(mine) - float(row["winner's curse (pts, validation)"])) <= 0.011, row
    line = answer_line(report, "- The winner's curse")
    curse, gap = re.search(rf"\(({NUMBER}) points: .*validation split\) .* \(({NUMBER}) points, test split\)",
                           line).groups()
    assert abs(float(curse) - statistics.fmean(float(c["gap (pts)"]) for c in chains)) <= 0.011
    means = sorted(float(r["mean"]) for r in table_after(report, "## Configurations over the seed matrix"))
    assert abs(float(gap) - (means[-1] - means[-2])) <= 0.011


def test_the_optimisers_seed_is_never_pooled_across_optimisers(report: str) -> None:
    pooled = table_after(report, "## The optimiser")
    names = {source(r): r for r in pooled}
    assert "bo:arm" in names and "bo" not in names  # bo nested in the arm
    line = answer_line(report, "- The optimiser's own seed (within an arm, pooled over the arms)")
    assert same_percent(re.search(r"(\d+)% of the tuned model's variance", line).group(1), share(names["bo:arm"]))
    cost = {r["optimiser"]: r for r in table_after(report, "## Optimisers side by side", nth=1)}
    per_arm = re.findall(r"([\w.]+) (\d+)%", answer_line(report, "- The optimiser's own seed, per arm").split(": ")[1])
    assert [name for name, _ in per_arm] == OPTIMISERS
    for name, pct in per_arm:
        assert pct + "%" == cost[name]["share: bo"], (name, pct)


def test_every_figure_the_answer_quotes_is_in_its_table(report: str) -> None:
    configs = {}
    for title in re.findall(r"^### (dropout=.+) \(engine", report, flags=re.M):
        configs[title] = {source(r): r for r in table_after(report, f"### {title} (engine")}
    line = answer_line(report, "- **For a fixed configuration")
    lo, hi, n, worst, low, high = re.search(
        rf"std of ({NUMBER}) to ({NUMBER}) points over the (\d+) configurations \(most for (.+?)\)\*\*; "
        rf"single trainings scored ({NUMBER})% to ({NUMBER})%", line).groups()
    totals = {c: float(t["total"]["std (pts)"]) for c, t in configs.items()}
    assert (float(lo), float(hi), int(n)) == (min(totals.values()), max(totals.values()), len(configs))
    assert totals[worst] == float(hi)
    everything = table_after(report, "## Configurations over the seed matrix")
    assert float(low) == min(float(r["min"]) for r in everything)
    assert float(high) == max(float(r["max"]) for r in everything)

    where = answer_line(report, "- **Where it comes from**")
    shares_quoted(where.split("95% CI):")[1].split(". In the other")[0], list(configs[worst].values()),
                  "the seeds' highest interaction (one training per seed cell)")

    chains = table_after(report, "**Winner's curse.**")
    tuned = [float(r["fresh seeds (test)"]) for r in chains]
    line = answer_line(report, "- **The tuned model's score moves")
    std, count, low, high = re.search(rf"std of ({NUMBER}) points between searches\*\*: (\d+) chains, .* averaged "
                                      rf"({NUMBER})% to ({NUMBER})%", line).groups()
    assert (int(count), float(low), float(high)) == (len(chains), min(tuned), max(tuned))
    assert abs(float(std) - statistics.stdev(tuned)) <= 0.01  # the std of the table's rounded means

    pooled = table_after(report, "## The optimiser")
    shares_quoted(answer_line(report, "- **What moves the tuned model**").split("**:")[1].split(". ([table]")[0],
                  pooled, "re-training on fresh seeds")

    chosen = Counter(r["chosen"] for r in chains)
    line = answer_line(report, "- The chains disagree")
    n, distinct, top, times = re.search(r"(\d+) searches chose (\d+) configurations \(the most frequent, (.+), "
                                        r"(\d+) times\)", line).groups()
    assert (int(n), int(distinct), int(times)) == (len(chains), len(chosen), chosen.most_common(1)[0][1])
    assert chosen[top] == int(times)

    side = {r["optimiser"]: r for r in table_after(report, "## Optimisers side by side")}
    line = answer_line(report, "- The most repeatable tuned model")
    best, s1, ci1, worst_arm, s2, ci2 = re.search(
        rf"came from (\S+) \(chains' fresh-seed means spread by ({NUMBER}) points, 95% CI (\[.+?\])\), the least "
        rf"from (\S+) \(({NUMBER}), (\[.+?\])\)", line).groups()
    for name, std, ci in ((best, s1, ci1), (worst_arm, s2, ci2)):
        assert float(std) == float(side[name]["std between chains (pts)"]) and ci == side[name]["95% CI_1"]

    need = {float(r["difference (pts)"]): int(r["trainings each"]) for r in table_after(report, "## Decisions")}
    n1, n05 = re.search(r"mean of (\d+) seeded trainings each to tell a 1-point difference \((\d+) for 0.5",
                        answer_line(report, "- Compare configurations")).groups()
    assert (int(n1), int(n05)) == (need[1.0], need[0.5])


def test_a_value_prints_on_its_step_and_an_option_as_written() -> None:
    step = Dimension("learning_rate", "quniform", (0.003, 0.03, 0.003))
    assert value_text(0.009000000000000001, step) == "0.009"
    assert value_text(0.01, step) == "0.01"  # a fixed value off the step is not moved onto it
    assert value_text(0.010000000000000004) == "0.01"
    assert value_text(1, Dimension("dropout", "choice", (False, True))) == "True"
    assert value_text(24) == "24"


def test_the_progress_bar_counts_failures_apart(tmp_path: Path) -> None:
    spec = load_job(str(write_job(tmp_path)))
    units = plan(spec)
    bar = Progress(spec, units, show=True)
    bar.update(units[0].id, "failed", 0)
    bar.update(units[1].id, "ok", 1)
    assert bar.bar.n == 1 and bar.bar.total == sum(bar.size.values())
    assert f"units 1 done / 1 failed ({bar.size[units[0].id]} trainings) / {len(units) - 2} left" in \
        bar.bar.postfix
    assert bar.close() == 1
