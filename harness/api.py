"""The Python API for notebooks: `load`, `decompose`, `report`.

They are the functions the CLI's `export`, `decompose` and `report` verbs run on: `load` reads the
rows `harness export` writes (through the same CSV writer), `decompose` calls the same statistics
as `harness decompose`, `report` renders the same markdown as `harness report`. pandas is optional:
only `load` and `Decomposed.to_frame` need it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.job import JobSpec, load_job
from harness.reporting.sections import render
from harness.stats import Component, Decomposition, GroupedDecomposition
from harness.stats import decompose as _decompose
from harness.stats import decompose_groups as _decompose_groups
from harness.store.export import write_csv
from harness.store.store import Store


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise UserError("this needs pandas: pip install pandas (or the project's dev extra)") from None
    return pandas


def open_store(job: str, store: str | Path = "runs") -> tuple[JobSpec, Store]:
    """The job's spec and its store, which must hold results."""
    spec = load_job(str(job))
    st = Store(store, spec)
    if not st.shards.is_dir():
        raise UserError(f"no results for this job spec in {st.dir}; run `harness run {job}` first", file=spec.path)
    return spec, st


def load(job: str, store: str | Path = "runs") -> Any:
    """One row per training as a pandas DataFrame: the columns and values of `harness export`."""
    pd = _pandas()
    spec, st = open_store(job, store)
    buf = io.StringIO()
    write_csv(spec, st, buf)
    buf.seek(0)
    return pd.read_csv(buf)


@dataclass(frozen=True)
class Decomposed:
    """What `decompose` returns: one decomposition, or one per level of `group`."""

    result: Decomposition | GroupedDecomposition

    @property
    def components(self) -> tuple[Component, ...] | dict[str, tuple[Component, ...]]:
        """The components (residual last); per group label when grouped."""
        if isinstance(self.result, Decomposition):
            return self.result.components
        return {label: fit.components for label, fit in self.result.items()}

    def table(self) -> str:
        """The markdown `harness decompose` prints."""
        return self.result.to_markdown()

    def to_json_obj(self) -> dict[str, Any]:
        """The object `harness decompose --json` prints."""
        return self.result.to_json_obj()

    def to_frame(self) -> Any:
        """One row per component (and group): variance, std, share and the 95% interval."""
        pd = _pandas()
        fits = [("", self.result)] if isinstance(self.result, Decomposition) else list(self.result.items())
        rows = [{**({"group": label} if label else {}), "source": c.name, "variance": c.variance, "std": c.std,
                 "share": c.share, "ci_low": c.ci[0] if c.ci else None, "ci_high": c.ci[1] if c.ci else None,
                 "truncated": c.truncated} for label, fit in fits for c in fit.components]
        return pd.DataFrame(rows)


def _columns(data: Any, names: Sequence[str]) -> Mapping[str, object]:
    """Columns of a DataFrame, a mapping of arrays, or a CSV path (read as `harness decompose` reads it)."""
    if isinstance(data, (str, Path)):
        from harness.stats.csvfile import read_columns
        return read_columns(str(data), names[0], list(names[1:]))
    missing = [n for n in names if n not in data]
    if missing:
        raise UserError(f"no column {', '.join(map(repr, missing))}")
    return {n: data[n].to_numpy() if hasattr(data[n], "to_numpy") else data[n] for n in names}


def decompose(data: Any, value: str, factors: Sequence[str], *, nested: Sequence[str] = (),
              group: str | None = None, ci: str | None = None, **options: Any) -> Decomposed:
    """Variance components of `value` over the random `factors` (per level of `group`); `data` is a
    DataFrame (e.g. from `load`), a mapping of columns or a CSV path. `ci` and `options` go to the
    statistics as they go from `harness decompose`, with its defaults (GPQ intervals; draws, seed, ...)."""
    columns = _columns(data, [value, *factors, *([group] if group else [])])
    if ci is None:  # as `harness decompose` resolves --ci and --bootstrap
        ci = "gpq" if "bootstrap" not in options else "bootstrap" if options["bootstrap"] else "none"
    if group is None:
        return Decomposed(_decompose(columns, value, factors, nested=nested, ci=ci, **options))
    return Decomposed(_decompose_groups(columns, value, factors, group, nested=nested, ci=ci, **options))


def report(job: str, store: str | Path = "runs", out: str | Path | None = None) -> str:
    """The report's markdown; with `out`, also write `out/<job>.md` and its plots (as `harness report`)."""
    from harness.reporting.sections import write_report
    spec, st = open_store(job, store)
    if out is None:
        return render(spec, st, None)
    return write_report(spec, st, Path(out)).read_text()
