"""The report answers first, from its own numbers: edit stored scores so that a finding disappears
and the summary stops saying it; the article section names a cause only when its data shows it;
the notebook API returns what the CLI writes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import harness
from harness.job import load_job
from harness.store import Store
from harness.store.records import new_record
from harness.units import POLICY, plan
from tests.conftest import REPO, write_job
from tests.conftest import harness as cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny job run once (debug executor), its store shared by the tests here."""
    tmp = tmp_path_factory.mktemp("tiny")
    job, root = write_job(tmp, seeds={"repeat": 2}), tmp / "store"
    r = cli("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress")
    assert r.returncode == 0, r.stderr
    return job, root


def _edit(root: Path, job: Path, change: Callable[[dict], dict]) -> None:
    """Rewrite every record of the store through `change(record)`."""
    for path in Store(root, load_job(str(job))).shard_paths():
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(change(r), sort_keys=True) + "\n" for r in recs))


def _answer(text: str) -> str:
    return text[text.index("## The answer"):text.index("|", text.index("## The answer"))]


def test_the_report_opens_with_the_answer_and_every_link_has_its_section(tiny: tuple[Path, Path]) -> None:
    job, root = tiny
    text = harness.report(str(job), root)
    assert text.splitlines()[2] == "## The answer"
    answer = _answer(text)
    assert len(answer.strip().splitlines()) <= 16
    assert "one seeded training's held-out accuracy has a std of" in answer
    for anchor in {part.split(")")[0] for part in answer.split("](#")[1:]}:
        heading = anchor.replace("-", " ")
        assert any(line.lower().lstrip("# ").replace("-", " ") == heading for line in text.splitlines()
                   if line.startswith("## ")), anchor


def _set_scores(gap: float, repeat_noise: float) -> Callable[[dict], dict]:
    """Evaluation accuracies from the seed levels: units=16 `gap` above units=8, repeats `repeat_noise` apart."""
    def change(rec: dict) -> dict:
        if rec.get("kind") == "eval" and rec.get("status") == "ok":
            lv = rec["levels"]
            rec["result"]["metrics"]["accuracy"] = (0.5 + 0.01 * lv["init"] + 0.004 * lv["order"]
                                                    + repeat_noise * lv["repeat"]
                                                    + (gap if rec["config"]["units"] == 16 else 0.0))
        return rec
    return change


def test_a_finding_disappears_when_the_stored_scores_stop_showing_it(tiny: tuple[Path, Path], tmp_path: Path
                                                                     ) -> None:
    job, root = tiny
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    _edit(copy, job, _set_scores(gap=0.002, repeat_noise=0.0))
    before = _answer(harness.report(str(job), copy))
    assert "Repeats with every seed equal gave identical scores" in before
    assert "too small to resolve the two best configurations" in before  # a 0.2-point gap, ~450 test examples
    _edit(copy, job, _set_scores(gap=0.3, repeat_noise=0.001))
    after = _answer(harness.report(str(job), copy))
    assert "Repeats with every seed equal gave identical scores" not in after
    assert "too small to resolve the two best configurations" not in after


def test_the_notebook_api_is_what_the_cli_writes(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    job, root = tiny
    r = cli("export", str(job), "--store", str(root), "--csv", str(tmp_path / "all.csv"))
    assert r.returncode == 0, r.stderr
    df = harness.load(str(job), root)
    pd.testing.assert_frame_equal(df, pd.read_csv(tmp_path / "all.csv"))
    evals = df[df["kind"] == "eval"]
    evals.to_csv(tmp_path / "evals.csv", index=False)
    r = cli("decompose", str(tmp_path / "evals.csv"), "--value", "accuracy", "--factors", "init_level",
            "order_level", "--group", "units", "--bootstrap", "200", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    ours = harness.decompose(evals, value="accuracy", factors=["init_level", "order_level"], group="units",
                             bootstrap=200, seed=3)
    assert ours.to_json_obj() == json.loads(r.stdout)
    mixed = cli("decompose", str(tmp_path / "all.csv"), "--value", "accuracy", "--factors", "init_level",
                "order_level", "--group", "units", "--json")  # eval, trial and reeval rows together
    assert mixed.returncode == 2 and "mixes row kinds (eval: " in mixed.stderr and "--where kind=eval" in mixed.stderr
    picked = cli("decompose", str(tmp_path / "all.csv"), "--where", "kind=eval", "--value", "accuracy", "--factors",
                 "init_level", "order_level", "--group", "units", "--bootstrap", "200", "--seed", "3", "--json")
    assert picked.returncode == 0 and json.loads(picked.stdout) == json.loads(r.stdout), picked.stderr
    reeval = df[df["kind"] == "reeval"]
    assert reeval["search_init_level"].notna().all() and reeval["search_order_seed"].notna().all()
    assert set(ours.components) == {"8", "16"} and ours.to_frame()["source"].tolist()[:3] == \
        ["init_level", "order_level", "init_level:order_level"]
    written = harness.report(str(job), root, out=tmp_path / "reports")
    assert (tmp_path / "reports" / "tiny.md").read_text() == written
    assert written.split("## Plots")[0].rstrip() == harness.report(str(job), root).rstrip()


def _article_store(tmp_path: Path, global_starts: list[str], harness_sequences: int) -> tuple[Path, Path]:
    """A seed_article store with synthetic policy runs (no training): the report reads only records."""
    job = REPO / "jobs" / "seed_article.yaml"
    spec, root = load_job(str(job)), tmp_path / "store"
    store = Store(root, spec)
    store.init()
    w = store.writer("synthetic")
    for unit in (u for u in plan(spec) if u.kind == POLICY.name):
        policy, run = spec.seeding.policies[unit.levels["policy"]], unit.levels["run"]
        seq = run % harness_sequences if policy == "harness" else run
        trials = [{"config": {"epochs": 5 + (seq + t) % 11, "units": 32 + 16 * ((seq * 3 + t) % 7)},
                   "score": 0.95 + 0.001 * ((run + t) % 5) + (0.002 if policy == "global" else 0.0)} for t in range(5)]
        fixed = 0.96 if policy == "harness" else 0.95 + 0.003 * (run % 3) / (3 if policy == "average3" else 1)
        rec = new_record(spec, unit, 1, "exact", "synthetic")
        rec.update(status="ok", seeds={"init": 1, "order": 1, "split": 1, "noise": 1, "bo": 1}, test_size=449, env={},
                   result={"policy": policy, "trials": trials, "best": trials[0]["config"],
                           "best_score": trials[0]["score"], "fixed_score": fixed,
                           "fixed_init_hash": global_starts[run % len(global_starts)] if policy == "global" else "h",
                           "drawn": {}},
                   timings={"train_s": 1.0, "process_s": 3.0 if policy == "average3" else 1.0})
        w.append(rec)
    w.close()
    return job, root


def test_the_article_section_names_a_cause_only_when_its_data_shows_it(tmp_path: Path) -> None:
    job, root = _article_store(tmp_path / "a", ["a", "b", "c"], harness_sequences=1)
    shown = harness.report(str(job), root)
    assert "## The article" in shown
    assert "Example 2's seeds do not reach Keras 3's initialisers" in shown
    assert "3 different sets of initial weights in 6 runs" in shown
    assert "A fully seeded search is repeatable" in shown
    assert "Averaging 3 seeds cut the fixed configuration's std" in shown
    job, root = _article_store(tmp_path / "b", ["same"], harness_sequences=2)
    hidden = harness.report(str(job), root)
    assert "Example 2's seeds do not reach" not in hidden  # every global run started from the same weights
    assert "A fully seeded search is repeatable" not in hidden  # the seeded runs did not repeat
    assert "below TPE's 20 random start-up trials" in hidden


@pytest.mark.slow
def test_seeding_policies_run_in_fresh_processes_and_record_what_they_drew(tmp_path: Path) -> None:
    """The article's `none` next to `harness`, two fresh-process runs each, through the CLI: the seeded
    runs repeat exactly, and an unseeded run's proposals replay from the entropy it recorded."""
    from hyperopt import Trials, fmin

    from harness.search.hyperopt import hyperopt_algo, hyperopt_space
    job = write_job(tmp_path, search={"max_evals": 3, "startup_trials": 20,
                                      "space": {"units": {"quniform": [8, 24, 8]}, "epochs": {"quniform": [1, 2, 1]}}},
                    evaluate={"configurations": []}, seeding={"policies": ["none", "harness"], "runs": 2,
                                                              "fixed": {"units": 8, "epochs": 1}},
                    replace={"training": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32}})
    root = tmp_path / "store"
    r = cli("run", str(job), "--store", str(root), "--executor", "debug", "--no-progress", timeout=600)
    assert r.returncode == 0, r.stderr
    spec = load_job(str(job))
    runs = [st.ok for st in Store(root, spec).states().values() if st.ok and POLICY.owns(st.ok)]
    by = {p: [x["result"] for x in runs if x["result"]["policy"] == p] for p in ("none", "harness")}
    assert len(by["none"]) == len(by["harness"]) == 2
    assert by["harness"][0]["trials"] == by["harness"][1]["trials"]
    assert by["harness"][0]["fixed_score"] == by["harness"][1]["fixed_score"]
    assert len({x["drawn"]["rstate_entropy"] for x in by["none"]}) == 2  # fresh entropy in each process
    run = by["none"][0]
    proposals: list[dict] = []
    fmin(lambda p: proposals.append({k: int(v) for k, v in p.items()}) or 0.0, hyperopt_space(spec.search.space),
         algo=hyperopt_algo(spec.search), max_evals=3, trials=Trials(),
         rstate=np.random.default_rng(run["drawn"]["rstate_entropy"]), show_progressbar=False)
    assert proposals == [t["config"] for t in run["trials"]]  # random start-up: proposals replay from the entropy
    assert "## The article" in harness.report(str(job), root)
