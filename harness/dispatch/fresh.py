"""A seeding-policy run in a fresh process: the article's inconsistency is across processes, so
each run starts a new Python (nothing imported, no random state) that loads the job file, runs
`training.article.run_policy` and prints its result as one JSON line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.job.spec import JobSpec


def run_fresh(spec: JobSpec, policy: str, bo_seed: int, log: Path) -> dict[str, Any]:
    """One run in a new process (its stderr in `log`); its result, timed from the start of the process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "ab") as err:
        out = subprocess.run([sys.executable, "-m", "harness.dispatch.fresh", spec.path, spec.digest(), policy,
                              str(bo_seed)], stdout=subprocess.PIPE, stderr=err, check=False)
    lines = out.stdout.decode().strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the fresh process of a {policy} run failed (exit code {out.returncode}); see {log}")
    return {**json.loads(lines[-1]), "process_s": round(time.perf_counter() - start, 3)}


def main(job: str, digest: str, policy: str, bo_seed: int) -> None:
    from harness.job import load_job
    from harness.training import determinism
    determinism.prepare_process("on")
    spec = load_job(job)
    if spec.digest() != digest:
        raise SystemExit(f"{job} changed since the run started (spec {spec.digest()}, expected {digest})")
    determinism.apply_threads(spec.determinism.intra_op_threads, spec.determinism.inter_op_threads)
    determinism.set_ops("on" if policy == "harness" else "off")  # the article sets no op determinism
    from harness.training.article import run_policy
    print(json.dumps(run_policy(spec, policy, bo_seed)))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # its worker ignores Ctrl-C (the driver's); this run ends with it
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
