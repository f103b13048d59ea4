"""bench/ scripts import the harness lazily (inside functions and in the code strings they run in
child processes), so a moved or renamed name breaks them only when someone runs them: the GPU check
once died at its first line that way, on a device whose minutes are scarce. Every `from harness...
import ...` line in bench/ must name something that exists."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
IMPORT = re.compile(r"^\s*from (harness[\w.]*) import ([\w, ]+)", re.M)


def test_bench_scripts_import_what_exists() -> None:
    broken = []
    for path in sorted(BENCH.glob("*.py")):
        for module, names in IMPORT.findall(path.read_text()):
            mod = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",") if n.strip()):
                if not hasattr(mod, name) and importlib.util.find_spec(f"{module}.{name}") is None:
                    broken.append(f"bench/{path.name}: from {module} import {name}")
    assert not broken, "no such names: " + "; ".join(broken)
