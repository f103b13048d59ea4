"""Types are checked: mypy (configured in pyproject.toml) passes on the whole package, no module
exempt, no blanket `type: ignore`."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_mypy_passes_on_the_package() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout[-5000:] + r.stderr[-2000:]


def test_no_blanket_type_ignore() -> None:
    """An ignore names the error it silences (`# type: ignore[code]`), with the reason beside it."""
    blanket = [f"{p.relative_to(REPO)}:{n}" for p in sorted((REPO / "harness").rglob("*.py"))
               for n, line in enumerate(p.read_text().splitlines(), start=1)
               if re.search(r"type:\s*ignore(?!\[)", line)]
    assert not blanket, blanket
