"""YAML job file -> validated, frozen JobSpec.

The whole file is checked before anything runs: unknown keys are refused with the valid
ones listed, types and ranges are checked, and every message names the file, the key and
the YAML line. Only `yaml.safe_load`-level constructs are accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.models import BUILDERS

SPEC_FORMAT = 1
JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"

DISTRIBUTIONS: dict[str, int] = {  # hyperopt name -> number of arguments
    "choice": 1, "uniform": 2, "quniform": 3, "loguniform": 2, "qloguniform": 3,
    "randint": 2, "normal": 2,
}
ALGORITHMS = ("tpe", "rand", "anneal")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = ("sparse_categorical_crossentropy",)
ENGINES = ("fit", "exact", "vectorized")  # see harness/engines.py
SOURCES = ("digits", "mnist")
SEED_SOURCES = ("init", "order", "bo", "repeat", "split", "noise")
TRAINING_FIELDS = ("optimizer", "learning_rate", "batch_size", "epochs")
DEFAULT_MAX_TRAININGS = 100_000


@dataclass(frozen=True)
class Dimension:
    """One search dimension in hyperopt's terms, e.g. quniform(32, 128, 16)."""

    name: str
    kind: str
    args: tuple[Any, ...]

    @property
    def integral(self) -> bool:
        """True when every value it yields is a whole number (cast to int for Keras)."""
        if self.kind == "randint":
            return True
        if self.kind in ("quniform", "qloguniform"):
            return all(float(a).is_integer() for a in self.args)
        return False


@dataclass(frozen=True)
class DataSpec:
    source: str
    path: str | None
    test_fraction: float
    max_train: int | None
    max_test: int | None


@dataclass(frozen=True)
class ModelSpec:
    builder: str
    args: dict[str, Any]


@dataclass(frozen=True)
class TrainingSpec:
    """Fixed training values; a field that is a search dimension is absent from `fixed`."""

    fixed: dict[str, Any]
    loss: str
    engine: str
    xla: bool = False         # compile engine exact / vectorized with XLA (other bits than without)


@dataclass(frozen=True)
class SearchSpec:
    algorithm: str
    max_evals: int
    startup_trials: int
    space: tuple[Dimension, ...]
    chains_init: int          # chains run under the first N init levels
    chains_order: int         # ... and the first N order levels
    reevaluate_init: int      # fresh init levels each chosen configuration is re-trained on
    reevaluate_order: int


@dataclass(frozen=True)
class DeterminismSpec:
    modes: tuple[str, ...]    # ("on",), ("off",) or ("on", "off")
    intra_op_threads: int | None
    inter_op_threads: int | None


@dataclass(frozen=True)
class DispatchSpec:
    workers_per_gpu: int
    cpu_workers: int | None
    max_retries: int
    batch_units: int


@dataclass(frozen=True)
class JobSpec:
    """A validated job file. `levels` maps each seed source to its level indices."""

    name: str
    path: str
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec
    search: SearchSpec
    configurations: tuple[dict[str, Any], ...]
    root_seed: int
    levels: dict[str, tuple[int, ...]]
    objective_runs: int
    determinism: DeterminismSpec
    dispatch: DispatchSpec
    max_trainings: int = DEFAULT_MAX_TRAININGS
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def canonical(self) -> dict[str, Any]:
        """The fields that change results (dispatch and limits excluded), JSON-ready."""
        d = dataclasses.asdict(self)
        for k in ("name", "path", "dispatch", "max_trainings", "raw"):
            d.pop(k)
        d["format"] = SPEC_FORMAT
        return d

    def digest(self) -> str:
        """Stable short hash of `canonical()`: names the store directory."""
        return stable_hash(self.canonical())

    def dimension(self, name: str) -> Dimension:
        return next(d for d in self.search.space if d.name == name)


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys); the basis of spec and unit ids."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ---------------------------------------------------------------- YAML with line numbers

class _Doc:
    """Raw YAML data plus the line of every key path, for messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines: dict[tuple[str, ...], int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"invalid YAML: {problem}", file=path, line=line) from None
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, prefix: tuple[str, ...]) -> None:
        self.lines.setdefault(prefix, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = prefix + (str(k.value),)
                self.lines[key] = k.start_mark.line + 1
                self._index(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._index(v, prefix + (str(i),))

    def error(self, keypath: tuple[str, ...], message: str) -> UserError:
        line = None
        for n in range(len(keypath), -1, -1):
            if keypath[:n] in self.lines:
                line = self.lines[keypath[:n]]
                break
        return UserError(message, file=self.path, key=".".join(keypath) or None, line=line)


class _Section:
    """Typed access to one mapping of the job file; refuses unknown keys."""

    def __init__(self, doc: _Doc, keypath: tuple[str, ...], value: Any, allowed: tuple[str, ...],
                 required: tuple[str, ...] = ()) -> None:
        self.doc, self.keypath = doc, keypath
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise doc.error(keypath, f"expected a mapping with keys {', '.join(allowed)}, "
                                     f"got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                raise doc.error(keypath + (str(k),),
                                f"unknown key; valid keys here: {', '.join(allowed)}")
        for k in required:
            if k not in value:
                raise doc.error(keypath, f"missing required key '{k}'")
        self.value: Mapping[str, Any] = value

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, default: Any = None) -> Any:
        return self.value.get(key, default)

    def err(self, key: str, message: str) -> UserError:
        return self.doc.error(self.keypath + (key,), message)

    def section(self, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> _Section:
        return _Section(self.doc, self.keypath + (key,), self.value.get(key), allowed, required)

    def integer(self, key: str, default: Any = ..., low: int | None = None,
                allow_none: bool = False) -> Any:
        v = self._get(key, default)
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"expected an integer, got {v!r}")
        if low is not None and v < low:
            raise self.err(key, f"expected an integer >= {low}, got {v}")
        return v

    def number(self, key: str, default: Any = ..., check: Callable[[float], bool] | None = None,
               expect: str = "a number") -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.err(key, f"expected {expect}, got {v!r}")
        if check is not None and not check(float(v)):
            raise self.err(key, f"expected {expect}, got {v!r}")
        return float(v)

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        v = self._get(key, default)
        if v not in options:
            raise self.err(key, f"expected one of {', '.join(options)}, got {v!r}")
        return str(v)

    def string(self, key: str, default: Any = ..., allow_none: bool = False) -> Any:
        v = self._get(key, default)
        if v is None and allow_none:
            return None
        if not isinstance(v, str) or not v:
            raise self.err(key, f"expected a non-empty string, got {v!r}")
        return v

    def _get(self, key: str, default: Any) -> Any:
        if key in self.value:
            return self.value[key]
        if default is ...:
            raise self.doc.error(self.keypath, f"missing required key '{key}'")
        return default


# ---------------------------------------------------------------- the sections

TOP_KEYS = ("name", "data", "model", "training", "search", "evaluate", "seeds", "objective",
            "determinism", "dispatch", "limits")


def resolve_job_path(job: str) -> Path:
    """JOB is a YAML path or a name under jobs/."""
    p = Path(job)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError("job file not found", file=str(p))
        return p
    for cand in (Path("jobs") / f"{job}.yaml", JOBS_DIR / f"{job}.yaml"):
        if cand.is_file():
            return cand
    names = sorted(q.stem for q in JOBS_DIR.glob("*.yaml"))
    raise UserError(f"no job file '{job}' (a path to a .yaml file, or one of: {', '.join(names)})")


def load_job(job: str) -> JobSpec:
    """Read and validate a job file; raise UserError on the first mistake."""
    path = resolve_job_path(job)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read job file: {exc.strerror}", file=str(path)) from None
    doc = _Doc(str(path), text)
    top = _Section(doc, (), doc.data, TOP_KEYS, required=("data", "model", "search", "seeds"))
    name = top.string("name", path.stem)

    data = _data(top.section("data", ("source", "path", "splits"), required=("source",)))
    builder, model_args, model_space_names = _model(top)
    search = _search(top.section("search", ("algorithm", "max_evals", "startup_trials", "space",
                                            "chains", "reevaluate"), required=("space",)))
    space_names = {d.name for d in search.space}
    training = _training(top.section("training", TRAINING_FIELDS + ("loss", "engine", "xla")), space_names)
    for d in search.space:
        if d.name not in TRAINING_FIELDS and d.name not in model_space_names:
            raise doc.error(("search", "space", d.name),
                            f"not a training field ({', '.join(TRAINING_FIELDS)}) nor an argument of "
                            f"model builder '{builder}' ({', '.join(sorted(model_space_names))})")
        if d.name in model_args:
            raise doc.error(("search", "space", d.name),
                            "also fixed in model.args; keep it in one place")
    missing = [f for f in TRAINING_FIELDS if f not in training.fixed and f not in space_names]
    if missing:
        raise doc.error(("training",), f"missing {', '.join(missing)}: fix it here or search it "
                                       f"in search.space")
    root, levels = _seeds(top.section("seeds", ("root",) + SEED_SOURCES, required=("root",)))
    for key, n, src in (("init", search.chains_init, "init"), ("order", search.chains_order, "order")):
        if n > len(levels[src]):
            raise doc.error(("search", "chains", key),
                            f"expected at most seeds.{src} = {len(levels[src])} levels, got {n}")
    configurations = _configurations(top.section("evaluate", ("configurations",)), search)
    obj = top.section("objective", ("runs",))
    objective_runs = obj.integer("runs", 1, low=1)
    det = top.section("determinism", ("ops", "intra_op_threads", "inter_op_threads"))
    ops = det.raw("ops", "on")
    ops = {True: "on", False: "off"}.get(ops, ops)  # YAML 1.1 reads bare on/off as booleans
    if ops not in ("on", "off", "both"):
        raise det.err("ops", f"expected one of on, off, both, got {ops!r}")
    determinism = DeterminismSpec(
        modes={"on": ("on",), "off": ("off",), "both": ("on", "off")}[ops],
        intra_op_threads=det.integer("intra_op_threads", None, low=1, allow_none=True),
        inter_op_threads=det.integer("inter_op_threads", None, low=1, allow_none=True))
    disp = top.section("dispatch", ("workers_per_gpu", "cpu_workers", "max_retries", "batch_units"))
    dispatch = DispatchSpec(workers_per_gpu=disp.integer("workers_per_gpu", 1, low=1),
                            cpu_workers=disp.integer("cpu_workers", None, low=1, allow_none=True),
                            max_retries=disp.integer("max_retries", 2, low=0),
                            batch_units=disp.integer("batch_units", 16, low=1))
    limits = top.section("limits", ("max_trainings",))
    spec = JobSpec(name=name, path=str(path), data=data,
                   model=ModelSpec(builder=builder, args=model_args), training=training,
                   search=search, configurations=configurations, root_seed=root, levels=levels,
                   objective_runs=objective_runs, determinism=determinism, dispatch=dispatch,
                   max_trainings=limits.integer("max_trainings", DEFAULT_MAX_TRAININGS, low=1),
                   raw=dict(doc.data))
    _check_size(spec, doc)
    if search.algorithm == "tpe" and search.max_evals <= search.startup_trials:
        import warnings
        warnings.warn(f"{path}: search.max_evals = {search.max_evals} does not exceed the "
                      f"{search.startup_trials} random startup trials of TPE: every chain is a random "
                      f"search", stacklevel=2)
    return spec


def _data(sec: _Section) -> DataSpec:
    source = sec.choice("source", SOURCES)
    splits = sec.section("splits", ("test", "max_train", "max_test"))
    if source == "mnist" and splits.has("test"):
        raise splits.err("test", "mnist has a fixed test split; use max_test to shorten it")
    return DataSpec(
        source=source, path=sec.string("path", None, allow_none=True),
        test_fraction=splits.number("test", 0.25, check=lambda v: 0 < v < 1,
                                    expect="a fraction between 0 and 1 (exclusive)"),
        max_train=splits.integer("max_train", None, low=10, allow_none=True),
        max_test=splits.integer("max_test", None, low=10, allow_none=True))


def _model(top: _Section) -> tuple[str, dict[str, Any], set[str]]:
    sec = top.section("model", ("builder", "args"), required=("builder",))
    builder = sec.choice("builder", tuple(sorted(BUILDERS)))
    info = BUILDERS[builder]
    args_sec = sec.section("args", tuple(info.params))
    args: dict[str, Any] = {}
    for key, typ in info.params.items():
        if not args_sec.has(key):
            continue
        v = args_sec.raw(key)
        if typ is int:
            args[key] = args_sec.integer(key, low=1)
        elif typ is float:
            args[key] = args_sec.number(key, check=lambda x: 0 <= x < 1, expect="a number in [0, 1)")
        else:
            args[key] = args_sec.choice(key, info.choices[key]) if key in info.choices else v
    return builder, args, set(info.params)


def _training(sec: _Section, searched: set[str]) -> TrainingSpec:
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
    return TrainingSpec(fixed=fixed, loss=sec.choice("loss", LOSSES, LOSSES[0]), engine=engine, xla=xla)


def _dimension(sec: _Section, name: str) -> Dimension:
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


def _search(sec: _Section) -> SearchSpec:
    space_map = sec.raw("space")
    if not isinstance(space_map, Mapping) or not space_map:
        raise sec.err("space", "expected a mapping of at least one search dimension, "
                               "e.g. {units: {quniform: [32, 128, 16]}}")
    # its keys are checked against the training fields and model arguments by load_job
    space_sec = _Section(sec.doc, sec.keypath + ("space",), space_map, tuple(str(k) for k in space_map))
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


def _seeds(sec: _Section) -> tuple[int, dict[str, tuple[int, ...]]]:
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
            levels[src] = tuple(range(sec.integer(src, low=1)))
    return root, levels


def cast_value(dim: Dimension, value: Any) -> Any:
    """A hyperopt value as the trainer wants it (whole-number q-dims become int)."""
    if dim.integral:
        return int(round(float(value)))
    if dim.kind == "choice":
        return value
    return float(value)


def _configurations(sec: _Section, search: SearchSpec) -> tuple[dict[str, Any], ...]:
    v = sec.raw("configurations", [])
    if not isinstance(v, list):
        raise sec.err("configurations", "expected a list of mappings of search dimension values")
    out = []
    names = tuple(d.name for d in search.space)
    for i, c in enumerate(v):
        item = _Section(sec.doc, sec.keypath + ("configurations", str(i)), c, names, required=names)
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


def _check_size(spec: JobSpec, doc: _Doc) -> None:
    from harness.matrix import count_trainings
    n = count_trainings(spec)
    if n > spec.max_trainings:
        raise doc.error(("limits", "max_trainings"),
                        f"the matrix needs {n} trainings, over the limit of {spec.max_trainings}; "
                        f"shrink the seed counts or raise limits.max_trainings")
