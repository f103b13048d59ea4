"""The progress bar of `harness run`: trainings done of those planned, units done / failed / left,
trainings per minute and ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from harness.job.matrix import Unit
from harness.job.spec import JobSpec
from harness.units import KINDS


class Progress:
    """tqdm over trainings: the bar counts the trainings of units done; a failed unit's are counted
    apart (the postfix), never as progress."""

    def __init__(self, spec: JobSpec, units: list[Unit], show: bool) -> None:
        from tqdm import tqdm
        self.size = {u.id: KINDS[u.kind].trainings(spec, u) for u in units}
        self.left, self.done, self.failed, self.trainings, self.failed_trainings = len(units), 0, 0, 0, 0
        self.start = time.monotonic()
        self.bar = tqdm(total=sum(self.size.values()), unit="training", disable=not show, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1)
        self._postfix()

    def _postfix(self) -> None:
        minutes = (time.monotonic() - self.start) / 60
        rate = self.trainings / minutes if minutes > 0 else 0.0
        failed = f"{self.failed} failed ({self.failed_trainings} trainings)" if self.failed else "0 failed"
        self.bar.set_postfix_str(f"units {self.done} done / {failed} / {self.left} left, "
                                 f"{rate:.0f} trainings/min", refresh=False)

    def update(self, uid: str, status: str, trainings: int) -> None:
        """The executor's per-unit callback."""
        n = trainings or self.size[uid]
        self.left -= 1
        if status == "ok":
            self.done += 1
            self.trainings += n
            self._postfix()
            self.bar.update(n)
        else:
            self.failed += 1
            self.failed_trainings += n
            self._postfix()
            self.bar.refresh()

    def close(self) -> int:
        """Close the bar; the trainings it counted."""
        self.bar.close()
        return self.trainings


def progress_factory(spec: JobSpec, show: bool) -> Callable[[list[Unit]], tuple[Callable[[str, str, int], None],
                                                                              Callable[[], int]]]:
    def make(units: list[Unit]) -> tuple[Callable[[str, str, int], None], Callable[[], int]]:
        bar = Progress(spec, units, show)
        return bar.update, bar.close
    return make
