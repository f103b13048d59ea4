"""`harness decompose`: variance components of a column of any CSV file, as markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from harness.errors import UserError
from harness.stats.core import Codes, decompose, decompose_groups, sort_levels
from harness.stats.csvfile import read_columns

ROW_KIND = "kind"  # a harness export's column: eval, trial and reeval rows are different measurements


def decompose_csv(path: str, *, value: str, factors: Sequence[str], nested: Sequence[str] = (),
                  group: str | None = None, ci: str = "gpq", draws: int = 0, bootstrap: int = 0, seed: int = 0,
                  as_json: bool = False, where: Sequence[str] = ()) -> str:
    """Read `path`, keep the rows `where` selects ("COLUMN=VALUE", each), decompose `value` over
    `factors` (per level of `group`) with 95% intervals by `ci` (`draws` of them; `bootstrap=B` > 0:
    the bootstrap with B replicates), and format the result. A harness export that mixes row kinds
    (eval, trial, reeval) is refused unless `where` or `group` picks them apart.

    Every user mistake (file, column, value, design) is raised as a one-line UserError naming the file.
    """
    conditions = [_condition(w, path) for w in where]
    wanted = [*factors, *([group] if group else []), *(c for c, _ in conditions)]
    columns = read_columns(path, value, list(dict.fromkeys(wanted)))
    columns = _select(columns, conditions, path)
    _refuse_mixed_kinds(path, value, factors, group, conditions)
    try:
        if group is None:
            fit = decompose(columns, value, factors, nested=nested, ci=ci, draws=draws, bootstrap=bootstrap,
                            seed=seed)
            return json.dumps(fit.to_json_obj(), indent=1) if as_json else fit.to_markdown()
        grouped = decompose_groups(columns, value, factors, group, nested=nested, ci=ci, draws=draws,
                                   bootstrap=bootstrap, seed=seed)
        return json.dumps(grouped.to_json_obj(), indent=1) if as_json else grouped.to_markdown()
    except UserError as exc:
        raise UserError(str(exc), file=path) from None


def _condition(text: str, path: str) -> tuple[str, str]:
    column, sep, level = text.partition("=")
    if not sep or not column:
        raise UserError(f"--where {text!r}: expected COLUMN=VALUE (e.g. kind=eval)", file=path)
    return column, level


def _select(columns: dict[str, object], conditions: list[tuple[str, str]], path: str) -> dict[str, object]:
    """The rows whose every condition's column holds its value (all rows without conditions)."""
    if not conditions:
        return columns
    keep: np.ndarray | None = None
    for column, level in conditions:
        codes = columns[column]
        assert isinstance(codes, Codes)
        if level not in codes.levels:
            raise UserError(f"--where {column}={level}: no such value (the column holds "
                            f"{', '.join(codes.levels[:10])})", file=path)
        match = codes.codes == codes.levels.index(level)
        keep = match if keep is None else keep & match
    assert keep is not None
    out: dict[str, object] = {}
    for name, col in columns.items():
        if isinstance(col, Codes):
            used = np.unique(col.codes[keep])
            remap = np.full(len(col.levels), -1, np.int32)
            remap[used] = np.arange(len(used), dtype=np.int32)
            out[name] = sort_levels(remap[col.codes[keep]], [col.levels[i] for i in used])
        else:
            out[name] = np.asarray(col)[keep]
    return out


def _refuse_mixed_kinds(path: str, value: str, factors: Sequence[str], group: str | None,
                        conditions: list[tuple[str, str]]) -> None:
    """A harness export's eval, trial and re-evaluation rows are different measurements (a trial
    row's seeds are its chain's, a re-evaluation's are fresh): decomposing them together is refused
    unless a condition or the group picks one kind."""
    if group == ROW_KIND or ROW_KIND in factors or any(c == ROW_KIND for c, _ in conditions):
        return
    try:
        kinds = read_columns(path, value, [ROW_KIND])[ROW_KIND]
    except UserError:  # no such column: not a harness export
        return
    assert isinstance(kinds, Codes)
    if len(kinds.levels) > 1:
        counts = ", ".join(f"{lv}: {int((kinds.codes == i).sum())}" for i, lv in enumerate(kinds.levels))
        raise UserError(f"this export mixes row kinds ({counts}), which measure different things: decompose one "
                        f"kind with --where kind={kinds.levels[0]} (or each with --group kind)", file=path)
