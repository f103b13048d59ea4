"""Read the columns `harness decompose` needs from a CSV file, fast and without pandas.

Numba kernels split the lines, parse the value column (exactly rounded: Clinger's fast path, then
the Eisel-Lemire algorithm; anything else goes through Python's float) and hash the factor columns
into integer codes. Files with quoted fields take the csv-module path.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

import numba as nb
import numpy as np

from harness.errors import UserError
from harness.stats import sort_levels
from harness.stats_kernels import mix64

_U = np.uint64
_M32 = _U(0xFFFFFFFF)
_MASK9 = _U(0x1FF)
_ONES = _U(0xFFFFFFFFFFFFFFFF)
OK, SLOW, MISSING = 0, 1, 2
MISSING_TOKENS = {"", "nan", "na"}


def _powers_of_five() -> np.ndarray:
    """128-bit truncated, normalised 5**q for q in [-342, 308] as (hi, lo) pairs (fast_float's table)."""
    out = []
    for q in range(-342, 0):
        p5 = 5 ** -q
        z = p5.bit_length()
        c = (1 << (z + 127 if q >= -27 else 2 * z + 128)) // p5 + 1
        while c >= 1 << 128:
            c >>= 1
        out.append(c)
    for q in range(0, 309):
        p5 = 5 ** q
        p5 <<= max(0, 128 - p5.bit_length())
        p5 >>= max(0, p5.bit_length() - 128)
        out.append(p5)
    return np.array([[c >> 64, c & (2 ** 64 - 1)] for c in out], np.uint64)


_POW5 = _powers_of_five()
_POW10 = np.array([10.0 ** i for i in range(23)])


@nb.njit(cache=True)
def _mul128(a, b):
    a0, a1, b0, b1 = a & _M32, a >> _U(32), b & _M32, b >> _U(32)
    p0, p1, p2, p3 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p0 >> _U(32)) + (p1 & _M32) + (p2 & _M32)
    return p3 + (p1 >> _U(32)) + (p2 >> _U(32)) + (mid >> _U(32)), (p0 & _M32) | (mid << _U(32))


@nb.njit(cache=True)
def _eisel_lemire(w, q, pow5):
    """w * 10**q correctly rounded (w != 0, up to 19 digits); NaN when undecided or not normal."""
    lz = 0
    while w < _U(1) << _U(63):
        w <<= _U(1)
        lz += 1
    hi, lo = _mul128(w, pow5[q + 342, 0])
    if (hi & _MASK9) == _MASK9:
        hi2, _ = _mul128(w, pow5[q + 342, 1])
        lo += hi2
        if hi2 > lo:
            hi += _U(1)
        if lo == _ONES and (hi & _MASK9) == _MASK9:
            return np.nan
    upper = np.int64(hi >> _U(63))
    shift = _U(upper + 9)
    mant = hi >> shift
    power2 = ((217706 * q) >> 16) + 63 + upper - lz + 1023
    if power2 <= 0:
        return np.nan
    if lo <= _U(1) and -4 <= q <= 23 and (mant & _U(3)) == _U(1) and (mant << shift) == hi:
        mant &= ~_U(1)
    mant += mant & _U(1)
    mant >>= _U(1)
    if mant >= _U(2) << _U(52):
        mant = _U(1) << _U(52)
        power2 += 1
    if power2 >= 2047:
        return np.nan
    return np.ldexp(np.float64(mant | (_U(1) << _U(52))), power2 - 1075)


@nb.njit(cache=True)
def _parse_float(buf, start, end, pow5, pow10):
    """(value, status) of one field: OK, SLOW (let Python decide) or MISSING."""
    while start < end and (buf[start] == 32 or buf[start] == 9):
        start += 1
    while end > start and (buf[end - 1] == 32 or buf[end - 1] == 9):
        end -= 1
    if start == end:
        return np.nan, MISSING
    i = start
    neg = buf[i] == 45
    if buf[i] == 45 or buf[i] == 43:
        i += 1
    w = _U(0)
    digits = 0
    q = 0
    seen = False
    while i < end and 48 <= buf[i] <= 57:
        seen = True
        if digits > 0 or buf[i] != 48:
            if digits == 19:
                return np.nan, SLOW
            w = w * _U(10) + _U(buf[i] - 48)
            digits += 1
        i += 1
    if i < end and buf[i] == 46:
        i += 1
        while i < end and 48 <= buf[i] <= 57:
            seen = True
            if digits > 0 or buf[i] != 48:
                if digits == 19:
                    return np.nan, SLOW
                w = w * _U(10) + _U(buf[i] - 48)
                digits += 1
            q -= 1
            i += 1
    if not seen:
        return np.nan, SLOW
    if i < end and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = i < end and buf[i] == 45
        if i < end and (buf[i] == 45 or buf[i] == 43):
            i += 1
        if i == end:
            return np.nan, SLOW
        e = 0
        while i < end and 48 <= buf[i] <= 57 and e < 100000:
            e = e * 10 + (buf[i] - 48)
            i += 1
        q += -e if eneg else e
    if i != end:
        return np.nan, SLOW
    if w == _U(0):
        return (-0.0 if neg else 0.0), OK
    if w < _U(1) << _U(53) and -22 <= q <= 22:
        x = np.float64(w)
        x = x * pow10[q] if q >= 0 else x / pow10[-q]
    elif -342 <= q <= 308:
        x = _eisel_lemire(w, q, pow5)
        if np.isnan(x):
            return np.nan, SLOW
    else:
        return np.nan, SLOW
    return (-x if neg else x), OK


@nb.njit(cache=True)
def _split(buf, start, ncols, slot_of):
    """Field bounds of the wanted columns of each non-blank line: starts, ends (wanted, rows).

    Returns also the byte offset of the first line with the wrong number of fields, or -1.
    """
    nwant = 0
    for c in range(ncols):
        if slot_of[c] >= 0:
            nwant += 1
    maxrows = 1
    for i in range(start, buf.shape[0]):
        if buf[i] == 10:
            maxrows += 1
    starts = np.empty((nwant, maxrows), np.int64)
    ends = np.empty((nwant, maxrows), np.int64)
    row = 0
    i = start
    n = buf.shape[0]
    while i < n:
        line = i
        stop = i
        while stop < n and buf[stop] != 10:
            stop += 1
        nxt = stop + 1
        if stop > line and buf[stop - 1] == 13:
            stop -= 1
        if stop == line:
            i = nxt
            continue
        col = 0
        fs = line
        for j in range(line, stop + 1):
            if j == stop or buf[j] == 44:
                if col < ncols and slot_of[col] >= 0:
                    starts[slot_of[col], row] = fs
                    ends[slot_of[col], row] = j
                col += 1
                fs = j + 1
        if col != ncols:
            return starts, ends, row, line
        row += 1
        i = nxt
    return starts, ends, row, -1


@nb.njit(cache=True)
def _floats(buf, starts, ends, pow5, pow10):
    n = starts.shape[0]
    out = np.empty(n)
    status = np.empty(n, np.int8)
    for r in range(n):
        out[r], status[r] = _parse_float(buf, starts[r], ends[r], pow5, pow10)
    return out, status


@nb.njit(cache=True)
def _field_hash(buf, s, e):
    h = _U(0xCBF29CE484222325)
    for j in range(s, e):
        h = (h ^ _U(buf[j])) * _U(0x100000001B3)
    return mix64(h)


@nb.njit(cache=True)
def _encode(buf, starts, ends):
    """Codes in order of first appearance, and the first row of each level (open addressing)."""
    n = starts.shape[0]
    codes = np.empty(n, np.int32)
    cap = 64
    table = np.full(cap, -1, np.int64)
    hashes = np.empty(cap, np.uint64)
    first = np.empty(cap, np.int64)
    nlev = 0
    for r in range(n):
        s, e = starts[r], ends[r]
        h = _field_hash(buf, s, e)
        slot = np.int64(h & _U(cap - 1))
        while True:
            lev = table[slot]
            if lev < 0:
                lev = nlev
                hashes[lev] = h
                first[lev] = r
                table[slot] = lev
                nlev += 1
                if 2 * nlev > cap:
                    cap *= 2
                    table = np.full(cap, -1, np.int64)
                    hashes = np.concatenate((hashes, np.empty(cap - hashes.shape[0], np.uint64)))
                    first = np.concatenate((first, np.empty(cap - first.shape[0], np.int64)))
                    for k in range(nlev):
                        t = np.int64(hashes[k] & _U(cap - 1))
                        while table[t] >= 0:
                            t = (t + 1) & (cap - 1)
                        table[t] = k
                break
            if hashes[lev] == h:
                fs, fe = starts[first[lev]], ends[first[lev]]
                same = fe - fs == e - s
                j = 0
                while same and j < e - s:
                    same = buf[fs + j] == buf[s + j]
                    j += 1
                if same:
                    break
            slot = (slot + 1) & (cap - 1)
        codes[r] = lev
    return codes, first[:nlev]


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


def read_columns(path: str, value: str, factors: Sequence[str]) -> dict[str, object]:
    """The value column as float64 (NaN where empty or 'nan') and each factor column as Codes."""
    if not os.path.isfile(path):
        raise UserError("no such file", file=path)
    with open(path, "rb") as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    eol = data.find(b"\n")
    header_bytes = data if eol < 0 else data[:eol]
    header = next(csv.reader([header_bytes.decode("utf-8", "replace").rstrip("\r")]), [])
    if not header or header == [""]:
        raise UserError("empty file (no header line)", file=path)
    for name in [value, *factors]:
        if name not in header:
            raise UserError(f"no column {name!r} (columns: {', '.join(header)})", file=path)
    body = eol + 1 if eol >= 0 else len(data)
    if b'"' in data[body:]:
        return _read_quoted(data[body:].decode("utf-8"), header, path, value, factors, _line_of(data, body))
    buf = np.frombuffer(data, np.uint8)
    wanted = [value, *factors]
    slot_of = np.array([wanted.index(c) if c in wanted else -1 for c in header], np.int64)
    starts, ends, nrows, bad = _split(buf, body, len(header), slot_of)
    if bad >= 0:
        raise UserError(f"line {_line_of(data, bad)}: expected {len(header)} fields", file=path)
    if nrows == 0:
        raise UserError("no data rows", file=path)
    starts, ends = starts[:, :nrows], ends[:, :nrows]
    values, status = _floats(buf, starts[0], ends[0], _POW5, _POW10)
    for r in np.flatnonzero(status == SLOW).tolist():
        text = data[starts[0, r]:ends[0, r]].decode("utf-8", "replace")
        values[r] = _float_or_error(text, path, value, _line_of(data, int(starts[0, r])))
    out: dict[str, object] = {value: values}
    for k, name in enumerate(factors, start=1):
        codes, first = _encode(buf, starts[k], ends[k])
        labels = [data[starts[k, r]:ends[k, r]].decode("utf-8", "replace") for r in first.tolist()]
        out[name] = sort_levels(codes, labels)
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

