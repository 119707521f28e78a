"""One column's running profile: its type, missing values, distinct count and statistics."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .cells import NULL_MARKERS
from .parsers import TemporalFormat, is_boolean, parse_decimals, parse_integers, temporal_formats
from .sketches import Reservoir, ValueCounter

MARKERS = pa.array(NULL_MARKERS)
QUANTILES = (0.25, 0.5, 0.75)
# From the type a column has so far, the types it may still turn out to be (narrowest
# first). A value that fits none of them makes the column text.
TYPE_STEPS = {
    "empty": ("integer", "decimal", "boolean", "temporal"),
    "integer": ("integer", "decimal"),
    "decimal": ("decimal",),
    "boolean": ("boolean",),
    "date": ("temporal",),
    "datetime": ("temporal",),
    "text": (),
}


class NumericStats:
    """Count, mean and variance merged batch by batch (Chan et al.), plus a quantile reservoir."""

    def __init__(self, reservoir: Reservoir) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.reservoir = reservoir

    def add(self, x: np.ndarray) -> None:
        """Merge one batch of finite numbers."""
        n_b = len(x)
        mean_b = float(x.mean())
        m2_b = float(np.square(x - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.mean += delta * n_b / n
        self.n = n
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.reservoir.add(x)

    def summary(self, integer: bool) -> dict:
        """min, max, mean, sample std and quartiles, every float finite or None."""
        as_number = (lambda v: int(v)) if integer else _finite
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None
        qs = self.reservoir.quantiles(QUANTILES) or [None, None, None]
        return {
            "min": as_number(self.min), "max": as_number(self.max),
            "mean": _finite(self.mean), "std": _finite(std),
            "quantiles": dict(zip(("p25", "p50", "p75"), (_finite(q) for q in qs))),
        }


class ColumnProfile:
    """Feeds a column's batches of strings through type inference and the summaries."""

    def __init__(self, name: str, *, decimal_comma: bool, exact_limit: int,
                 reservoir_size: int, rng: np.random.Generator) -> None:
        self.name = name
        self.decimal_comma = decimal_comma
        self.kind = "empty"
        self.count = 0
        self.missing = 0
        self.values = ValueCounter(exact_limit)
        self.numbers: NumericStats | None = NumericStats(Reservoir(reservoir_size, rng))
        self.formats: list[TemporalFormat] | None = None

    def add(self, column: pa.ChunkedArray) -> None:
        """Profile one batch of the column (nulls are the reader's missing markers)."""
        self.missing += column.null_count
        values = pc.drop_null(column) if column.null_count else column
        if not len(values):
            return
        values = self._narrow_type(values)
        if self.kind == "text":
            values = self._drop_blank(values)
        self.count += len(values)
        if len(values):
            self.values.add(values, want_top=self.kind in ("empty", "boolean", "text"))

    def add_missing(self, n: int) -> None:
        """Count cells absent from the batch (the column did not exist in it)."""
        self.missing += n

    def summary(self) -> dict:
        """The column's JSON-ready profile."""
        out = {
            "name": self.name, "type": self.kind, "count": self.count, "missing": self.missing,
            "distinct": self.values.distinct(),
            "distinct_is_approximate": self.values.approximate,
            "min": None, "max": None, "mean": None, "std": None, "quantiles": None,
            "earliest": None, "latest": None, "top_values": None,
        }
        if self.kind in ("integer", "decimal"):
            out.update(self.numbers.summary(integer=self.kind == "integer"))
        elif self.kind in ("date", "datetime"):
            fmt = next(f for f in self.formats if f.kind == self.kind)
            out["min"] = out["earliest"] = fmt.iso(fmt.earliest)
            out["max"] = out["latest"] = fmt.iso(fmt.latest)
        elif self.kind in ("text", "boolean"):
            out["top_values"] = self.values.top(5)
        return out

    def _drop_blank(self, values: pa.ChunkedArray) -> pa.ChunkedArray:
        """Cells of only spaces or tabs are missing, not text."""
        blank = pc.utf8_is_space(values)
        n_blank = pc.sum(blank).as_py() or 0
        if not n_blank:
            return values
        self.missing += n_blank
        return pc.filter(values, pc.invert(blank))

    def _narrow_type(self, values: pa.ChunkedArray) -> pa.ChunkedArray:
        """Keep the narrowest type all values so far fit; return the batch's values as counted.

        Values are first tried as written; only if that fails are they tried again with
        surrounding blanks stripped (and blank or padded-marker cells counted as missing).
        """
        if self.kind == "text" or self._fits(values):
            return values
        trimmed = pc.utf8_trim_whitespace(values)
        if _total_length(trimmed) != _total_length(values):  # some cells were padded
            blank = pc.is_in(trimmed, value_set=MARKERS)
            n_blank = pc.sum(blank).as_py() or 0
            kept = pc.filter(trimmed, pc.invert(blank)) if n_blank else trimmed
            if not len(kept) or self._fits(kept):
                self.missing += n_blank
                return kept
        self.kind = "text"
        self.numbers = None
        self.formats = None
        return values

    def _fits(self, values: pa.ChunkedArray) -> bool:
        """Try the types this column may still be; commit the first that every value fits."""
        for step in TYPE_STEPS[self.kind]:
            if step in ("integer", "decimal"):
                parse = parse_integers if step == "integer" else parse_decimals
                numbers = parse(values, self.decimal_comma)
                if numbers is not None:
                    self.numbers.add(numbers)
                    self.kind = step
                    return True
            elif step == "boolean":
                if is_boolean(values):
                    self.kind = "boolean"
                    return True
            elif step == "temporal":
                formats = self.formats if self.formats is not None else temporal_formats()
                accepted = [f for f in formats if f.accept(values)]
                if accepted:
                    self.formats = accepted
                    has_date = any(f.kind == "date" for f in accepted)
                    self.kind = "date" if has_date else "datetime"
                    return True
        return False


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such results become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _total_length(values: pa.ChunkedArray) -> int:
    """Total bytes of a batch's strings: a cheap way to tell whether trimming changed any."""
    return pc.sum(pc.binary_length(values)).as_py() or 0
