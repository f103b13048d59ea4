"""Read the columns `harness decompose` needs from a CSV file, fast, with numpy only.

No pandas and no numba here: numba costs about a second to start in a fresh process, more than
the whole read. Lines and fields are found with vectorised byte searches; factor fields are packed
into integer keys and encoded with a sort; values are converted by numpy (exactly rounded). Files
with quoted fields take the csv-module path.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

import numpy as np

from harness.errors import UserError
from harness.stats.core import sort_levels

MISSING_TOKENS = {"", "nan", "na"}


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _float_or_error(text: str, path: str, column: str, line: int) -> float:
    if text.strip().lower() in MISSING_TOKENS:
        return math.nan
    try:
        x = float(text)
    except ValueError:
        raise UserError(f"line {line}: column {column!r} is not numeric: {text!r}", file=path) from None
    if not math.isfinite(x):
        raise UserError(f"line {line}: column {column!r} is not a finite number: {text!r}", file=path)
    return x


def _gather(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Fields as rows of a zero-padded (rows, width) byte matrix."""
    lengths = ends - starts
    width = max(int(lengths.max()), 1)
    windows = np.lib.stride_tricks.sliding_window_view(np.append(buf, np.zeros(width, np.uint8)), width)
    out = windows[starts]
    out[np.arange(width) >= lengths[:, None]] = 0
    return out


def _encode(fields: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes and level labels of a byte-matrix column."""
    width = fields.shape[1]
    if width <= 8:
        keys = np.zeros((fields.shape[0], 8), np.uint8)
        keys[:, :width] = fields
        flat = keys.view("<u8").reshape(-1)
        sample = np.unique(flat[:: max(1, flat.size // 16384)])
        pos = np.minimum(np.searchsorted(sample, flat), sample.size - 1)
        if (sample[pos] == flat).all():
            uniq, codes = sample, pos
        else:
            uniq, codes = np.unique(flat, return_inverse=True)
        labels = [u.to_bytes(8, "little").rstrip(b"\0") for u in uniq.tolist()]
    else:
        uniq, codes = np.unique(fields.view(f"S{width}").reshape(-1), return_inverse=True)
        labels = uniq.tolist()
    return codes.reshape(-1), [b.decode("utf-8", "replace") for b in labels]


def _values(data: bytes, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, path: str,
            column: str) -> np.ndarray:
    """float64 values; NaN where the field is empty, 'nan' or 'NA'."""
    fields = _gather(buf, starts, ends)
    empty = ends == starts
    if empty.any():
        if fields.shape[1] < 3:
            fields = np.pad(fields, ((0, 0), (0, 3 - fields.shape[1])))
        fields[empty, :3] = np.frombuffer(b"nan", np.uint8)
    try:
        out = fields.view(f"S{fields.shape[1]}").reshape(-1).astype(np.float64)
    except ValueError:
        out = None
    if out is None or not np.isfinite(out[~np.isnan(out)]).all():
        out = np.array([_float_or_error(data[s:e].decode("utf-8", "replace"), path, column, _line_of(data, s))
                        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
    return out


def _bounds(buf: np.ndarray, body: int, ncols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line starts, line ends (without CR) and (rows, ncols-1) comma offsets of the non-blank lines.

    Raises ValueError with the byte offset of the first line with a wrong field count.
    """
    nl = np.flatnonzero(buf[body:] == 10) + body
    ends = np.append(nl, buf.size) if nl.size == 0 or nl[-1] != buf.size - 1 else nl
    starts = np.concatenate(([body], ends[:-1] + 1))
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    ends = ends - cr
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    commas = np.flatnonzero(buf[body:] == 44) + body
    k = ncols - 1
    if commas.size == starts.size * k:
        grid = commas.reshape(starts.size, k)
        if k == 0 or ((grid[:, 0] >= starts) & (grid[:, -1] < ends)).all():
            return starts, ends, grid
    per_line = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    raise ValueError(int(starts[np.flatnonzero(per_line != k)[0]]))


def read_columns(path: str, value: str, factors: Sequence[str]) -> dict[str, object]:
    """The value column as float64 (NaN where missing) and each factor column as Codes."""
    if not os.path.isfile(path):
        raise UserError("no such file", file=path)
    with open(path, "rb") as fh:
        data = fh.read()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    eol = data.find(b"\n", start)
    header_text = data[start:eol if eol >= 0 else len(data)].decode("utf-8", "replace").rstrip("\r")
    header = next(csv.reader([header_text]), [])
    if not header or header == [""]:
        raise UserError("empty file (no header line)", file=path)
    for name in [value, *factors]:
        if name not in header:
            raise UserError(f"no column {name!r} (columns: {', '.join(header)})", file=path)
    body = eol + 1 if eol >= 0 else len(data)
    if b'"' in data[body:]:
        return _read_quoted(data[body:].decode("utf-8"), header, path, value, factors, _line_of(data, body))
    buf = np.frombuffer(data, np.uint8)
    try:
        starts, ends, commas = _bounds(buf, body, len(header))
    except ValueError as exc:
        line = _line_of(data, exc.args[0])
        raise UserError(f"line {line}: expected {len(header)} fields", file=path) from None
    if starts.size == 0:
        raise UserError("no data rows", file=path)

    def field(name: str) -> tuple[np.ndarray, np.ndarray]:
        j = header.index(name)
        return (starts if j == 0 else commas[:, j - 1] + 1), (ends if j == len(header) - 1 else commas[:, j])

    out: dict[str, object] = {value: _values(data, buf, *field(value), path, value)}
    for name in factors:
        out[name] = sort_levels(*_encode(_gather(buf, *field(name))))
    return out


def _read_quoted(text: str, header: list[str], path: str, value: str, factors: Sequence[str],
                 first_line: int) -> dict[str, object]:
    """The csv-module path for files with quoted fields."""
    idx = [header.index(c) for c in [value, *factors]]
    values: list[float] = []
    cols: list[list[str]] = [[] for _ in factors]
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        if not row:
            continue
        line = first_line + reader.line_num - 1
        if len(row) != len(header):
            raise UserError(f"line {line}: expected {len(header)} fields", file=path)
        values.append(_float_or_error(row[idx[0]], path, value, line))
        for col, i in zip(cols, idx[1:], strict=True):
            col.append(row[i])
    if not values:
        raise UserError("no data rows", file=path)
    out: dict[str, object] = {value: np.array(values)}
    for name, col in zip(factors, cols, strict=True):
        levels, codes = np.unique(np.array(col), return_inverse=True)
        out[name] = sort_levels(codes.reshape(-1), levels.tolist())
    return out
