"""Which part of the plan this process runs: `--part I/N`, else the Slurm array task it is
(SLURM_ARRAY_TASK_ID / _COUNT / _MIN / _STEP), else all of it. Array task i of n runs every
unit whose plan index is i mod n (`harness.job.matrix.array_part`)."""

from __future__ import annotations

import os

from harness.errors import UserError


def parse_part(text: str | None) -> tuple[int, int] | None:
    """--part I/N, else Slurm's array variables, else None (run everything)."""
    where = "--part"
    if text is None:
        env = os.environ
        task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return None
        where = (f"Slurm array task {task} (min {env.get('SLURM_ARRAY_TASK_MIN', '0')}, "
                 f"step {env.get('SLURM_ARRAY_TASK_STEP', '1')}, count {count}); submit a contiguous "
                 f"--array=0-N[:step] or pass --part I/N")
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))  # --array=0-30:10: tasks 0, 10, 20, 30
        text = f"{(int(task) - int(env.get('SLURM_ARRAY_TASK_MIN', '0'))) // step}/{count}"
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"{where}: expected I/N with integers, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise UserError(f"{where}: expected part I/N with 0 <= I < N, got {text!r}")
    return i, n
