"""Hypothesis mutates the tiny job file (delete, duplicate or retype a key; swap two values; random
unicode; huge numbers; deep nesting) and `harness plan` must answer every variant with exit 0, or
with exit 2 and one `harness: error:` line: never a traceback, never a hang."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli.main import main
from tests.conftest import TINY_JOB
from tests.test_bad_jobs import BOUND_S, alarm

BASE_TEXT = yaml.safe_dump(TINY_JOB, sort_keys=False)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path (dict keys, list indices) of a nested value."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _parent(job: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = job
    for k in path[:-1]:
        node = node[k]
    return node


values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=12)
    | st.integers(min_value=-10 ** 30, max_value=10 ** 30) | st.sampled_from([10 ** 400, -(10 ** 400)])
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
PATHS = _paths(TINY_JOB)


@st.composite
def mutated_dict(draw: st.DrawFn) -> str:
    """The tiny job with one to three structural mutations, as YAML text."""
    job = copy.deepcopy(TINY_JOB)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(job)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(job, path), path[-1]
        action = draw(st.sampled_from(["delete", "retype", "swap", "rename"]))
        if action == "delete":
            del parent[key]
        elif action == "retype":
            parent[key] = draw(values)
        elif action == "swap":
            other = draw(st.sampled_from(paths))
            if other[:len(path)] != path and path[:len(other)] != other:
                other_parent = _parent(job, other)
                parent[key], other_parent[other[-1]] = other_parent[other[-1]], parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = parent.pop(key)
    return yaml.safe_dump(job, sort_keys=False, allow_unicode=draw(st.booleans()))


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """The tiny job's text with a line duplicated or moved, unicode spliced in, a number made
    huge, or a value nested deep."""
    lines = BASE_TEXT.splitlines(keepends=True)
    i = draw(st.integers(0, len(lines) - 1))
    action = draw(st.sampled_from(["duplicate", "unicode", "huge", "nest", "move"]))
    if action == "duplicate":
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
    elif action == "unicode":
        at = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:at] + draw(st.text(min_size=1, max_size=10)) + lines[i][at:]
    elif action == "huge":
        digits = draw(st.integers(20, 6000))
        lines[i] = "".join("9" * digits if c.isdigit() else c for c in lines[i])
    elif action == "nest":
        depth = draw(st.integers(1, 3000))
        open_, close = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        head, sep, _ = lines[i].partition(": ")
        lines[i] = f"{head}{sep or ': '}{open_ * depth}1{close * depth}\n"
    else:
        lines.insert(draw(st.integers(0, len(lines) - 1)), lines.pop(i))
    return "".join(lines)


def _check(text: str, directory: Path, capsys: Any) -> None:
    path = directory / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    with alarm(BOUND_S):
        code = main(["plan", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("harness: error: "), err[:2000]


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(text=mutated_dict())
def test_mutated_structure_never_breaks_plan(text: str, tmp_path: Path, capsys: Any) -> None:
    _check(text, tmp_path, capsys)


@FUZZ
@given(text=mutated_text())
def test_mutated_text_never_breaks_plan(text: str, tmp_path: Path, capsys: Any) -> None:
    _check(text, tmp_path, capsys)


def test_mutations_reach_both_answers(tmp_path: Path, capsys: Any) -> None:
    """The fuzzing is not vacuous: the base file plans (exit 0), a mutation of it is refused."""
    _check(BASE_TEXT, tmp_path, capsys)
    assert main(["plan", str(tmp_path / "fuzz.yaml")]) == 0
    bad = BASE_TEXT.replace("epochs: 1", "epochs: " + "9" * 5000)
    (tmp_path / "fuzz.yaml").write_text(bad)
    capsys.readouterr()
    assert main(["plan", str(tmp_path / "fuzz.yaml")]) == 2
    assert "invalid YAML value" in capsys.readouterr().err
