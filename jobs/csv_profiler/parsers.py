"""Vectorised checks that turn a batch of cell strings into numbers, booleans or dates.

Each parser returns None when any value in the batch does not fit, so a column's
type is the narrowest one that every value in the file satisfies.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .cells import FALSE_WORDS, NUMBER_COMMA_RE, TRUE_WORDS

QUICK_CHECK = 64  # try a batch's first values first, so text columns fail fast
BOOLEAN_WORDS = pa.array(TRUE_WORDS + FALSE_WORDS)
_NUMBER_COMMA = "^" + NUMBER_COMMA_RE.pattern + "$"


def _try_cast(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """Cast, or None if any value does not parse."""
    try:
        if len(values) > QUICK_CHECK:
            pc.cast(values.slice(0, QUICK_CHECK), target)
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _from_decimal_comma(values: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Rewrite 1.234,56 as 1234.56, or None if some value is not such a number."""
    head = values.slice(0, QUICK_CHECK)
    if not pc.all(pc.match_substring_regex(head, _NUMBER_COMMA)).as_py():
        return None
    if not pc.all(pc.match_substring_regex(values, _NUMBER_COMMA)).as_py():
        return None
    plain = pc.replace_substring(values, ".", "")
    return pc.replace_substring(plain, ",", ".")


def parse_integers(values: pa.ChunkedArray, decimal_comma: bool) -> np.ndarray | None:
    """The batch as float64 if every value is a whole number that fits in 64 bits."""
    if decimal_comma:
        values = _from_decimal_comma(values)
        if values is None:
            return None
    ints = _try_cast(values, pa.int64())
    return None if ints is None else ints.to_numpy().astype(np.float64)


def parse_decimals(values: pa.ChunkedArray, decimal_comma: bool) -> np.ndarray | None:
    """The batch as float64 if every value is a finite number."""
    if decimal_comma:
        values = _from_decimal_comma(values)
        if values is None:
            return None
    floats = _try_cast(values, pa.float64())
    if floats is None:
        return None
    array = floats.to_numpy()
    return array if np.isfinite(array).all() else None


def is_boolean(values: pa.ChunkedArray) -> bool:
    """Tell whether every value is a yes/no word such as true, False, Y or no."""
    if len(values) > QUICK_CHECK and not _all_boolean(values.slice(0, QUICK_CHECK)):
        return False
    return _all_boolean(values)


def _all_boolean(values: pa.ChunkedArray) -> bool:
    """The boolean test itself, on any slice."""
    lowered = pc.utf8_lower(values)
    return bool(pc.all(pc.is_in(lowered, value_set=BOOLEAN_WORDS)).as_py())


class TemporalFormat:
    """One way of writing dates, with the earliest and latest value seen in it."""

    def __init__(self, kind: str, fmt: str | None, target: pa.DataType) -> None:
        self.kind = kind  # "date" or "datetime"
        self.fmt = fmt  # None: ISO 8601 through Arrow's cast
        self.target = target
        self.earliest: np.datetime64 | None = None
        self.latest: np.datetime64 | None = None

    def accept(self, values: pa.ChunkedArray) -> bool:
        """Parse the batch; on success widen the earliest/latest range."""
        if len(values) > QUICK_CHECK and self._parse(values.slice(0, QUICK_CHECK)) is None:
            return False
        parsed = self._parse(values)
        if parsed is None:
            return False
        lo, hi = pc.min_max(parsed).values()
        lo = np.datetime64(lo.cast(pa.timestamp("us")).value, "us")
        hi = np.datetime64(hi.cast(pa.timestamp("us")).value, "us")
        self.earliest = lo if self.earliest is None else min(self.earliest, lo)
        self.latest = hi if self.latest is None else max(self.latest, hi)
        return True

    def _parse(self, values: pa.ChunkedArray) -> pa.ChunkedArray | None:
        """The batch as dates or timestamps, or None if any value does not parse."""
        if self.fmt is None:
            return _try_cast(values, self.target)
        parsed = pc.strptime(values, format=self.fmt, unit="s", error_is_null=True)
        return None if parsed.null_count else parsed

    def iso(self, value: np.datetime64) -> str:
        """ISO 8601 text: a plain date for dates, seconds (or finer) for datetimes."""
        if self.kind == "date":
            return str(value.astype("datetime64[D]"))
        if value == value.astype("datetime64[s]"):
            return str(value.astype("datetime64[s]"))
        return str(value)


def temporal_formats() -> list[TemporalFormat]:
    """The date and datetime spellings tried, most common first."""
    formats = [
        TemporalFormat("date", None, pa.date32()),
        TemporalFormat("datetime", None, pa.timestamp("us")),
        TemporalFormat("datetime", None, pa.timestamp("us", tz="UTC")),
    ]
    for day in ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y"):
        formats.append(TemporalFormat("date", day, pa.timestamp("s")))
        formats.append(TemporalFormat("datetime", day + " %H:%M", pa.timestamp("s")))
        formats.append(TemporalFormat("datetime", day + " %H:%M:%S", pa.timestamp("s")))
    return formats
