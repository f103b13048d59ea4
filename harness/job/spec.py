"""The validated job: frozen dataclasses for every section of a job file, its canonical form and
hash, and the arithmetic on its fields (how many trainings a unit and the whole job need).

`harness.job.load` turns a YAML file into a `JobSpec`; nothing here reads files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from math import prod
from typing import Any

from harness.job.seeds import EVAL_SOURCES

DISTRIBUTIONS: dict[str, int] = {  # hyperopt name -> number of arguments
    "choice": 1, "uniform": 2, "quniform": 3, "loguniform": 2, "qloguniform": 3,
    "randint": 2, "normal": 2,
}
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = ("sparse_categorical_crossentropy", "mse", "mae", "huber")  # for a model its builder leaves uncompiled
ENGINES = ("fit", "exact", "vectorized")  # see harness/training/engines/
SOURCES = ("digits", "mnist", "keras", "npz", "csv")  # or a "package.module:function" returning arrays
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
TASKS = ("classification", "regression")
METRICS = ("accuracy", "loss", "mse", "mae")  # computed by the harness; any other: reported by the model
DIRECTIONS = ("max", "min")
DESIGNS = ("crossed", "alone")  # evaluate.design: every seed level combination, or each source varied alone
TRAINING_FIELDS = ("optimizer", "learning_rate", "batch_size", "epochs")
DEFAULT_MAX_TRAININGS = 100_000
POLICIES = ("none", "global", "average3", "harness")  # the article's Examples 1-3, and every source seeded
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "selu", "swish", "linear")


@dataclass(frozen=True)
class BuilderParams:
    """What a job file may set for a built-in model builder: its parameters (name -> type),
    defaults and allowed string values (`training.models` builds the models)."""

    params: dict[str, type]
    defaults: dict[str, Any]
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


BUILTIN_BUILDERS: dict[str, BuilderParams] = {
    "dense": BuilderParams(params={"units": int, "layers": int, "activation": str, "dropout": float},
                           defaults={"units": 64, "layers": 1, "activation": "relu", "dropout": 0.0},
                           choices={"activation": ACTIVATIONS}),
    "conv": BuilderParams(params={"blocks": int, "filters": int, "kernel_size": int, "pooling": str,
                                  "dropout": float, "dense_units": int, "activation": str},
                          defaults={"blocks": 2, "filters": 16, "kernel_size": 3, "pooling": "max",
                                    "dropout": 0.0, "dense_units": 64, "activation": "relu"},
                          choices={"activation": ACTIVATIONS, "pooling": ("max", "average")}),
}


@dataclass(frozen=True)
class Dimension:
    """One search dimension in hyperopt's terms, e.g. quniform(32, 128, 16)."""

    name: str
    kind: str
    args: tuple[Any, ...]

    @property
    def integral(self) -> bool:
        """True when every value it yields is a whole number (cast to int for Keras): randint, and
        quniform / qloguniform with a whole-number q (hyperopt rounds to a multiple of q, whatever
        the bounds; qloguniform's bounds are logarithms)."""
        if self.kind == "randint":
            return True
        if self.kind in ("quniform", "qloguniform"):
            return float(self.args[2]).is_integer()
        return False


@dataclass(frozen=True)
class DataSpec:
    source: str               # one of SOURCES, or "package.module:function"
    path: str | None
    test_fraction: float
    max_train: int | None
    max_test: int | None
    name: str | None = None               # source keras: one of KERAS_DATASETS
    validation: float | None = None       # fraction of train carved off by the split stream
    target: str | None = None             # source csv: the target column
    task: str = "classification"          # or regression
    classes: int | None = None            # labels must lie in 0..classes-1 (default: the data's max + 1)
    search_path: tuple[str, ...] = ()     # where a "module:function" source is imported from (not hashed)


@dataclass(frozen=True)
class ModelSpec:
    builder: str              # a built-in name or "package.module:function"
    args: dict[str, Any]
    source_digest: str | None = None      # a user builder's module file (sha256): editing it moves the store
    search_path: tuple[str, ...] = ()     # where a user builder is imported from (not hashed)


# Optimisers whose library's own random-startup default is not the 20 every job had before each
# library kept its own (`algorithms.startup_count`): their chains changed, so their jobs' hashes do.
OWN_STARTUP_DEFAULT = ("keras_tuner.bayesian", "optuna.tpe", "skopt.gp")

# Fields added after stores existed: left out of the canonical form at their defaults, so an
# existing job keeps its spec hash and unit ids.
_LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"name": None, "validation": None, "target": None, "task": "classification", "classes": None},
    "model": {"source_digest": None},
    "": {"objective_metric": "accuracy", "objective_direction": "max", "design": "crossed"},
}


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
    startup_trials: int | None  # None: each library's own default (`algorithms.startup_count`)
    space: tuple[Dimension, ...]
    chains_init: int          # chains run under the first N init levels
    chains_order: int         # ... and the first N order levels
    reevaluate_init: int      # fresh init levels each chosen configuration is re-trained on
    reevaluate_order: int
    algorithms: tuple[str, ...] = ()   # full names when the optimiser is a factor (search.algorithms)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per algorithm's full name


@dataclass(frozen=True)
class DeterminismSpec:
    modes: tuple[str, ...]    # ("on",), ("off",) or ("on", "off")
    intra_op_threads: int | None
    inter_op_threads: int | None


DEFAULT_LEASE = 4 * 3600.0  # a claim from another host older than this is reclaimed


@dataclass(frozen=True)
class DispatchSpec:
    workers_per_gpu: int
    cpu_workers: int | None
    max_retries: int
    batch_units: int
    unit_timeout: float | None = None  # seconds a unit may train before its worker is killed (off: None)
    lease: float = DEFAULT_LEASE       # seconds after which another host's claim counts as abandoned


@dataclass(frozen=True)
class SeedingSpec:
    """The seeding-policy factor: each policy's search run `runs` times, each run in a fresh process,
    then the fixed configuration trained once under the same policy."""

    policies: tuple[str, ...]
    runs: int
    fixed: dict[str, Any]

    def trainings(self, policy: str, max_evals: int) -> int:
        """Trainings of one run: the trials and the fixed configuration, each 3 times under average3."""
        return (max_evals + 1) * (3 if policy == "average3" else 1)


@dataclass(frozen=True)
class JobSpec:
    """A validated job file. `levels` maps each seed source to its level indices."""

    name: str
    path: str
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec
    search: SearchSpec | None  # None: a job that measures fixed configurations only
    configurations: tuple[dict[str, Any], ...]
    root_seed: int
    levels: dict[str, tuple[int, ...]]
    objective_runs: int
    determinism: DeterminismSpec
    dispatch: DispatchSpec
    max_trainings: int = DEFAULT_MAX_TRAININGS
    runs_levels: tuple[int, ...] = ()  # objective.runs as a factor: each averaging count (else objective_runs)
    seeding: SeedingSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    objective_metric: str = "accuracy"   # what a chain optimises and the report decomposes
    objective_direction: str = "max"
    design: str = "crossed"              # evaluate.design (DESIGNS): how evaluation units cross the seeds

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The names a configuration sets: the search space's, else the fixed configurations' keys."""
        if self.search is not None:
            return tuple(d.name for d in self.search.space)
        return tuple(sorted({k for c in self.configurations for k in c}))

    def canonical(self) -> dict[str, Any]:
        """The fields that change results (dispatch and limits excluded), JSON-ready. The store's
        format version is not among them: a new format migrates a store in place (`harness
        migrate`) instead of moving it to another directory."""
        d = dataclasses.asdict(self)
        for k in ("name", "path", "dispatch", "max_trainings", "raw"):
            d.pop(k)
        if d["seeding"] is None:  # jobs without the policy factor keep the hash they had
            d.pop("seeding")
        _drop_defaults(d)
        d["data"].pop("search_path")
        d["model"].pop("search_path")
        search = d.get("search")
        if search is not None and search["startup_trials"] is None and not any(
                a in OWN_STARTUP_DEFAULT for a in (search["algorithm"], *search.get("algorithms", ()))):
            search["startup_trials"] = 20  # every library's count was 20 before each kept its own: same hash
        for section, defaults in _LATER_DEFAULTS.items():
            part = d[section] if section else d
            for key, default in defaults.items():
                if part[key] == default:
                    part.pop(key)
        return d

    def digest(self) -> str:
        """Stable short hash of `canonical()`: names the store directory."""
        return stable_hash(self.canonical())

    @property
    def searched(self) -> SearchSpec:
        """The search section, where the caller knows the job has one (chains were planned)."""
        if self.search is None:
            raise AssertionError(f"job {self.name} has no search section")
        return self.search

    def varied(self) -> tuple[str, ...]:
        """The evaluation's seed sources with more than one level."""
        return tuple(s for s in EVAL_SOURCES if len(self.levels.get(s, ())) > 1)

    def alone_cells(self) -> list[dict[str, int]]:
        """Design `alone`: the seed levels of each arm's trainings, without repeats. Arm s holds
        every source at its first level but s, which takes each of its levels; arm "all" (where
        more than one source varies) gives training j level j of every varied source."""
        base = {s: self.levels[s][0] for s in EVAL_SOURCES if s in self.levels}
        varied = self.varied()
        n = len(self.levels[varied[0]]) if varied else 1
        arms = [(s,) for s in varied] + ([varied] if len(varied) > 1 else [])
        cells: dict[str, dict[str, int]] = {stable_hash(base): base}
        for arm in arms:
            for j in range(n):
                cell = {**base, **{s: self.levels[s][j] for s in arm}}
                cells.setdefault(stable_hash(cell), cell)
        return list(cells.values())

    def eval_units(self) -> int:
        """Evaluation units: configurations x seed cells (crossed levels, or the `alone` arms) x
        determinism modes."""
        if self.design == "alone":
            per_config = len(self.alone_cells())
        else:
            per_config = prod(len(self.levels[s]) for s in EVAL_SOURCES if s in self.levels)
        return len(self.configurations) * per_config * len(self.determinism.modes)

    def runs_factor(self) -> tuple[int, ...]:
        """The averaging counts the chains run under (one unless objective.runs is a list)."""
        return self.runs_levels or (self.objective_runs,)

    def study_units(self) -> int:
        """Study units: one chain per optimiser x averaging count x bo level x the chains' init
        and order levels."""
        if self.search is None:
            return 0
        arms = max(len(self.search.algorithms), 1) * len(self.runs_factor())
        return arms * len(self.levels["bo"]) * self.search.chains_init * self.search.chains_order

    def policy_trainings(self) -> int:
        """Trainings of every seeding-policy run."""
        if self.seeding is None or self.search is None:
            return 0
        return self.seeding.runs * sum(self.seeding.trainings(p, self.search.max_evals) for p in self.seeding.policies)

    def trainings(self) -> int:
        """Trainings the whole job needs, in closed form (the job's size limit is checked before any
        plan is built; `harness.units.planned_trainings` counts the same from the plan)."""
        s = self.search
        reeval = 0 if s is None else s.reevaluate_init * s.reevaluate_order
        per_arm = self.study_units() // len(self.runs_factor())
        chains = sum(per_arm * ((0 if s is None else s.max_evals) * r + reeval) for r in self.runs_factor())
        return self.eval_units() + chains + self.policy_trainings()


def _drop_defaults(canonical: dict[str, Any]) -> None:
    """Fields added with the optimiser factor (issue 11) leave the canonical form when unused, so
    jobs written before keep their digest and unit ids."""
    for key, empty in (("algorithms", ()), ("options", {})):
        if canonical["search"] is not None and canonical["search"].get(key) in (empty, list(empty)):
            canonical["search"].pop(key)
    if not canonical["runs_levels"]:
        canonical.pop("runs_levels")


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys); the basis of spec and unit ids."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def cast_value(dim: Dimension, value: Any) -> Any:
    """A search value as the trainer wants it (whole-number q-dims become int; a choice is the
    job's own value, so a Boolean a library returns as 1 is True again)."""
    if dim.integral:
        return int(round(float(value)))
    if dim.kind == "choice":
        same = [a for a in dim.args if a == value]
        return next((a for a in same if type(a) is type(value)), same[0] if same else value)
    if dim.kind == "loguniform":  # within the bounds as written: exp(log(0.01)) is 0.010000000000000004
        low, high = (float(f"{math.exp(a):.15g}") for a in dim.args[:2])
        return min(max(float(value), low), high)
    return float(value)
