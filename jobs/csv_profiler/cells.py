"""What a single cell means: missing markers, boolean words and a quick type guess."""

from __future__ import annotations

import re

# Exact (whitespace-trimmed) cell texts that mean "no value" in common exports.
NULL_MARKERS = (
    "", "NA", "N/A", "n/a", "na", "null", "NULL", "Null", "None", "none",
    "NaN", "nan", "-", "#N/A", "<NA>",
)
TRUE_WORDS = ("true", "t", "yes", "y", "ja", "oui")
FALSE_WORDS = ("false", "f", "no", "n", "nein", "non")

INTEGER_RE = re.compile(r"[+-]?\d+")
DECIMAL_DOT_RE = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(?=[eE]))([eE][+-]?\d+)?")
# With a decimal comma, "." may group thousands: 1.234,56 or 3,5 or 1.234.567
NUMBER_COMMA_RE = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?")
DECIMAL_COMMA_HINT_RE = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+")
DECIMAL_DOT_HINT_RE = re.compile(r"[+-]?\d+\.\d+")
THOUSANDS_ONLY_RE = re.compile(r"[+-]?\d{1,3}(\.\d{3})+")
_DATE = r"(\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{4})"
DATE_RE = re.compile(_DATE)
DATETIME_RE = re.compile(_DATE + r"[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_MARKERS = frozenset(NULL_MARKERS)
_BOOLEANS = frozenset(TRUE_WORDS + FALSE_WORDS)


def classify_cell(text: str, decimal_comma: bool = False) -> str:
    """Guess one cell's type the way the column profiler will, for sniffing headers."""
    value = text.strip()
    if value in _MARKERS:
        return "missing"
    if INTEGER_RE.fullmatch(value):
        return "integer"
    if decimal_comma:
        if NUMBER_COMMA_RE.fullmatch(value):
            return "decimal"
    elif DECIMAL_DOT_RE.fullmatch(value):
        return "decimal"
    if value.lower() in _BOOLEANS:
        return "boolean"
    if DATE_RE.fullmatch(value):
        return "date"
    if DATETIME_RE.fullmatch(value):
        return "datetime"
    return "text"
