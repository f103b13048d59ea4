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
from harness.job.usercode import KERASTUNER, convention, declared, import_function, is_ref, source_digest
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
        try:
            hps = declared(fn, dict(args))
        except Exception as exc:  # the user's code: any error is theirs, one line
            raise UserError(f"model builder {builder} raised {type(exc).__name__}: {exc} when called with "
                            f"its hp defaults", **where) from None
        space = recorded_space(hps)
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


def recorded_space(hps: Mapping[str, Any]) -> tuple[Dimension, ...]:
    """The search dimensions of a hypermodel's declared hyperparameters (keras_tuner objects by
    name; Fixed ones are not dimensions), proposing exactly KerasTuner's values: an Int or Float
    with a step is its grid (min, min + step, ...; under log sampling min, min x step, ...), a
    choice of those values where a quantized range would not land on them."""
    out = []
    for name, h in sorted(hps.items()):
        kind = type(h).__name__
        if kind in ("Int", "Float"):
            out.append(_range(name, h, kind == "Int"))
        elif kind == "Choice":
            out.append(Dimension(name, "choice", tuple(h.values)))
        elif kind == "Boolean":
            out.append(Dimension(name, "choice", (False, True)))
    return tuple(out)


def _range(name: str, h: Any, integral: bool) -> Dimension:
    lo, hi, step, sampling = h.min_value, h.max_value, h.step, h.sampling or "linear"
    if integral and not step:
        step = 1
    if step and sampling in ("log", "reverse_log"):  # KerasTuner's log grid multiplies by the step
        grid: list[Any] = []
        v = lo
        while v <= hi and len(grid) < 10_000:
            grid.append(v)
            v = v * step
        return Dimension(name, "choice", tuple(grid))
    if step:
        n = int(math.floor((hi - lo) / step + 1e-9))
        grid = [lo + k * step for k in range(n + 1)]
        if integral and lo % step == 0:
            return Dimension(name, "quniform", (lo, lo + n * step, step))
        return Dimension(name, "choice", tuple(int(g) if integral else float(g) for g in grid))
    if sampling in ("log", "reverse_log"):
        return Dimension(name, "loguniform", (math.log(lo), math.log(hi)))
    return Dimension(name, "uniform", (float(lo), float(hi)))
