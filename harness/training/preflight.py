"""The driver's check before any worker starts (run in a child process: dispatch/check.py): the
data loads and is well formed (`data.check`, which also gives the data's identity), and a model
the harness did not write (a user's builder, the built-in conv) builds for the first
configuration, is a keras.Model, takes the data's examples, has what it needs to train (its own
compile settings, or the job's optimizer and learning rate) and reports the objective's metric.
Every failure is one UserError line, before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.errors import UserError, Where
from harness.job.spec import METRICS, SOURCES, TRAINING_FIELDS, JobSpec
from harness.job.usercode import import_function
from harness.training import data
from harness.training.engines.base import fit_targets
from harness.training.models import builder_info
from harness.training.trainer import model_args


def check(spec: JobSpec, calling: Callable[[str, str], None] = lambda what, key: None) -> dict[str, Any]:
    """Raise UserError on data or a model that a worker could not train; else return the data's
    identity (`data.identity`). `calling(what, key)` is told before a user's function runs (its
    module imported, and with it the backend started, before)."""
    if spec.data.source not in SOURCES:
        import_function(spec.data.source, spec.data.search_path, Where(file=spec.path, key="data.source"),
                        what="data function")
        calling(f"data function {spec.data.source}", "data.source")
    identity, ds = data.check(spec.data, spec.path)
    if spec.model.builder == "dense" and spec.objective_metric in METRICS:
        return identity  # the harness's own dense model: nothing to build here
    info = builder_info(spec.model.builder, spec.model.search_path, spec.path)
    calling(f"model builder {spec.model.builder}", "model.builder")
    config = dict(spec.configurations[0]) if spec.configurations else {}
    args = model_args(spec, info, config)
    where = Where(file=spec.path, key="model.builder")
    assert info.build is not None
    try:
        model = info.build(ds.x_train.shape[1:], ds.n_classes, 0, 0, **args).model
    except Exception as exc:  # the user's code: any error is theirs, one line
        raise UserError(f"model builder {spec.model.builder} failed: {type(exc).__name__}: {exc}", **where) from None
    _check_outputs(spec, model, ds, where)
    compiled = bool(getattr(model, "compiled", False))
    if compiled:
        _check_loss(spec, model, ds, where)
    searched = set(spec.dimensions)
    missing = [f for f in TRAINING_FIELDS if f not in spec.training.fixed and f not in searched]
    if not compiled and missing:
        raise UserError(f"model builder {spec.model.builder} leaves its model uncompiled, so the harness "
                        f"compiles it: set training.{' and training.'.join(missing)}",
                        file=spec.path, key="training")
    if spec.objective_metric not in METRICS:
        _check_reported(spec, model, ds, compiled)
    return identity


def _check_outputs(spec: JobSpec, model: Any, ds: data.Dataset, where: Where) -> None:
    """One forward pass on two training examples; the output's width must fit the task."""
    try:
        out = model(ds.x_train[:2], training=False)
    except Exception as exc:
        raise UserError(f"the model of {spec.model.builder} cannot take the data's examples of shape "
                        f"{ds.x_train.shape[1:]}: {type(exc).__name__}: {str(exc).splitlines()[0]}", **where) from None
    width = int(out.shape[-1]) if len(out.shape) > 1 else 1
    if ds.n_classes and width != ds.n_classes and not (width == 1 and ds.n_classes == 2):
        raise UserError(f"the model of {spec.model.builder} has {width} outputs; the data has {ds.n_classes} "
                        f"classes (labels 0..{ds.n_classes - 1})", **where)
    target = 1 if ds.y_train.ndim == 1 else ds.y_train.shape[1]
    if not ds.n_classes and width != target:
        raise UserError(f"the model of {spec.model.builder} has {width} outputs; the regression target has "
                        f"{target}", **where)


def _check_loss(spec: JobSpec, model: Any, ds: data.Dataset, where: Where) -> None:
    """The model's own loss on two examples, their targets as the harness feeds them (class ids;
    one-hot rows for a categorical loss): one line naming the loss and both shapes if it fails."""
    targets = fit_targets(model, ds)
    try:
        model.evaluate(targets.x_train[:2], targets.y_train[:2], verbose=0)
    except Exception as exc:
        out = model(ds.x_train[:2], training=False)
        raise UserError(f"the loss {getattr(model, 'loss', None)!r} the model of {spec.model.builder} compiles "
                        f"cannot take its outputs of shape {tuple(out.shape)} with targets of shape "
                        f"{targets.y_train[:2].shape}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                        **where) from None


def _check_reported(spec: JobSpec, model: Any, ds: data.Dataset, compiled: bool) -> None:
    """objective.metric, when not one the harness computes, must be one the compiled model reports."""
    where = Where(file=spec.path, key="objective.metric")
    if not compiled:
        raise UserError(f"metric {spec.objective_metric!r} is neither computed by the harness "
                        f"({', '.join(METRICS)}) nor reported by the model (its builder does not compile it)",
                        **where)
    targets = fit_targets(model, ds)
    reported = model.evaluate(targets.x_train[:2], targets.y_train[:2], verbose=0, return_dict=True)
    if spec.objective_metric not in reported:
        raise UserError(f"metric {spec.objective_metric!r} is not reported by the compiled model (it reports "
                        f"{', '.join(sorted(reported))}) nor computed by the harness ({', '.join(METRICS)})",
                        **where)
