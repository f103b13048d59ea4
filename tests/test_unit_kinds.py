"""Every unit kind through the same contract, in the manner of optuna's storage tests: a real run,
then verify (clean), `verify --repair` (moves nothing), the same unit stored twice with other
timings (a duplicate, not a disagreement), a record of another spec appended (skipped by every
reader, named by verify), export and report. For a classification and a regression job, with op
determinism on, off and both (`make test` runs "on"; off, both and the policy kind, which starts
fresh processes, are `slow`: `make test-all`). Nothing here is mocked: the debug executor trains
for real."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.job import load_job
from harness.store import Store
from harness.store.records import Record
from harness.units import KINDS, plan, planned_trainings
from tests.conftest import TINY_JOB, write_job

SMALL = {"evaluate": {"configurations": [{"units": 8}]}, "seeds": {"init": 2, "order": 1, "repeat": 1, "bo": 1},
         "search": {"max_evals": 2, "startup_trials": 1}}
REGRESSION = {"data": {"task": "regression"}, "training": {"loss": "mse"}, "objective": {"metric": "mae"}}
POLICY_JOB = {"seeding": {"policies": ["none", "harness"], "runs": 2, "fixed": {"units": 8, "epochs": 1}},
              "evaluate": {"configurations": [{"units": 8, "epochs": 1}]}, "seeds": {"init": 1, "order": 1, "bo": 1},
              "search": {"max_evals": 2, "startup_trials": 1,  # the article searches units x epochs
                         "space": {"units": {"quniform": [8, 16, 8]}, "epochs": {"quniform": [1, 2, 1]}}}}

CASES = [pytest.param(kind, task, ops, id=f"{kind}-{task}-{ops}", marks=[pytest.mark.slow] if ops != "on" else [])
         for kind in ("eval", "study") for task in ("classification", "regression") for ops in ("on", "off", "both")]
CASES.append(pytest.param("policy", "classification", "on", id="policy-classification-on", marks=pytest.mark.slow))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, Path]]:
    """(task, ops) or ("policy", "on") -> (job file, store root) of one real run, made on first use."""
    return {}


def _job_overrides(kind: str, task: str, ops: str) -> dict[str, Any]:
    over = copy.deepcopy(POLICY_JOB if kind == "policy" else SMALL)
    over["determinism"] = {"ops": ops}
    if task == "regression":
        over.update(copy.deepcopy(REGRESSION))
    return over


def _run(stores: dict[tuple[str, str], tuple[Path, Path]], tmp: pytest.TempPathFactory, kind: str, task: str,
         ops: str) -> tuple[Path, Path]:
    key = ("policy" if kind == "policy" else task, ops)
    if key not in stores:
        d = tmp.mktemp("-".join(key))
        over = _job_overrides(kind, task, ops)
        training = {k: v for k, v in TINY_JOB["training"].items() if not (kind == "policy" and k == "epochs")}
        job = write_job(d, name=f"{key[0]}_{ops}", replace={"training": {**training, **over.pop("training", {})}},
                        **over)
        assert main(["run", str(job), "--store", str(d / "runs"), "--executor", "debug", "--no-progress"]) == 0
        stores[key] = (job, d / "runs")
    return stores[key]


def _shard_bytes(store: Store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.shards.iterdir()}


def _rows(job: Path, root: Path, out: Path) -> list[dict[str, str]]:
    assert main(["export", str(job), "--store", str(root), "--csv", str(out)]) == 0
    with open(out) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind,task,ops", CASES)
def test_a_kind_through_the_store_contract(stores: dict[tuple[str, str], tuple[Path, Path]],
                                           tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], kind: str, task: str, ops: str) -> None:
    job, original = _run(stores, tmp_path_factory, kind, task, ops)
    root = tmp_path / "runs"
    shutil.copytree(original, root)
    spec = load_job(str(job))
    store = Store(root, spec)
    capsys.readouterr()

    # verify: clean; --repair moves nothing
    assert main(["verify", str(job), "--store", str(root)]) == 0
    before = _shard_bytes(store)
    assert main(["verify", str(job), "--store", str(root), "--repair"]) == 0
    assert _shard_bytes(store) == before
    rows = _rows(job, root, tmp_path / "before.csv")
    # one row per training; a policy run is read whole by the report, so it has none
    assert len(rows) == sum(KINDS[u.kind].trainings(spec, u) for u in plan(spec) if u.kind != "policy")
    assert kind == "policy" or len(rows) == planned_trainings(spec)
    capsys.readouterr()

    # the same unit twice, other timings: a duplicate, not a disagreement
    mine = [r for r in store.records() if KINDS[kind].owns(r) and r["status"] == "ok"]
    assert mine, f"the job ran no {kind} unit"
    again: Record = {**mine[0], "timings": {k: v + 1.0 for k, v in mine[0]["timings"].items()}, "worker": "again"}
    store.writer("again").append(again)
    states = store.states()
    assert sum(st.disagreements for st in states.values()) == 0
    assert main(["status", str(job), "--store", str(root)]) == 0
    assert "not deterministic" not in capsys.readouterr().out
    assert main(["verify", str(job), "--store", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("1 duplicate(s), 0 disagree with the first")

    # a record of another spec: every reader skips it (and says so), verify names it
    foreign = {**mine[0], "spec": "0123456789abcdef", "unit": "f" * 16}
    store.writer("foreign").append(foreign)
    assert set(store.states()) == set(states)
    assert "of another spec" in capsys.readouterr().err
    assert main(["verify", str(job), "--store", str(root)]) == 1
    out = capsys.readouterr().out
    assert "foreign.jsonl:1: a record of spec 0123456789abcdef" in out

    # export and report read the same trainings as before
    assert _rows(job, root, tmp_path / "after.csv") == rows
    assert {r["kind"] for r in rows} <= {"eval", "trial", "reeval"}
    assert main(["report", str(job), "--store", str(root), "--out", str(tmp_path / "reports")]) == 0
    text = (tmp_path / "reports" / f"{spec.name}.md").read_text()
    assert text.startswith(f"# Variance report: {spec.name}") and "Traceback" not in text
    if task == "regression":
        assert "mae" in text and "pts" not in text.split("## Plots")[0]


def test_records_carry_result_timings_and_env_apart(stores: dict[tuple[str, str], tuple[Path, Path]],
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """What a unit produced, what it cost and where it ran are separate fields: timings never sit in
    a result (so two records of one unit agree when their results are equal)."""
    job, root = _run(stores, tmp_path_factory, "study", "classification", "on")
    for rec in Store(root, load_job(str(job))).records():
        assert "wall_s" in rec["timings"] and not {"wall_s", "train_s"} & set(rec)
        assert not {"wall_s", "train_s", "optimiser_s", "process_s"} & set(rec["result"]), rec["kind"]
        assert rec["env"]["cpu_isa"]
        json.dumps(rec)
