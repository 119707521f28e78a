"""How a task's data reads on a page: result tables, times, form values."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

#: Rows shown per result table; the rest is one click away in the JSON API.
MAX_ROWS = 500


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)


def table(rows: list[dict]) -> dict:
    """Columns (first-seen order over all rows) and cell texts of a list of dicts."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    shown = rows[:MAX_ROWS]
    return {"columns": columns, "rows": [[cell(row.get(col)) for col in columns] for row in shown],
            "hidden": len(rows) - len(shown)}


def cell(value: Any) -> str:
    """A table cell's text: scalars as they are, anything nested as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def result_blocks(result: Any) -> list[dict]:
    """The result as blocks to render: tables for lists of dicts, pretty JSON for the rest."""
    if result is None:
        return []
    if _is_table(result):
        return [{"kind": "table", "title": None, **table(result)}]
    if isinstance(result, dict) and any(_is_table(v) for v in result.values()):
        blocks = []
        rest = {k: v for k, v in result.items() if not _is_table(v)}
        if rest:
            blocks.append({"kind": "pairs", "title": None, "pairs": [(k, cell(v)) for k, v in rest.items()]})
        blocks.extend({"kind": "table", "title": k, **table(v)} for k, v in result.items() if _is_table(v))
        return blocks
    return [{"kind": "json", "title": None, "text": json.dumps(result, indent=2, ensure_ascii=False)}]


def parse_time(value: str | None) -> datetime | None:
    """A view's ISO time as an aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def duration(seconds: float | None) -> str:
    """Seconds as '2 h 03 min', '4 min 05 s' or '7 s'."""
    if seconds is None:
        return "—"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def timing(view: dict, now: datetime | None = None) -> dict:
    """Elapsed time since start and an estimate of the time left from the percent done."""
    started, ended = parse_time(view.get("started_at")), parse_time(view.get("ended_at"))
    now = now or datetime.now(timezone.utc)
    elapsed = ((ended or now) - started).total_seconds() if started else None
    percent = (view.get("progress") or {}).get("percent")
    left = None
    if view["status"] == "processing" and elapsed is not None and percent and 0 < percent < 100:
        left = elapsed * (100 - percent) / percent
    return {"elapsed": duration(elapsed), "left": duration(left) if left is not None else "—"}


def input_value(spec, value: Any) -> str:
    """A param's value as an <input> expects it (datetime-local has no zone or fraction)."""
    if value is None:
        return ""
    if spec.kind == "datetime" and isinstance(value, str):
        return value.replace("Z", "").split("+")[0].split(".")[0]
    return str(value)
