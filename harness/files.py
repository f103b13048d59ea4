"""Atomic file writes: the one helper every writer of a whole file uses (spec.json, reports,
exports, migrated shards). Readers see the old file or the new one, never half of either. And
`under`: the check that a path the harness writes stays under its root."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness.errors import UserError


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: object) -> Iterator[IO]:
    """Write to a temporary name beside `path` (host and pid in it: several writers never share
    one), fsync, then `os.replace` it over `path`; on an exception `path` is untouched."""
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(tmp, mode, **kwargs) as f:  # type: ignore[call-overload]
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: Path, text: str) -> None:
    """Replace `path`'s contents with `text` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def under(root: Path, *parts: str, what: str) -> Path:
    """`root / parts`, refused (UserError) unless it resolves to a place inside `root` resolved: a
    name from a job file, or a link planted in the tree, never sends a write elsewhere."""
    path = root.joinpath(*parts)
    base, target = root.resolve(), path.resolve()
    if target != base and base not in target.parents:
        raise UserError(f"the {what} {path} resolves to {target}, outside {base}; refusing to write there")
    return path
