"""Files the harness writes and the store's own files: the one atomic-write helper every writer of
a whole file uses (spec.json, reports, exports, migrated shards; readers see the old file or the
new one, never half of either), `under` (a written path stays under its root), and the opens the
store makes: no-follow, regular files only, bounded reads (`open_regular`, `read_regular`,
`real_dir`). A full disk is one line (`DiskFull`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness.errors import UserError

FULL = (errno.ENOSPC, errno.EDQUOT)
MAX_READ = 2 * 2**30  # a store file read whole (a shard, spec.json, a claim) is refused above this


class DiskFull(UserError):
    """The disk (or quota) a write goes to is full: one line; what was complete stays readable."""

    def __init__(self, where: str, exc: OSError, what: str = "") -> None:
        super().__init__(f"{exc.strerror or exc} while writing {what or 'it'}: free space and run again",
                         file=where)


@contextlib.contextmanager
def disk_full_as_error(where: Path, what: str = "") -> Iterator[None]:
    """Turn a full disk's OSError inside the block into `DiskFull` naming `where`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL:
            raise DiskFull(str(where), exc, what) from None
        raise


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: object) -> Iterator[IO]:
    """Write to a temporary name beside `path` (host and pid in it: several writers never share
    one; created anew, never through a link left there), fsync, then `os.replace` it over `path`;
    on an exception `path` is untouched and the temporary file removed. A full disk is `DiskFull`."""
    tmp = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with disk_full_as_error(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with open(fd, mode, **kwargs) as f:  # type: ignore[call-overload]
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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: Path, what: str) -> UserError:
    return UserError(f"is {what}, not a file the harness made; refusing to open it (remove it, or check "
                     f"who put it there)", file=str(path))


def real_dir(root: Path, path: Path, create: bool = False) -> Path:
    """`path`, a directory at or below `root`, with every component below `root` a real directory
    (no symbolic link, nothing else), created where missing when `create`; else one UserError line.
    `root` itself may be a link (a store on another disk is a user's choice)."""
    rel = path.relative_to(root)
    if create:
        with disk_full_as_error(root, "a directory"):
            root.mkdir(parents=True, exist_ok=True)
    here = root
    for part in rel.parts:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            if not create:
                return path
            with disk_full_as_error(here, "a directory"), contextlib.suppress(FileExistsError):
                os.mkdir(here)
            mode = os.lstat(here).st_mode
        if not stat.S_ISDIR(mode):
            raise _refuse(here, _kind(mode))
    return path


def open_regular(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor of `path` opened without following a link and without blocking (a FIFO never
    hangs an open), refused (one UserError line) unless it is a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise _refuse(path, "a FIFO") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refuse(path, _kind(mode))
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def read_regular(path: Path, limit: int = MAX_READ) -> bytes:
    """The bytes a regular file held when opened (its size then: a writer appending meanwhile adds
    nothing here), never through a link; refused above `limit` bytes."""
    fd = open_regular(path)
    with open(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UserError(f"is {size / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB a store file may be; "
                            f"refusing to read it", file=str(path))
        return f.read(size)


def append_regular(path: Path) -> IO[bytes]:
    """`path` opened to append (created when missing), unbuffered, never through a link."""
    with disk_full_as_error(path):
        return open(open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab", buffering=0)
