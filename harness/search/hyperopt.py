"""hyperopt behind the ask/tell protocol (harness/search/base.py).

`HyperoptSearch` reproduces `hyperopt.fmin(..., rstate=np.random.default_rng(seed))` step for
step: the same rstate draws, the same trial ids, the same `algo(new_ids, domain, trials, seed)`
calls, so a chain proposes what fmin would on the same objective values.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from harness.job.algorithms import algorithm, effective_options
from harness.job.spec import Dimension, SearchSpec, cast_value


def hyperopt_space(space: tuple[Dimension, ...]) -> dict[str, Any]:
    from hyperopt import hp
    make = {"choice": lambda n, a: hp.choice(n, list(a)), "uniform": hp.uniform,
            "quniform": hp.quniform, "loguniform": hp.loguniform, "qloguniform": hp.qloguniform,
            "randint": hp.randint, "normal": hp.normal}
    out = {}
    for d in space:
        f = make[d.kind]
        out[d.name] = f(d.name, d.args) if d.kind == "choice" else f(d.name, *d.args)
    return out


def hyperopt_algo(spec: SearchSpec, name: str | None = None) -> Any:
    """The suggest function fmin would be given for algorithm `name` (default: the job's) of this search."""
    from hyperopt import anneal, rand, tpe
    name = algorithm(name or spec.algorithm).name
    suggest = {"hyperopt.tpe": tpe.suggest, "hyperopt.rand": rand.suggest, "hyperopt.anneal": anneal.suggest}[name]
    options = effective_options(spec, name)
    return functools.partial(suggest, **options) if options else suggest


class HyperoptSearch:
    """One hyperopt chain driven from outside, seeded by the bo stream."""

    def __init__(self, spec: SearchSpec, name: str, seed: int) -> None:
        from hyperopt import Trials
        from hyperopt.base import Domain
        self.spec = spec
        self.space = hyperopt_space(spec.space)
        self.domain = Domain(lambda _: 0.0, self.space)
        self.trials = Trials()
        self.algo = hyperopt_algo(spec, name)
        # the bo seed itself (as before other libraries): fmin(rstate=np.random.default_rng(library_seed))
        self.library_seed = seed
        self.rstate = np.random.default_rng(seed)
        self._pending: dict[str, Any] | None = None

    def ask(self) -> dict[str, Any]:
        from hyperopt import space_eval
        assert self._pending is None, "tell() the previous configuration first"
        new_ids = self.trials.new_trial_ids(1)
        self.trials.refresh()
        docs = self.algo(new_ids, self.domain, self.trials, self.rstate.integers(2**31 - 1))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()
        self._pending = self.trials._dynamic_trials[-1]
        vals = {k: v[0] for k, v in self._pending["misc"]["vals"].items() if v}
        point = space_eval(self.space, vals)
        return {d.name: cast_value(d, point[d.name]) for d in self.spec.space}

    def tell(self, loss: float | None) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK
        from hyperopt.utils import coarse_utcnow
        trial = self._pending
        assert trial is not None, "ask() first"
        trial["result"] = {"status": STATUS_FAIL} if loss is None else {"loss": loss, "status": STATUS_OK}
        trial["state"] = JOB_STATE_DONE
        trial["book_time"] = trial["refresh_time"] = coarse_utcnow()
        self.trials.refresh()
        self._pending = None
