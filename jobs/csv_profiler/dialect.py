"""Sniff delimiter, header and decimal separator from decoded sample text.

csv.Sniffer guesses from character frequencies and is fooled by commas inside
text, by one-column files and by decimal commas; here each candidate delimiter
is tried with the real csv parser and judged by how consistent the row widths are.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter
from dataclasses import dataclass

from .cells import (
    DECIMAL_COMMA_HINT_RE, DECIMAL_DOT_HINT_RE, THOUSANDS_ONLY_RE, classify_cell,
)
from .errors import CsvProfileError

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
QUOTECHAR = '"'
MAX_SAMPLE_ROWS = 2_000
MAX_TYPED_ROWS = 300  # rows whose cells are classified for header and decimal-comma votes
MIN_CONSISTENCY = 0.5
SEP_LINE_RE = re.compile(r'"?sep=(.)"?[ \t]*(\r\n|\n|\r|$)', re.IGNORECASE)


@dataclass(frozen=True)
class Dialect:
    """Everything the streaming reader needs to know about a file's shape."""

    encoding: str
    delimiter: str
    has_header: bool
    names: tuple[str, ...]
    skip_lines: int
    decimal_separator: str
    quotechar: str = QUOTECHAR


def normalize_delimiter(delimiter: str) -> str:
    """Validate a user-given delimiter; accept a few spelled-out names like 'tab'."""
    value = DELIMITER_ALIASES.get(delimiter.strip().lower(), delimiter) if delimiter.strip() else delimiter
    if len(value) != 1:
        raise CsvProfileError(f"The delimiter must be a single character, not {delimiter!r}.")
    if value in ('"', "\r", "\n"):
        raise CsvProfileError(f"{value!r} cannot be used as a delimiter.")
    return value


def sniff_dialect(text: str, complete: bool, encoding: str, *,
                  delimiter: str | None = None, has_header: bool | None = None) -> Dialect:
    """Work out the dialect from the start of the file, honouring any overrides."""
    skip_lines = 0
    sep_line = SEP_LINE_RE.match(text)
    if sep_line:
        skip_lines = 1
        text = text[sep_line.end():]
        delimiter = delimiter or sep_line.group(1)
    if not complete:
        # Drop the last, possibly cut, line so it cannot skew the row widths.
        text = text[: text.rfind("\n") + 1] or text
    if delimiter is None:
        delimiter = _pick_delimiter(text, complete)
    rows = _parse_rows(text, delimiter, complete)
    if not rows:
        raise CsvProfileError("The file is empty.")
    typed_rows = rows[:MAX_TYPED_ROWS]
    decimal_comma = delimiter != "," and _uses_decimal_comma(typed_rows[1:])
    if has_header is None:
        has_header = _looks_like_header(typed_rows, decimal_comma)
    names = _column_names(rows, has_header)
    return Dialect(
        encoding=encoding, delimiter=delimiter, has_header=has_header, names=names,
        skip_lines=skip_lines, decimal_separator="," if decimal_comma else ".",
    )


def _parse_rows(text: str, delimiter: str, complete: bool) -> list[list[str]]:
    """Parse sample rows with the csv module, skipping blank lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        quotechar=QUOTECHAR, doublequote=True, strict=False)
    rows: list[list[str]] = []
    try:
        for row in itertools.islice(reader, MAX_SAMPLE_ROWS):
            if row:
                rows.append(row)
    except csv.Error:
        pass  # a huge or broken field: judge from the rows read so far
    if not complete and len(rows) > 1:
        rows.pop()  # may end inside a quoted field that the sample cut
    return rows


def _pick_delimiter(text: str, complete: bool) -> str:
    """Pick the delimiter whose rows have the most consistent width, or ',' for one column."""
    best: tuple | None = None
    for rank, candidate in enumerate(DELIMITERS):
        widths = [len(row) for row in _parse_rows(text, candidate, complete)]
        if not widths:
            continue
        mode, freq = Counter(widths).most_common(1)[0]
        consistency = freq / len(widths)
        if mode < 2 or consistency < MIN_CONSISTENCY:
            continue
        # A header row never holds decimal commas, so a matching first row is strong evidence.
        score = (widths[0] == mode, round(consistency, 2), mode, -rank)
        if best is None or score > best[0]:
            best = (score, candidate)
    return best[1] if best else ","


def _uses_decimal_comma(body: list[list[str]]) -> bool:
    """Tell whether numbers in the sample are written like 1.234,56 rather than 1234.56."""
    comma = dot = 0
    for row in body:
        for cell in row:
            value = cell.strip()
            if DECIMAL_COMMA_HINT_RE.fullmatch(value):
                comma += 1
            elif DECIMAL_DOT_HINT_RE.fullmatch(value) and not THOUSANDS_ONLY_RE.fullmatch(value):
                dot += 1
    return comma > dot


def _looks_like_header(rows: list[list[str]], decimal_comma: bool) -> bool:
    """Vote column by column: a text first cell above typed values means a header."""
    if not rows:
        return False
    first = rows[0]
    first_kinds = [classify_cell(cell, decimal_comma) for cell in first]
    if len(rows) == 1:
        return "text" in first_kinds and all(k in ("text", "missing") for k in first_kinds)
    votes = 0
    for j, (cell, head_kind) in enumerate(zip(first, first_kinds)):
        column = [row[j] for row in rows[1:] if j < len(row)]
        kinds = [k for k in (classify_cell(v, decimal_comma) for v in column) if k != "missing"]
        if not kinds or head_kind == "missing":
            continue
        body_kind = Counter(kinds).most_common(1)[0][0]
        if body_kind != "text":
            votes += 1 if head_kind == "text" else -1
        elif cell in column:
            votes -= 1  # a column name does not repeat as a value below it
    if votes:
        return votes > 0
    return all(k == "text" for k in first_kinds) and len(set(first)) == len(first)


def _column_names(rows: list[list[str]], has_header: bool) -> tuple[str, ...]:
    """Column names from the header, as many as the commonest data-row width (column_N if unnamed)."""
    body = rows[1:] if has_header else rows
    width = Counter(len(row) for row in body).most_common(1)[0][0] if body else len(rows[0])
    header = rows[0] if has_header else []
    # Rows, not the header, decide the width: exporters that end each data row with a
    # delimiter (or pad the header) would otherwise make every row look malformed.
    return tuple((header[j].strip() if j < len(header) else "") or f"column_{j + 1}"
                 for j in range(width))
