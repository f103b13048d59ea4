"""`harness decompose`: variance components of a column of any CSV file, as markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.errors import UserError
from harness.stats.core import decompose, decompose_groups
from harness.stats.csvfile import read_columns


def decompose_csv(path: str, *, value: str, factors: Sequence[str], nested: Sequence[str] = (),
                  group: str | None = None, ci: str = "gpq", draws: int = 0, bootstrap: int = 0, seed: int = 0,
                  as_json: bool = False) -> str:
    """Read `path`, decompose `value` over `factors` (per level of `group`) with 95% intervals by `ci`
    (`draws` of them; `bootstrap=B` > 0: the bootstrap with B replicates), and format the result.

    Every user mistake (file, column, value, design) is raised as a one-line UserError naming the file.
    """
    columns = read_columns(path, value, [*factors, *([group] if group else [])])
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
