"""The one exception type for user mistakes; the CLI prints it as one line and exits 2."""

from __future__ import annotations

from typing import TypedDict


class Where(TypedDict, total=False):
    """Where a user's mistake is (UserError's keywords, passed as **where)."""

    file: str
    key: str
    line: int | None


class UserError(Exception):
    """A mistake the user can fix (bad job file, missing data, bad CLI argument).

    The message is one line naming the file, the key (and YAML line when known) and
    what was expected. Tracebacks are reserved for bugs.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.file, self.key, self.line = file, key, line
        where = ""
        if file:
            where = file + (f":{line}" if line else "")
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(one_line(f"{where}: {message}" if where else message))


def one_line(text: str) -> str:
    """`text` with every character that would break it into lines escaped (a key or value from a
    job file may hold any of them), so the message stays one line."""
    return "".join(c if len(f"a{c}b".splitlines()) == 1 else c.encode("unicode_escape").decode() for c in text)
