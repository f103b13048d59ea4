"""A YAML job file -> a validated, frozen `JobSpec`.

The whole file is checked before anything runs: unknown keys are refused with the valid
ones listed, types and ranges are checked, and every message names the file, the key and
the YAML line. Only `yaml.safe_load`-level constructs are accepted.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.job.seeds import SEED_SOURCES
from harness.job.spec import (
    ALGORITHMS,
    DEFAULT_MAX_TRAININGS,
    DIRECTIONS,
    DISTRIBUTIONS,
    ENGINES,
    KERAS_DATASETS,
    LOSSES,
    METRICS,
    OPTIMIZERS,
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
    TrainingSpec,
    cast_value,
)
from harness.job.usermodel import free_configurations, optional_search, user_model
from harness.job.yamldoc import Doc, Section
from harness.resources import jobs_dir
from harness.training.builders import is_ref
from harness.training.models import BUILDERS

SEARCH_KEYS = ("algorithm", "max_evals", "startup_trials", "space", "chains", "reevaluate")
TOP_KEYS = ("name", "data", "model", "training", "search", "evaluate", "seeds", "objective",
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
    evaluate = top.section("evaluate", ("configurations",))
    if model is None:
        builder, model_args = _model(top, search)
        model = ModelSpec(builder=builder, args=model_args)
    configurations = (_configurations(evaluate, search) if search is not None
                      else free_configurations(evaluate, model.builder))
    space_names = {d.name for d in search.space} if search else {k for c in configurations for k in c}
    training = _training(top.section("training", TRAINING_FIELDS + ("loss", "engine", "xla")), space_names,
                         model.builder in BUILDERS)
    root, levels = _seeds(top.section("seeds", ("root",) + SEED_SOURCES, required=("root",)))
    if search is not None:
        _check_chains(doc, search, levels)
    objective = top.section("objective", ("runs", "metric", "direction"))
    metric, direction = _objective(objective, data.task)
    spec = JobSpec(name=top.string("name", path.stem), path=str(path), data=data,
                   model=model, training=training, search=search,
                   configurations=configurations,
                   root_seed=root, levels=levels, objective_metric=metric, objective_direction=direction,
                   objective_runs=objective.integer("runs", 1, low=1),
                   determinism=_determinism(top.section("determinism", ("ops", "intra_op_threads",
                                                                        "inter_op_threads"))),
                   dispatch=_dispatch(top.section("dispatch", ("workers_per_gpu", "cpu_workers", "max_retries",
                                                               "batch_units"))),
                   max_trainings=top.section("limits", ("max_trainings",)).integer(
                       "max_trainings", DEFAULT_MAX_TRAININGS, low=1),
                   raw=dict(doc.data))
    _check_size(spec, doc)
    _warn_random_search(spec)
    return spec


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read job file: {exc.strerror}", file=str(path)) from None


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
        intra_op_threads=det.integer("intra_op_threads", None, low=1, allow_none=True),
        inter_op_threads=det.integer("inter_op_threads", None, low=1, allow_none=True))


def _dispatch(disp: Section) -> DispatchSpec:
    return DispatchSpec(workers_per_gpu=disp.integer("workers_per_gpu", 1, low=1),
                        cpu_workers=disp.integer("cpu_workers", None, low=1, allow_none=True),
                        max_retries=disp.integer("max_retries", 2, low=0),
                        batch_units=disp.integer("batch_units", 16, low=1))


def _warn_random_search(spec: JobSpec) -> None:
    s = spec.search
    if s is not None and s.algorithm == "tpe" and s.max_evals <= s.startup_trials:
        warnings.warn(f"{spec.path}: search.max_evals = {s.max_evals} does not exceed the "
                      f"{s.startup_trials} random startup trials of TPE: every chain is a random "
                      f"search", stacklevel=3)


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
    fraction = dict(check=lambda v: 0 < v < 1, expect="a fraction between 0 and 1 (exclusive)")
    return DataSpec(
        source=source, path=sec.string("path", None, allow_none=True),
        test_fraction=splits.number("test", 0.25, **fraction),
        max_train=splits.integer("max_train", None, low=10, allow_none=True),
        max_test=splits.integer("max_test", None, low=10, allow_none=True),
        name=sec.choice("name", KERAS_DATASETS) if source == "keras" else None,
        validation=splits.number("validation", **fraction) if splits.has("validation") else None,
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
    builder = sec.choice("builder", tuple(sorted(BUILDERS)))
    info = BUILDERS[builder]
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
            or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args)):
        raise sec.err(name, f"{kind} expects a list of {n} numbers")
    if kind == "normal":
        if args[1] <= 0:
            raise sec.err(name, f"normal expects sigma > 0, got {args[1]}")
    elif args[0] >= args[1]:
        raise sec.err(name, f"{kind} expects low < high, got low={args[0]}, high={args[1]}")
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
    algorithm = sec.choice("algorithm", ALGORITHMS, "tpe")
    chains = sec.section("chains", ("init", "order"))
    reeval = sec.section("reevaluate", ("init", "order"))
    return SearchSpec(algorithm=algorithm, max_evals=sec.integer("max_evals", 30, low=1),
                      startup_trials=sec.integer("startup_trials", 20, low=1), space=space,
                      chains_init=chains.integer("init", 1, low=1),
                      chains_order=chains.integer("order", 1, low=1),
                      reevaluate_init=reeval.integer("init", 2, low=1),
                      reevaluate_order=reeval.integer("order", 2, low=1))


def _seeds(sec: Section) -> tuple[int, dict[str, tuple[int, ...]]]:
    root = sec.integer("root", low=0)
    levels: dict[str, tuple[int, ...]] = {}
    for src in SEED_SOURCES:
        required = src in ("init", "order", "bo", "repeat")
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
            levels[src] = tuple(range(sec.integer(src, v, low=1)))
    return root, levels


def _configurations(sec: Section, search: SearchSpec) -> tuple[dict[str, Any], ...]:
    v = sec.raw("configurations", [])
    if not isinstance(v, list):
        raise sec.err("configurations", "expected a list of mappings of search dimension values")
    out = []
    names = tuple(d.name for d in search.space)
    for i, c in enumerate(v):
        item = Section(sec.doc, sec.keypath + ("configurations", str(i)), c, names, required=names)
        cfg = {}
        for d in search.space:
            x = item.raw(d.name)
            if d.kind == "choice":
                if x not in d.args:
                    raise item.err(d.name, f"expected one of {list(d.args)}, got {x!r}")
            elif isinstance(x, bool) or not isinstance(x, (int, float)):
                raise item.err(d.name, f"expected a number, got {x!r}")
            cfg[d.name] = cast_value(d, x)
        out.append(cfg)
    return tuple(out)


def _check_size(spec: JobSpec, doc: Doc) -> None:
    n = spec.trainings()
    if n > spec.max_trainings:
        raise doc.error(("limits", "max_trainings"),
                        f"the matrix needs {n} trainings, over the limit of {spec.max_trainings}; "
                        f"shrink the seed counts or raise limits.max_trainings")
