"""Job-file validation: every mistake is one line naming file, key and line; exit 2; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import UserError
from harness.job import load_job
from tests.conftest import TINY_JOB, as_before_validation, deep_merge, harness, write_job

# (overrides of the tiny job, the key the message must name, a phrase it must contain)
MISTAKES = [
    ({"colour": "blue"}, "colour", "unknown key; valid keys here: name, data"),
    ({"training": {"optimiser": "adam"}}, "training.optimiser", "valid keys here: optimizer"),
    ({"training": {"optimizer": "adagrad"}}, "training.optimizer", "expected one of adam, sgd, rmsprop"),
    ({"training": {"batch_size": 0}}, "training.batch_size", "expected an integer >= 1"),
    ({"training": {"learning_rate": "fast"}}, "training.learning_rate", "expected a number > 0"),
    ({"search": {"space": {"units": {"quniform": [128, 32, 16]}}}}, "search.space.units", "low < high"),
    ({"search": {"space": {"units": {"quniform": [32, 128, 0]}}}}, "search.space.units", "q > 0"),
    ({"search": {"space": {"epochs": {"gaussian": [0, 1]}}}}, "search.space.epochs", "unknown distribution"),
    ({"search": {"space": {"width": {"uniform": [0, 1]}}}}, "search.space.width",
     "not a training field"),
    ({"search": {"algorithm": "bayes"}}, "search.algorithm", "expected one of tpe, rand, anneal, hyperopt.tpe"),
    ({"seeds": {"init": 0}}, "seeds.init", "expected an integer >= 1"),
    ({"seeds": {"order": [1, 1]}}, "seeds.order", "distinct"),
    ({"model": {"builder": "resnet"}}, "model.builder", "expected one of conv, dense or \"package.module:function\""),
    ({"data": {"source": "cifar"}}, "data.source", "expected one of digits, mnist"),
    ({"data": {"splits": {"test": 1.5}}}, "data.splits.test", "fraction"),
    ({"determinism": {"ops": "sometimes"}}, "determinism.ops", "expected one of on, off, both"),
    ({"seeds": {"init": 500, "order": 500}}, "limits.max_trainings", "over the limit"),
    ({"evaluate": {"configurations": [{"units": 8, "epochs": 3}]}}, "evaluate.configurations.0.epochs",
     "unknown key"),
    ({"search": {"chains": {"init": 5}}}, "search.chains.init", "at most seeds.init"),
]


@pytest.mark.parametrize("overrides,key,phrase", MISTAKES, ids=[m[1] + ":" + m[2][:12] for m in MISTAKES])
def test_mistake_is_one_clear_error(tmp_path: Path, overrides: dict, key: str, phrase: str) -> None:
    path = write_job(tmp_path, **overrides)
    with pytest.raises(UserError) as info:
        load_job(str(path))
    msg = str(info.value)
    assert str(path) in msg and key in msg and phrase in msg, msg
    assert "\n" not in msg


def test_message_carries_the_yaml_line(tmp_path: Path) -> None:
    path = write_job(tmp_path, training={"optimizer": "adagrad"})
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "adagrad" in t)
    with pytest.raises(UserError, match=rf"{path}:{line}: training.optimizer"):
        load_job(str(path))


def test_cli_exit_2_one_line_nothing_written(tmp_path: Path) -> None:
    """Through the real CLI: invalid YAML, an unknown key and a missing file each exit 2."""
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("data: [unclosed\n")
    unknown = write_job(tmp_path, name="unknown", seeds={"color": 1})
    store = tmp_path / "store"
    for job in (str(bad_yaml), str(unknown), str(tmp_path / "missing.yaml"), "no_such_job"):
        r = harness("run", job, "--store", str(store), "--executor", "debug")
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("harness: error: "), r.stderr
    assert not store.exists()


def test_missing_mnist_file_names_both_options(tmp_path: Path) -> None:
    job = write_job(tmp_path, replace={"data": {"source": "mnist", "path": str(tmp_path / "nope.npz")}})
    r = harness("run", str(job), "--store", str(tmp_path / "s"), "--executor", "debug")
    assert r.returncode == 2
    assert "data.path" in r.stderr and "HARNESS_MNIST_PATH" in r.stderr
    assert not (tmp_path / "s").exists()


def test_bundled_jobs_load_and_warn_on_random_tpe(tmp_path: Path) -> None:
    for name in ("digits_dense", "mnist_dense"):
        spec = load_job(name)
        assert spec.search.max_evals > spec.search.startup_trials
    path = write_job(tmp_path, search={"max_evals": 5, "startup_trials": 20})
    with pytest.warns(UserWarning, match="random search"):
        load_job(str(path))


def test_yaml_on_off_and_lists(tmp_path: Path) -> None:
    """Bare `on` (a YAML 1.1 boolean) means op determinism on; explicit seed lists keep their levels."""
    job = deep_merge(TINY_JOB, {"determinism": {"ops": True}, "seeds": {"init": [3, 9]}})
    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump(job))
    spec = load_job(str(path))
    assert spec.determinism.modes == ("on",) and spec.levels["init"] == (3, 9)


def _space_job(tmp_path: Path, dims: dict, configs: list[dict], drop: str | None = None) -> Path:
    job = deep_merge(TINY_JOB, {})
    job["search"] = {**job["search"], "space": dims}
    job["evaluate"] = {"configurations": configs}
    if drop:
        job["training"] = {k: v for k, v in job["training"].items() if k != drop}
    path = tmp_path / "types.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_a_continuous_dimension_never_turns_an_integer_into_a_float(tmp_path: Path) -> None:
    """The trial of issue 12: `units: {uniform: [-50, -10]}` made evaluate's `{units: 64}` 64.0 and
    every evaluation failed in Keras. Now the dimension is refused with the reason, before any run."""
    path = _space_job(tmp_path, {"units": {"uniform": [-50, -10]}}, [{"units": 64}])
    with pytest.raises(UserError, match="units is an integer parameter and uniform yields fractions"):
        load_job(str(path))


def test_each_parameter_keeps_its_own_type(tmp_path: Path) -> None:
    """Integer parameters stay int; a float parameter searched over whole numbers keeps a fixed
    0.5 (it was rounded to the int 0); qloguniform with a whole q yields ints whatever its log bounds."""
    path = _space_job(tmp_path, {"units": {"qloguniform": [2.1, 4.5, 8]},
                                 "learning_rate": {"quniform": [1, 3, 1]}},
                      [{"units": 64, "learning_rate": 0.5}, {"units": 16, "learning_rate": 2}],
                      drop="learning_rate")
    spec = load_job(str(path))
    assert spec.configurations == ({"learning_rate": 0.5, "units": 64}, {"learning_rate": 2.0, "units": 16})
    assert [type(c["units"]) for c in spec.configurations] == [int, int]
    assert [type(c["learning_rate"]) for c in spec.configurations] == [float, float]
    from harness.search import make_search
    chain = make_search(spec.search, 3)
    for _ in range(5):
        proposal = chain.ask()
        assert type(proposal["units"]) is int and proposal["units"] % 8 == 0, proposal
        chain.tell(0.0)


def test_bundled_jobs_keep_their_spec_hashes(tmp_path: Path) -> None:
    """The stricter loader changes no existing job's identity (stores resume as before): the bundled
    jobs as they were keep their hashes; selecting on validation (issue 21) gave them new ones."""
    assert load_job(str(as_before_validation("digits_dense", tmp_path))).digest() == "73a668cfb3e465b5"
    assert load_job(str(as_before_validation("mnist_dense", tmp_path))).digest() == "7607acb5fe2de05b"
    assert load_job("digits_dense").digest() == "d7ba8ddb1f1ac5ee"
    assert load_job("mnist_dense").digest() == "69884474403e3d79"
