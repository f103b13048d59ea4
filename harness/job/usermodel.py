"""The parts of a job file that a user's own model changes: `model.builder: "package.module:function"`
(imported, its calling convention checked, a KerasTuner hypermodel's search space recorded from its
hp.* calls), a search space taken from that hypermodel, and fixed configurations of a job without a
search. Loading a job that names a Python function runs that function's module (and, for a
KerasTuner hypermodel, the function once), like any Python configuration file."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

from harness.errors import UserError, Where
from harness.job.spec import BUILTIN_BUILDERS, TRAINING_FIELDS, Dimension, ModelSpec, SearchSpec
from harness.job.usercode import HP, KERASTUNER, convention, import_function, is_ref, source_digest
from harness.job.yamldoc import Section


def user_model(top: Section, search_path: tuple[str, ...]) -> tuple[ModelSpec | None, tuple[Dimension, ...] | None]:
    """A user's builder as a ModelSpec, and the space its hp.* calls record (KerasTuner only); (None,
    None) for a built-in builder, which the loader validates itself."""
    sec = top.section("model", ("builder", "args"), required=("builder",))
    builder = sec.string("builder")
    if builder in BUILTIN_BUILDERS:
        return None, None
    if not is_ref(builder):
        raise sec.err("builder", f"expected one of {', '.join(sorted(BUILTIN_BUILDERS))} or "
                                 f"\"package.module:function\", got {builder!r}")
    args = sec.raw("args", {}) or {}
    if not isinstance(args, Mapping) or any(isinstance(v, (dict, list)) for v in args.values()):
        raise sec.err("args", "expected a mapping of plain values (numbers, strings, booleans)")
    where = Where(file=top.doc.path, key="model.builder", line=top.doc.lines.get(("model", "builder")))
    fn = import_function(builder, search_path, where)
    space = None
    if convention(fn, builder, where) == KERASTUNER:
        hp = HP(dict(args))
        try:
            fn(hp)
        except Exception as exc:  # the user's code: any error is theirs, one line
            raise UserError(f"model builder {builder} raised {type(exc).__name__}: {exc} when called with "
                            f"its hp defaults", **where) from None
        space = recorded_space({k: v for k, v in hp.calls.items() if k not in args})
    spec = ModelSpec(builder=builder, args=dict(args), source_digest=source_digest(builder), search_path=search_path)
    return spec, space


def optional_search(top: Section, parse: Any, recorded: tuple[Dimension, ...] | None,
                    keys: tuple[str, ...]) -> SearchSpec | None:
    """search: absent (fixed configurations only), from the job file (`parse`: the loader's search
    parser), or a KerasTuner hypermodel's recorded space when the section has no `space`; one warning
    line when the job file's space and the hypermodel's disagree."""
    if "search" not in top.value:
        return None
    raw = top.value["search"]
    sec = top.section("search", keys)
    if recorded and not sec.has("space"):
        # the loader's parser checks every other key of the section; the space is the hypermodel's
        stand_in = Section(top.doc, ("search",), {**raw, "space": {"_": {"uniform": [0, 1]}}}, tuple(sec.value) +
                           ("space",))
        search: SearchSpec = parse(stand_in)
        return dataclasses.replace(search, space=recorded)
    search = parse(top.section("search", tuple(sec.value) + ("space",), required=("space",)))
    if recorded is not None:
        ours, theirs = {d.name for d in search.space}, {d.name: d for d in recorded}
        differ = sorted(n for n in ours ^ set(theirs) if n not in TRAINING_FIELDS)
        differ += sorted(d.name for d in search.space if d.name in theirs and theirs[d.name] != d)
        if differ:
            warnings.warn(f"{top.doc.path}: search.space and the hypermodel's hp calls disagree on "
                          f"{', '.join(differ)}; the job file's space is searched", stacklevel=3)
    return search


def free_configurations(sec: Section, builder: str) -> tuple[dict[str, Any], ...]:
    """evaluate.configurations of a job without a search: each a mapping of training fields and
    builder arguments (any names for a user's builder) to plain values."""
    v = sec.raw("configurations", [])
    if not isinstance(v, list) or not v:
        raise sec.err("configurations", "a job without a search needs a non-empty list of configurations")
    info = BUILTIN_BUILDERS.get(builder)
    allowed = TRAINING_FIELDS + tuple(info.params) if info else None
    out = []
    for i, c in enumerate(v):
        keys = tuple(str(k) for k in c) if isinstance(c, Mapping) else ()
        item = Section(sec.doc, sec.keypath + ("configurations", str(i)), c, allowed or keys)
        for k in keys:
            if isinstance(item.raw(k), (dict, list)):
                raise item.err(k, "expected a plain value (number, string, boolean)")
        out.append(dict(item.value))
    return tuple(out)


def recorded_space(calls: dict[str, tuple[str, dict[str, Any]]]) -> tuple[Dimension, ...]:
    """hyperopt dimensions for the recorded hp.* calls (Fixed ones are not dimensions)."""
    out = []
    for name, (kind, a) in sorted(calls.items()):
        log = a.get("sampling") == "log"
        if kind == "int":
            lo, hi, q = a["min_value"], a["max_value"], a["step"] or 1
            out.append(Dimension(name, "qloguniform", (math.log(lo), math.log(hi), q)) if log
                       else Dimension(name, "quniform", (lo, hi, q)))
        elif kind == "float":
            lo, hi = float(a["min_value"]), float(a["max_value"])
            if log:
                out.append(Dimension(name, "loguniform", (math.log(lo), math.log(hi))))
            else:
                out.append(Dimension(name, "quniform", (lo, hi, a["step"])) if a["step"]
                           else Dimension(name, "uniform", (lo, hi)))
        elif kind == "choice":
            out.append(Dimension(name, "choice", tuple(a["values"])))
        elif kind == "boolean":
            out.append(Dimension(name, "choice", (False, True)))
    return tuple(out)
