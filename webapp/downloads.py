"""Streaming a task's output file with headers that are safe whatever its name."""

from __future__ import annotations

import json
import re
import unicodedata
from itertools import chain
from urllib.parse import quote

from flask import Response

import jobs
from jobs import keys
from jobs.files import read_chunks

_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(; *charset=[\w-]+)?$")
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._()\- ]+")


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback and RFC 5987 `filename*` for the real name.

    Quotes, backslashes, control characters and newlines can never reach the header.
    """
    clean = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    clean = clean.replace("/", "_").replace("\\", "_").strip() or "download"
    ascii_name = unicodedata.normalize("NFKD", clean).encode("ascii", "ignore").decode()
    ascii_name = _UNSAFE_ASCII.sub("_", ascii_name).strip(" ._") or "download"
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != clean:
        header += f"; filename*=UTF-8''{quote(clean, safe='')}"
    return header


def safe_content_type(value: str | None) -> str:
    """The stored content type if it is well formed, else a plain byte stream."""
    return value if value and _CONTENT_TYPE.match(value) else "application/octet-stream"


def output_file(conn, task_id: str, name: str) -> Response:
    """The response streaming output `name` of the task; 404 unknown, 410 expired."""
    raw = conn.hget(keys.outputs(task_id), name)
    if raw is None:
        jobs.get(conn, task_id)  # raises TaskNotFound for an unknown or expired task
        raise jobs.TaskNotFound(f"Task {task_id} has no output file named {name!r}; "
                                "see the task's `files` for the names it produced.")
    info = json.loads(raw)
    chunks = read_chunks(conn, info["id"])
    try:
        first = next(chunks, b"")  # a missing file fails here, before any byte is sent
    except jobs.FileExpired:
        raise jobs.FileExpired(f"Output file {name!r} of task {task_id} is no longer stored (its retention "
                               "passed); retry the task to make it again.") from None
    response = Response(chain([first], chunks), mimetype=None,
                        content_type=safe_content_type(info.get("content_type")))
    response.headers["Content-Disposition"] = content_disposition(name)
    response.headers["Content-Length"] = str(info["size"])
    response.headers["Cache-Control"] = "private, no-store"
    return response
