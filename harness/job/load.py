"""A YAML job file -> a validated, frozen `JobSpec`.

The whole file is checked before anything runs: unknown keys are refused with the valid
ones listed, types and ranges are checked, and every message names the file, the key and
the YAML line. Only `yaml.safe_load`-level constructs are accepted.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.job import algorithms as algs
from harness.job.seeds import EVAL_SOURCES, REQUIRED_SOURCES, SEED_SOURCES
from harness.job.spec import (
    BUILTIN_BUILDERS,
    DEFAULT_LEASE,
    DEFAULT_MAX_TRAININGS,
    DESIGNS,
    DIRECTIONS,
    DISTRIBUTIONS,
    ENGINES,
    KERAS_DATASETS,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    POLICIES,
    SOURCES,
    TASKS,
    TRAINING_FIELDS,
    DataSpec,
    DeterminismSpec,
    Dimension,
    DispatchSpec,
    JobSpec,
    ModelSpec,
    SearchSpec,
    SeedingSpec,
    TrainingSpec,
    cast_value,
)
from harness.job.usercode import is_ref
from harness.job.usermodel import free_configurations, optional_search, user_model
from harness.job.yamldoc import MAX_BYTES, Doc, Section, decode, finite
from harness.resources import jobs_dir

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a job name is a directory under the store and reports
MAX_NAME = 100
MAX_LEVELS = 1_000_000   # levels of one seed source (the matrix is bounded again by limits.max_trainings)
MAX_LOG_BOUND = 700      # exp(710) overflows a float
MAX_PROCESSES = 1024     # workers and threads: a bound that no machine reaches and no typo passes
TRAINING_TYPES: dict[str, type] = {"optimizer": str, "learning_rate": float, "batch_size": int, "epochs": int}
SEARCH_KEYS = ("algorithm", "algorithms", "options", "max_evals", "startup_trials", "space", "chains",
               "reevaluate")
TOP_KEYS = ("name", "data", "model", "training", "search", "evaluate", "seeds", "seeding", "objective",
            "determinism", "dispatch", "limits")


def resolve_job_path(job: str) -> Path:
    """JOB is a YAML path or a name under jobs/."""
    p = Path(job)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError("job file not found", file=str(p))
        return p
    for cand in (Path("jobs") / f"{job}.yaml", jobs_dir() / f"{job}.yaml"):
        if cand.is_file():
            return cand
    names = sorted(q.stem for q in jobs_dir().glob("*.yaml"))
    raise UserError(f"no job file '{job}' (a path to a .yaml file, or one of: {', '.join(names)})")


def load_job(job: str) -> JobSpec:
    """Read and validate a job file; raise UserError on the first mistake."""
    path = resolve_job_path(job)
    doc = Doc(str(path), _read(path))
    top = Section(doc, (), doc.data, TOP_KEYS, required=("data", "model", "seeds"))
    search_path = (str(path.resolve().parent), os.getcwd())
    data = _data(top.section("data", ("source", "path", "name", "target", "task", "classes", "splits"),
                             required=("source",)), search_path)
    model, hp_space = user_model(top, search_path)
    search = optional_search(top, _search, hp_space, SEARCH_KEYS)
    if model is None:
        builder, model_args = _model(top, search)
        model = ModelSpec(builder=builder, args=model_args)
    types = {**TRAINING_TYPES, **(BUILTIN_BUILDERS[model.builder].params if model.builder in BUILTIN_BUILDERS else {})}
    configurations = _evaluate(top, search, model.builder, types)
    design = top.section("evaluate", ("configurations", "design")).choice("design", DESIGNS, "crossed")
    space_names = {d.name for d in search.space} if search else {k for c in configurations for k in c}
    training = _training(top.section("training", TRAINING_FIELDS + ("loss", "engine", "xla")), space_names,
                         model.builder in BUILTIN_BUILDERS)
    root, levels = _seeds(top.section("seeds", ("root",) + SEED_SOURCES, required=("root",)))
    if search is not None:
        _check_chains(doc, search, levels)
    if design == "alone":
        _check_alone(top, levels)
    objective = top.section("objective", ("runs", "metric", "direction"))
    metric, direction = _objective(objective, data.task)
    runs = _objective_runs(objective)
    spec = JobSpec(name=_name(top, path), path=str(path), data=data,
                   model=model, training=training, search=search,
                   configurations=configurations, root_seed=root, levels=levels,
                   objective_metric=metric, objective_direction=direction,
                   objective_runs=runs[0], runs_levels=runs if len(runs) > 1 else (),
                   determinism=_determinism(top.section("determinism", ("ops", "intra_op_threads",
                                                                        "inter_op_threads"))),
                   dispatch=_dispatch(top.section("dispatch", ("workers_per_gpu", "cpu_workers", "max_retries",
                                                               "batch_units", "unit_timeout", "lease"))),
                   max_trainings=top.section("limits", ("max_trainings",)).integer(
                       "max_trainings", DEFAULT_MAX_TRAININGS, low=1),
                   seeding=_seeding(top, search, types), design=design,
                   raw=dict(doc.data))
    _check_size(spec, doc)
    _warn_random_search(spec)
    return spec


def _evaluate(top: Section, search: SearchSpec | None, builder: str, types: Mapping[str, type]
              ) -> tuple[dict[str, Any], ...]:
    """evaluate.configurations: values of the search dimensions, each of its parameter's type; a job
    without a search names its fixed configurations freely."""
    evaluate = top.section("evaluate", ("configurations", "design"))
    if search is None:
        return free_configurations(evaluate, builder)
    _check_space_types(top.doc, search, types)
    return _configurations(evaluate, search, types)


def _seeding(top: Section, search: SearchSpec | None, types: Mapping[str, type]) -> SeedingSpec | None:
    """The seeding-policy factor (the article's examples), if the job has one."""
    if not top.has("seeding"):
        return None
    sec = top.section("seeding", ("policies", "runs", "fixed"), required=("policies", "fixed"))
    if search is None:
        raise sec.err("policies", "the seeding policies run the article's search: the job needs a search section")
    policies = sec.raw("policies")
    if (not isinstance(policies, list) or not policies or any(p not in POLICIES for p in policies)
            or len(set(policies)) != len(policies)):
        raise sec.err("policies", f"expected a list of distinct policies from {', '.join(POLICIES)}, got {policies!r}")
    if search.algorithms or algs.algorithm(search.algorithm).library != "hyperopt":
        raise sec.err("policies", "the seeding policies drive hyperopt's fmin, as the article does: search.algorithm "
                                  "must be one hyperopt algorithm (tpe, rand or anneal)")
    fixed = _configurations(Section(sec.doc, sec.keypath, {"configurations": [sec.raw("fixed")]},
                                    ("configurations",)), search, types)[0]
    return SeedingSpec(policies=tuple(policies), runs=sec.integer("runs", 6, low=2), fixed=fixed)


def _read(path: Path) -> str:
    """The file's text, read no further than the size bound."""
    try:
        with open(path, "rb") as f:
            return decode(str(path), f.read(MAX_BYTES + 1))
    except OSError as exc:
        raise UserError(f"cannot read job file: {exc.strerror}", file=str(path)) from None


def _name(top: Section, path: Path) -> str:
    """The job's name: a directory under the store root and reports/, so one path component."""
    name = top.string("name", path.stem)
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        origin = "" if top.has("name") else " (from the file name; set name: in the file)"
        raise top.err("name", f"expected a name of letters, digits, '.', '_' and '-' that starts with a "
                              f"letter or digit (at most {MAX_NAME} characters), got {name!r}{origin}")
    return name


def _check_alone(top: Section, levels: dict[str, tuple[int, ...]]) -> None:
    """Design `alone`: every varied source has the same number of levels (arm "all" gives
    training j level j of each)."""
    counts = {s: len(levels[s]) for s in EVAL_SOURCES if len(levels.get(s, ())) > 1}
    if len(set(counts.values())) > 1:
        raise top.section("evaluate", ("configurations", "design")).err(
            "design", "design alone varies each seed source alone over the same number of trainings: expected "
                      f"the same count for every source with more than one level, got "
                      f"{', '.join(f'{s}: {n}' for s, n in counts.items())}")


def _check_chains(doc: Doc, search: SearchSpec, levels: dict[str, tuple[int, ...]]) -> None:
    """Chains run under the first N init and order levels: N may not exceed the levels there are."""
    for key, n in (("init", search.chains_init), ("order", search.chains_order)):
        if n > len(levels[key]):
            raise doc.error(("search", "chains", key),
                            f"expected at most seeds.{key} = {len(levels[key])} levels, got {n}")


def _determinism(det: Section) -> DeterminismSpec:
    ops = det.raw("ops", "on")
    ops = {True: "on", False: "off"}.get(ops, ops)  # YAML 1.1 reads bare on/off as booleans
    if ops not in ("on", "off", "both"):
        raise det.err("ops", f"expected one of on, off, both, got {ops!r}")
    return DeterminismSpec(
        modes={"on": ("on",), "off": ("off",), "both": ("on", "off")}[ops],
        intra_op_threads=det.integer("intra_op_threads", None, low=1, high=MAX_PROCESSES, allow_none=True),
        inter_op_threads=det.integer("inter_op_threads", None, low=1, high=MAX_PROCESSES, allow_none=True))


def _dispatch(disp: Section) -> DispatchSpec:
    return DispatchSpec(workers_per_gpu=disp.integer("workers_per_gpu", 1, low=1, high=MAX_PROCESSES),
                        cpu_workers=disp.integer("cpu_workers", None, low=1, high=MAX_PROCESSES, allow_none=True),
                        max_retries=disp.integer("max_retries", 2, low=0),
                        batch_units=disp.integer("batch_units", 16, low=1),
                        unit_timeout=None if disp.raw("unit_timeout") is None else
                        disp.number("unit_timeout", check=lambda v: v > 0, expect="seconds > 0 (or null: off)"),
                        lease=disp.number("lease", DEFAULT_LEASE, check=lambda v: v > 0, expect="seconds > 0"))


def _warn_random_search(spec: JobSpec) -> None:
    """A model-based optimiser whose random startup covers the whole budget is a random search."""
    s = spec.search
    if s is None:
        return
    for name in algs.arm_algorithms(s):
        alg = algs.algorithm(name)
        startup = algs.effective_options(s, name).get(alg.startup or "", 0)
        if alg.startup and s.max_evals <= startup:
            warnings.warn(f"{spec.path}: search.max_evals = {s.max_evals} does not exceed the {startup} random "
                          f"startup trials of {name} ({alg.startup}): every chain is a random search", stacklevel=3)


def _objective_runs(sec: Section) -> tuple[int, ...]:
    """objective.runs: a count, or a list of counts that the chains run under in turn (a factor)."""
    v = sec.raw("runs", 1)
    if isinstance(v, list):
        if not v or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v) or len(set(v)) < len(v):
            raise sec.err("runs", f"expected a count >= 1 or a list of distinct counts >= 1, got {v!r}")
        return tuple(v)
    return (sec.integer("runs", 1, low=1),)


def _optimisers(sec: Section, space: tuple[Dimension, ...]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """search.algorithm (one, kept as written) or search.algorithms (a factor, full names), each
    installed and able to express every space term exactly, and search.options per algorithm."""
    if sec.has("algorithm") and sec.has("algorithms"):
        raise sec.err("algorithms", "give search.algorithm (one) or search.algorithms (a list), not both")
    if sec.has("algorithms"):
        names = sec.raw("algorithms")
        if not isinstance(names, list) or not names or len(set(map(str, names))) < len(names):
            raise sec.err("algorithms", f"expected a list of distinct names from {', '.join(algs.NAMES)}")
        for n in names:
            if n not in algs.NAMES:
                raise sec.err("algorithms", f"expected names from {', '.join(algs.NAMES)}, got {n!r}")
        full = tuple(dict.fromkeys(algs.algorithm(n).name for n in names))
        if len(full) < len(names):
            raise sec.err("algorithms", "names the same algorithm twice (an alias and its full name)")
        first, factor = full[0], full if len(full) > 1 else ()
        key = "algorithms"
    else:
        first, factor, key = sec.choice("algorithm", algs.NAMES, "tpe"), (), "algorithm"
    for name in factor or (first,):
        why = algs.missing_library(name)
        if why:
            raise sec.err(key, why)
        for d in space:
            refusal = algs.space_refusal(name, d)
            if refusal:
                raise sec.doc.error(sec.keypath + ("space", d.name), f"{refusal} (search.{key}: {name})")
    return first, factor, _options(sec, factor or (algs.algorithm(first).name,))


def _options(sec: Section, names: tuple[str, ...]) -> dict[str, Any]:
    """search.options: a mapping of the one algorithm's options, or one mapping per algorithm name."""
    raw = sec.raw("options")
    if raw is None:
        return {}
    per = raw if len(names) > 1 else {names[0]: raw}
    if len(names) > 1:
        sec.section("options", names)  # refuses keys that are not one of the algorithms
    out: dict[str, Any] = {}
    for name, given in per.items():
        alg = algs.algorithm(name)
        path = ("options",) if len(names) == 1 else ("options", name)
        opts = Section(sec.doc, sec.keypath + path, given, tuple(alg.options) or ("(none)",))
        if alg.startup is not None and alg.startup in opts.value and sec.has("startup_trials"):
            raise opts.err(alg.startup, "also set as search.startup_trials; keep it in one place")
        out[alg.name] = {k: _option(opts, k, alg.options[k]) for k in opts.value}
    return {k: v for k, v in out.items() if v}


def _option(opts: Section, key: str, opt: algs.Option) -> Any:
    if isinstance(opt.kind, tuple):
        return opts.choice(key, opt.kind)
    if opt.kind == "bool":
        v = opts.raw(key)
        if not isinstance(v, bool):
            raise opts.err(key, f"expected true or false, got {v!r}")
        return v
    if opt.kind == "int":
        return opts.integer(key, low=int(opt.low or 0))
    low = opt.low or 0.0
    return opts.number(key, check=lambda x: x > low, expect=f"a number > {low:g}")


def _data(sec: Section, search_path: tuple[str, ...]) -> DataSpec:
    source = sec.string("source")
    if source not in SOURCES and not is_ref(source):
        raise sec.err("source", f"expected one of {', '.join(SOURCES)} or \"package.module:function\", "
                                f"got {source!r}")
    splits = sec.section("splits", ("test", "validation", "max_train", "max_test"))
    if source in ("mnist", "keras") and splits.has("test"):
        raise splits.err("test", f"{source} has a fixed test split; use max_test to shorten it")
    task = sec.choice("task", TASKS, "classification")
    if task == "regression" and sec.has("classes"):
        raise sec.err("classes", "applies to classification only")
    only = {"name": "keras", "target": "csv"}
    for key, needs in only.items():
        if sec.has(key) and source != needs:
            raise sec.err(key, f"applies to data.source {needs} only")
    if source in ("npz", "csv"):
        sec.string("path")
    fraction = partial(splits.number, check=lambda v: 0 < v < 1, expect="a fraction between 0 and 1 (exclusive)")
    return DataSpec(
        source=source, path=sec.string("path", None, allow_none=True),
        test_fraction=fraction("test", 0.25),
        max_train=splits.integer("max_train", None, low=10, allow_none=True),
        max_test=splits.integer("max_test", None, low=10, allow_none=True),
        name=sec.choice("name", KERAS_DATASETS) if source == "keras" else None,
        validation=fraction("validation") if splits.has("validation") else None,
        target=sec.string("target") if source == "csv" else None, task=task,
        classes=sec.integer("classes", None, low=2, allow_none=True),
        search_path=search_path if is_ref(source) else ())


def _objective(sec: Section, task: str) -> tuple[str, str]:
    """objective.metric (default: accuracy, or mse for a regression) and its direction (default:
    min for loss, mse and mae, else max). A metric only the model reports is checked in the
    driver, against the built model."""
    metric = sec.string("metric", "mse" if task == "regression" else "accuracy")
    if task == "regression" and metric == "accuracy":
        raise sec.err("metric", "accuracy needs a classification; a regression has loss, mse, mae "
                                "or a metric the compiled model reports")
    if task == "classification" and metric in ("mse", "mae"):
        raise sec.err("metric", f"{metric} is computed for regressions (data.task: regression)")
    default = "min" if metric in ("loss", "mse", "mae") else "max"
    direction = sec.choice("direction", DIRECTIONS, default)
    if metric in METRICS and direction != default:
        raise sec.err("direction", f"{metric} is better when {'lower' if default == 'min' else 'higher'}: "
                                   f"expected {default}")
    return metric, direction


def _model(top: Section, search: SearchSpec | None) -> tuple[str, dict[str, Any]]:
    """The builder and its fixed arguments; every search dimension must be a training field or
    an argument of the builder, and fixed in one place only."""
    sec = top.section("model", ("builder", "args"), required=("builder",))
    builder = sec.choice("builder", tuple(sorted(BUILTIN_BUILDERS)))
    info = BUILTIN_BUILDERS[builder]
    args_sec = sec.section("args", tuple(info.params))
    args: dict[str, Any] = {}
    for key, typ in info.params.items():
        if not args_sec.has(key):
            continue
        if typ is int:
            args[key] = args_sec.integer(key, low=1)
        elif typ is float:
            args[key] = args_sec.number(key, check=lambda x: 0 <= x < 1, expect="a number in [0, 1)")
        else:
            args[key] = args_sec.choice(key, info.choices[key]) if key in info.choices else args_sec.raw(key)
    for d in search.space if search else ():
        if d.name not in TRAINING_FIELDS and d.name not in info.params:
            raise top.doc.error(("search", "space", d.name),
                                f"not a training field ({', '.join(TRAINING_FIELDS)}) nor an argument of "
                                f"model builder '{builder}' ({', '.join(sorted(info.params))})")
        if d.name in args:
            raise top.doc.error(("search", "space", d.name), "also fixed in model.args; keep it in one place")
    return builder, args


def _training(sec: Section, searched: set[str], builtin: bool) -> TrainingSpec:
    """Training values; a user's builder may compile its model itself, so optimizer and
    learning_rate may be absent there (the driver's check asks for them if it does not)."""
    fixed: dict[str, Any] = {}
    for key in TRAINING_FIELDS:
        if not sec.has(key):
            continue
        if key in searched:
            raise sec.err(key, "also a search dimension in search.space; keep it in one place")
        if key == "optimizer":
            fixed[key] = sec.choice(key, OPTIMIZERS)
        elif key == "learning_rate":
            fixed[key] = sec.number(key, check=lambda v: v > 0, expect="a number > 0")
        else:
            fixed[key] = sec.integer(key, low=1)
    engine = sec.choice("engine", ENGINES, "exact")
    xla = sec.raw("xla", False)
    if not isinstance(xla, bool):
        raise sec.err("xla", f"expected true or false, got {xla!r}")
    if xla and engine == "fit":
        raise sec.err("xla", "XLA applies to engines exact and vectorized, not fit")
    needed = TRAINING_FIELDS if builtin else ("batch_size", "epochs")
    missing = [f for f in needed if f not in fixed and f not in searched]
    if missing:
        raise sec.doc.error(sec.keypath, f"missing {', '.join(missing)}: fix it here or search it in search.space")
    return TrainingSpec(fixed=fixed, loss=sec.choice("loss", LOSSES, LOSSES[0]), engine=engine, xla=xla)


def _dimension(sec: Section, name: str) -> Dimension:
    v = sec.raw(name)
    if not isinstance(v, Mapping) or len(v) != 1:
        raise sec.err(name, f"expected one distribution, e.g. {{quniform: [32, 128, 16]}}; "
                            f"one of {', '.join(DISTRIBUTIONS)}")
    kind, args = next(iter(v.items()))
    if kind not in DISTRIBUTIONS:
        raise sec.err(name, f"unknown distribution '{kind}'; expected one of {', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if not isinstance(args, list) or len(args) < 2:
            raise sec.err(name, "choice expects a list of at least 2 options")
        if any(isinstance(a, (dict, list)) for a in args):
            raise sec.err(name, "choice options must be plain values (numbers or strings)")
        return Dimension(name, kind, tuple(args))
    n = DISTRIBUTIONS[kind]
    if (not isinstance(args, list) or len(args) != n
            or any(isinstance(a, bool) or not isinstance(a, (int, float)) or not finite(a) for a in args)):
        raise sec.err(name, f"{kind} expects a list of {n} finite numbers")
    if kind == "normal":
        if args[1] <= 0:
            raise sec.err(name, f"normal expects sigma > 0, got {args[1]}")
    elif args[0] >= args[1]:
        raise sec.err(name, f"{kind} expects low < high, got low={args[0]}, high={args[1]}")
    if kind in ("loguniform", "qloguniform") and args[1] > MAX_LOG_BOUND:
        raise sec.err(name, f"{kind} takes log-bounds: expected high <= {MAX_LOG_BOUND} (exp(high) a finite "
                            f"number), got {args[1]}")
    if kind in ("quniform", "qloguniform") and args[2] <= 0:
        raise sec.err(name, f"{kind} expects q > 0, got {args[2]}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise sec.err(name, "randint expects integer bounds")
    return Dimension(name, kind, tuple(args))


def _search(sec: Section) -> SearchSpec:
    space_map = sec.raw("space")
    if not isinstance(space_map, Mapping) or not space_map:
        raise sec.err("space", "expected a mapping of at least one search dimension, "
                               "e.g. {units: {quniform: [32, 128, 16]}}")
    # its keys are checked against the training fields and model arguments by load_job
    space_sec = Section(sec.doc, sec.keypath + ("space",), space_map, tuple(str(k) for k in space_map))
    space = tuple(_dimension(space_sec, str(k)) for k in sorted(space_map))
    algorithm, factor, options = _optimisers(sec, space)
    chains = sec.section("chains", ("init", "order"))
    reeval = sec.section("reevaluate", ("init", "order"))
    return SearchSpec(algorithm=algorithm, algorithms=factor, options=options,
                      max_evals=sec.integer("max_evals", 30, low=1),
                      startup_trials=sec.integer("startup_trials", None, low=1, allow_none=True), space=space,
                      chains_init=chains.integer("init", 1, low=1),
                      chains_order=chains.integer("order", 1, low=1),
                      reevaluate_init=reeval.integer("init", 2, low=1),
                      reevaluate_order=reeval.integer("order", 2, low=1))


def _seeds(sec: Section) -> tuple[int, dict[str, tuple[int, ...]]]:
    root = sec.integer("root", low=0)
    levels: dict[str, tuple[int, ...]] = {}
    for src in SEED_SOURCES:
        required = src in REQUIRED_SOURCES
        v = sec.raw(src, 1 if required else None)
        if v is None:
            continue
        if isinstance(v, list):
            if not v or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in v):
                raise sec.err(src, "expected a count >= 1 or a non-empty list of level indices >= 0")
            if len(set(v)) != len(v):
                raise sec.err(src, "expected distinct level indices")
            levels[src] = tuple(v)
        else:
            levels[src] = tuple(range(sec.integer(src, v, low=1, high=MAX_LEVELS)))
    return root, levels


def _configurations(sec: Section, search: SearchSpec, types: Mapping[str, type]) -> tuple[dict[str, Any], ...]:
    """Each configuration's values, each of its parameter's own type (an integer stays an integer
    whatever the search dimension yields)."""
    v = sec.raw("configurations", [])
    if not isinstance(v, list):
        raise sec.err("configurations", "expected a list of mappings of search dimension values")
    out = []
    names = tuple(d.name for d in search.space)
    for i, c in enumerate(v):
        item = Section(sec.doc, sec.keypath + ("configurations", str(i)), c, names, required=names)
        cfg = {}
        for d in search.space:
            cfg[d.name] = _config_value(item, d, types.get(d.name))
        out.append(cfg)
    return tuple(out)


def _config_value(item: Section, d: Dimension, typ: type | None) -> Any:
    """One fixed value, of its parameter's type: an integer parameter's must be an integer >= 1
    (8.0 is refused, even where a choice lists 8); a float parameter's becomes a float; a user
    builder's own parameter (no declared type) takes the type its dimension yields."""
    x = item.integer(d.name, low=1) if typ is int else item.raw(d.name)
    if d.kind == "choice":
        if x not in d.args:
            raise item.err(d.name, f"expected one of {list(d.args)}, got {x!r}")
        return x
    if typ is int:
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not finite(x):
        raise item.err(d.name, f"expected a number, got {x!r}")
    if typ is None:
        return cast_value(d, x)
    return float(x)  # a string parameter is searched by choice only (_check_space_types)


def _check_size(spec: JobSpec, doc: Doc) -> None:
    n = spec.trainings()
    if n > spec.max_trainings:
        raise doc.error(("limits", "max_trainings"),
                        f"the matrix needs {n} trainings, over the limit of {spec.max_trainings}; "
                        f"shrink the seed counts or raise limits.max_trainings")


def _smallest(d: Dimension) -> float:
    """The smallest value an integral dimension yields (hyperopt: q * round(x / q), randint from low)."""
    if d.kind == "randint":
        return d.args[0]
    try:
        low = math.exp(d.args[0]) if d.kind == "qloguniform" else d.args[0]
        return d.args[2] * round(low / d.args[2])
    except OverflowError:  # exp of a large log-bound: the smallest value is huge, not small
        return math.inf


def _check_space_types(doc: Doc, search: SearchSpec, types: Mapping[str, type]) -> None:
    """Every dimension yields values of its parameter's type: whole numbers >= 1 for an integer
    parameter, numbers for a float one, the allowed strings for a string one."""
    for d in search.space:
        if d.name not in types:  # a user builder's own parameter: its builder checks it
            continue
        key, typ = ("search", "space", d.name), types[d.name]
        if d.kind == "choice":
            _check_options(doc, key, d, typ)
        elif typ is str:
            raise doc.error(key, f"{d.name} takes a string: use choice, not {d.kind}")
        elif typ is int and not d.integral:
            raise doc.error(key, f"{d.name} is an integer parameter and {d.kind} yields fractions: use "
                                 f"quniform or qloguniform with a whole-number q, randint, or choice")
        elif typ is int and _smallest(d) < 1:
            raise doc.error(key, f"{d.name} is an integer >= 1, but {d.kind} {list(d.args)} can yield "
                                 f"{_smallest(d):g}")


def _check_options(doc: Doc, key: tuple[str, ...], d: Dimension, typ: type) -> None:
    for x in d.args:
        if typ is int and (isinstance(x, bool) or not isinstance(x, int) or x < 1):
            raise doc.error(key, f"{d.name} is an integer parameter: expected choice options that are "
                                 f"integers >= 1, got {x!r}")
        if typ is float and (isinstance(x, bool) or not isinstance(x, (int, float)) or not finite(x)):
            raise doc.error(key, f"{d.name} is a number: expected numeric choice options, got {x!r}")
        if typ is str and not isinstance(x, str):
            raise doc.error(key, f"{d.name} takes a string: expected string choice options, got {x!r}")
