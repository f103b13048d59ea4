"""Broken job files, one mistake each, through the real CLI: exit 2, exactly one stderr line, no
traceback, nothing written, and no hang (a 5 s alarm per call). Most run in-process through
`harness.cli.main.main`; a few go through a fresh `python -m harness` process."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.main import main
from tests.conftest import TINY_JOB, deep_merge, harness

BOUND_S = 5  # every bad job file is refused within this (an alarm, not a measurement)


class Hung(BaseException):
    """Raised by the alarm: the CLI did not answer within BOUND_S."""


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def ring(*_: object) -> None:
        raise Hung(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def tiny_text(**overrides: Any) -> str:
    return yaml.safe_dump(deep_merge(TINY_JOB, overrides), sort_keys=False)


def without(section: str, key: str, **overrides: Any) -> str:
    """The tiny job with `section.key` removed (and `overrides` merged)."""
    job = deep_merge(TINY_JOB, overrides)
    job[section] = {k: v for k, v in job[section].items() if k != key}
    return yaml.safe_dump(job, sort_keys=False)


def space(dims: dict[str, Any], configs: list[dict[str, Any]] | None = None, drop: str | None = None) -> str:
    """The tiny job searching `dims` (replacing its space), evaluating `configs`."""
    job = deep_merge(TINY_JOB, {})
    job["search"] = {**job["search"], "space": dims}
    job["model"] = {"builder": "dense"}
    job["evaluate"] = {"configurations": configs if configs is not None else []}
    if drop:
        job["training"] = {k: v for k, v in job["training"].items() if k != drop}
    return yaml.safe_dump(job, sort_keys=False)


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    return "\n".join(lines) + "\n" + tiny_text()


@dataclass(frozen=True)
class Case:
    """One broken job file: its content (text or bytes), a phrase the error must contain."""

    id: str
    content: Callable[[], str | bytes]
    phrase: str
    verbs: tuple[str, ...] = ("plan", "run")
    filename: str = "job.yaml"


TINY = tiny_text()
CASES = [
    # the YAML itself: bounds, bytes, duplicates, syntax
    Case("alias-bomb", alias_bomb, "aliases expand to more than"),
    Case("binary", lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
    Case("utf16", lambda: TINY.encode("utf-16"), "not UTF-8 text"),
    Case("5000-brackets", lambda: "data: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 32 levels"),
    Case("5000-mappings", lambda: "data: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested more than 32"),
    Case("recursive-alias", lambda: "data: &a [*a]\n" + TINY.replace("data:", "other:", 1), "recursive"),
    Case("alias-chain", lambda: "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 100)).replace(
        "[*a0]", "[1]"), "once aliases are expanded"),
    Case("over-256KiB", lambda: TINY + "#" * 300_000 + "\n", "over 262,144 bytes"),
    Case("30k-nodes", lambda: "x: [" + ",".join(["0"] * 30_000) + "]\n", "more than 20,000 YAML nodes"),
    Case("duplicate-name", lambda: "name: one\n" + TINY, "duplicate key 'name': first on line 1, again on line"),
    Case("duplicate-nested", lambda: TINY.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n"),
         "duplicate key 'epochs'"),
    Case("duplicate-flow", lambda: TINY.replace("seeds:\n", "seeds: {root: 1, root: 2}\nxseeds:\n"),
         "duplicate key 'root'"),
    Case("unclosed-bracket", lambda: "data: [unclosed\n", "invalid YAML"),
    Case("tab-indent", lambda: "data:\n\tsource: digits\n", "invalid YAML"),
    Case("nul-char", lambda: "name: a\x00b\n", "invalid YAML"),
    Case("two-documents", lambda: TINY + "---\n" + TINY, "invalid YAML"),
    Case("5000-digit-int", lambda: TINY.replace("root: 7", "root: " + "9" * 5000), "invalid YAML value"),
    Case("bad-date", lambda: TINY.replace("name: tiny", "name: 2026-13-45"), "invalid YAML value"),
    Case("python-tag", lambda: "name: !!python/object/apply:os.system [echo hi]\n", "invalid YAML"),
    Case("undefined-alias", lambda: "name: *nope\n", "invalid YAML"),
    Case("unhashable-key", lambda: "? [a, b]\n: 1\n", "invalid YAML"),
    Case("empty-file", lambda: "", "missing required key 'data'"),
    Case("top-level-list", lambda: "- a\n- b\n", "expected a mapping"),
    Case("top-level-scalar", lambda: "just words\n", "expected a mapping"),
    Case("newline-in-key", lambda: '"a\\nb": 1\n' + TINY, "unknown key"),
    Case("unicode-key", lambda: "ключ: 1\n" + TINY, "unknown key"),
    # the job's name: one path component under the store and reports/
    Case("name-traversal", lambda: tiny_text(name="../../../tmp/pwned"), "expected a name of letters"),
    Case("name-slash", lambda: tiny_text(name="a/b"), "expected a name of letters"),
    Case("name-absolute", lambda: tiny_text(name="/tmp/x"), "expected a name of letters"),
    Case("name-dot", lambda: tiny_text(name=".hidden"), "expected a name of letters"),
    Case("name-dotdot", lambda: tiny_text(name=".."), "expected a name of letters"),
    Case("name-empty", lambda: tiny_text(name=""), "expected a non-empty string"),
    Case("name-number", lambda: tiny_text(name=123), "expected a non-empty string"),
    Case("name-space", lambda: tiny_text(name="my job"), "expected a name of letters"),
    Case("name-unicode", lambda: tiny_text(name="jöb"), "expected a name of letters"),
    Case("name-too-long", lambda: tiny_text(name="a" * 200), "at most 100 characters"),
    Case("name-from-filename", lambda: TINY.replace("name: tiny\n", ""), "from the file name",
         filename="my job.yaml"),
    # each parameter keeps its type
    Case("int-uniform", lambda: space({"units": {"uniform": [-50, -10]}}, [{"units": 64}]),
         "integer parameter and uniform yields fractions"),
    Case("int-loguniform", lambda: space({"units": {"loguniform": [1, 5]}}), "integer parameter"),
    Case("int-normal", lambda: space({"units": {"normal": [64, 8]}}), "integer parameter"),
    Case("epochs-uniform", lambda: space({"epochs": {"uniform": [1, 5]}}, drop="epochs"), "integer parameter"),
    Case("batch-fraction-q", lambda: space({"batch_size": {"quniform": [16, 64, 0.5]}}, drop="batch_size"),
         "integer parameter"),
    Case("layers-fraction-q", lambda: space({"layers": {"qloguniform": [0, 2, 0.5]}}), "integer parameter"),
    Case("int-negative-range", lambda: space({"units": {"quniform": [-64, -8, 8]}}), "integer >= 1"),
    Case("int-zero-possible", lambda: space({"units": {"quniform": [0, 24, 8]}}), "can yield 0"),
    Case("randint-zero", lambda: space({"units": {"randint": [0, 10]}}), "can yield 0"),
    Case("int-choice-fraction", lambda: space({"units": {"choice": [8, 16.5]}}), "integers >= 1"),
    Case("int-choice-negative", lambda: space({"units": {"choice": [8, -16]}}), "integers >= 1"),
    Case("int-choice-strings", lambda: space({"units": {"choice": ["a", "b"]}}), "integers >= 1"),
    Case("config-int-float", lambda: tiny_text(evaluate={"configurations": [{"units": 64.0}]}),
         "expected an integer"),
    Case("config-int-negative", lambda: tiny_text(evaluate={"configurations": [{"units": -8}]}),
         "expected an integer >= 1"),
    Case("config-int-string", lambda: tiny_text(evaluate={"configurations": [{"units": "8"}]}),
         "expected an integer"),
    Case("config-int-float-in-choice", lambda: space({"units": {"choice": [8, 16]}}, [{"units": 8.0}]),
         "expected an integer"),
    Case("uniform-nan", lambda: space({"learning_rate": {"uniform": [float("nan"), 1]}}, drop="learning_rate"),
         "2 finite numbers"),
    Case("qloguniform-huge-bound", lambda: space({"units": {"qloguniform": [1000, 2000, 8]}}),
         "takes log-bounds: expected high <= 700"),
    Case("config-float-word", lambda: space({"learning_rate": {"loguniform": [-5, -1]}}, [{"learning_rate": "x"}],
                                            drop="learning_rate"), "expected a number"),
    Case("string-uniform", lambda: space({"activation": {"uniform": [0, 1]}}), "takes a string"),
    Case("string-choice-numbers", lambda: space({"activation": {"choice": [1, 2]}}), "string choice options"),
    Case("float-choice-strings", lambda: space({"learning_rate": {"choice": ["fast", "slow"]}},
                                               drop="learning_rate"), "numeric choice options"),
    # every other section
    Case("unknown-top-key", lambda: tiny_text(colour="blue"), "unknown key"),
    Case("bad-optimizer", lambda: tiny_text(training={"optimizer": "adagrad"}), "expected one of adam"),
    Case("batch-size-0", lambda: tiny_text(training={"batch_size": 0}), "expected an integer >= 1"),
    Case("learning-rate-word", lambda: tiny_text(training={"learning_rate": "fast"}), "expected a number > 0"),
    Case("learning-rate-inf", lambda: TINY.replace("learning_rate: 0.01", "learning_rate: .inf"),
         "expected a number > 0"),
    Case("learning-rate-huge-int", lambda: tiny_text(training={"learning_rate": 10 ** 400}),
         "expected a number > 0"),
    Case("xla-word", lambda: tiny_text(training={"xla": "yes"}), "expected true or false"),
    Case("epochs-missing", lambda: without("training", "epochs"), "missing epochs"),
    Case("space-empty", lambda: space({}), "at least one search dimension"),
    Case("unknown-distribution", lambda: space({"units": {"gaussian": [0, 1]}}), "unknown distribution"),
    Case("low-above-high", lambda: space({"units": {"quniform": [128, 32, 16]}}), "low < high"),
    Case("searched-and-fixed", lambda: tiny_text(model={"args": {"units": 8}}), "keep it in one place"),
    Case("max-evals-negative", lambda: tiny_text(search={"max_evals": -1}), "expected an integer >= 1"),
    Case("chains-over-levels", lambda: tiny_text(search={"chains": {"init": 5}}), "at most seeds.init"),
    Case("seeds-init-0", lambda: tiny_text(seeds={"init": 0}), "expected an integer >= 1"),
    Case("seeds-init-huge", lambda: tiny_text(seeds={"init": 10 ** 30}), "expected an integer <= 1,000,000"),
    Case("seeds-repeated-level", lambda: tiny_text(seeds={"order": [1, 1]}), "distinct"),
    Case("seeds-root-negative", lambda: tiny_text(seeds={"root": -1}), "expected an integer >= 0"),
    Case("seeds-root-missing", lambda: without("seeds", "root"), "missing required key 'root'"),
    Case("over-max-trainings", lambda: tiny_text(seeds={"init": 500, "order": 500}), "over the limit"),
    Case("builder-unknown", lambda: tiny_text(model={"builder": "resnet"}), "expected one of conv, dense"),
    Case("model-units-0", lambda: tiny_text(model={"args": {"layers": 0}}), "expected an integer >= 1"),
    Case("source-unknown", lambda: tiny_text(data={"source": "cifar"}), "expected one of digits, mnist"),
    Case("test-fraction", lambda: tiny_text(data={"splits": {"test": 1.5}}), "fraction"),
    Case("mnist-test-split", lambda: tiny_text(data={"source": "mnist"}), "fixed test split"),
    Case("data-missing", lambda: TINY.replace("data:", "dta:", 1), "unknown key"),
    Case("ops-sometimes", lambda: tiny_text(determinism={"ops": "sometimes"}), "expected one of on, off, both"),
    Case("threads-0", lambda: tiny_text(determinism={"intra_op_threads": 0}), "expected an integer >= 1"),
    Case("workers-billion", lambda: tiny_text(dispatch={"cpu_workers": 10 ** 9}), "expected an integer <= 1,024"),
    Case("configurations-not-list", lambda: tiny_text(evaluate={"configurations": {"units": 8}}),
         "expected a list"),
    Case("configuration-missing-dim", lambda: space({"units": {"quniform": [8, 24, 8]},
                                                     "epochs": {"quniform": [1, 2, 1]}}, [{"units": 8}],
                                                    drop="epochs"), "missing required key 'epochs'"),
    # found only when running
    Case("mnist-file-missing", lambda: yaml.safe_dump({**TINY_JOB, "data": {"source": "mnist",
                                                                            "path": "/nonexistent/m.npz"}}),
         "data.path", verbs=("run",)),
]
IN_PROCESS = [(c, v) for c in CASES for v in c.verbs]


def _write(directory: Path, case: Case) -> Path:
    path = directory / case.filename
    content = case.content()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _argv(verb: str, path: Path, store: Path) -> list[str]:
    if verb == "plan":
        return ["plan", str(path)]
    return ["run", str(path), "--store", str(store), "--executor", "debug", "--no-progress"]


def assert_refused(code: int, stderr: str, phrase: str) -> None:
    """Exit 2 and one line on stderr: `harness: error: ...` with the phrase; never a traceback."""
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = stderr.splitlines()
    assert code == 2 and len(lines) == 1, (code, stderr[-2000:])
    assert lines[0].startswith("harness: error: ") and phrase in lines[0], lines[0][:500]


def test_at_least_60_mistakes() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case,verb", IN_PROCESS, ids=[f"{c.id}-{v}" for c, v in IN_PROCESS])
def test_bad_job_is_one_line_exit_2_nothing_written(case: Case, verb: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    with alarm(BOUND_S):
        code = main(_argv(verb, path, tmp_path / "store"))
    assert_refused(code, capsys.readouterr().err, case.phrase)
    assert sorted(tmp_path.rglob("*")) == before  # no store, no reports, no logs


SUBPROCESS = ["alias-bomb", "binary", "5000-brackets", "duplicate-name", "name-traversal", "int-uniform"]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_job_through_a_fresh_process(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    path = _write(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    for verb in case.verbs:
        r = harness(*_argv(verb, path, tmp_path / "store"), cwd=tmp_path, timeout=60)
        assert_refused(r.returncode, r.stderr, case.phrase)
    assert sorted(tmp_path.rglob("*")) == before
