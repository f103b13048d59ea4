"""The export: every finished training of a store as CSV rows (what `harness export` writes and
`harness.load` reads back)."""

from __future__ import annotations

import csv
from typing import IO

from harness.job.spec import JobSpec
from harness.store.records import columns, training_rows
from harness.store.store import Store


def write_csv(spec: JobSpec, store: Store, out: IO[str]) -> int:
    """Write the header and one row per training; returns the number of rows."""
    rows = training_rows(store.ok_records())
    w = csv.DictWriter(out, fieldnames=columns(spec), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return len(rows)
