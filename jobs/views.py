"""Turn what Redis holds about a task into the view the API and pages show.

Reading is one round trip: `queue_reads()` adds the commands to a pipeline, and
`build_view()` turns their replies into the view, with the DESIGN status model.

`build_view()` decodes only the fields the view shows, straight from rq's job hash
and latest result entry, instead of building rq's Job and Result objects: their
restore parses five dates with strptime and resolves the serializer, which took
about a third of a status read's CPU time (docs/performance.md). tests/test_views.py checks
these decoders against rq's own objects for every status.
"""

from __future__ import annotations

import json
import zlib
from base64 import b64decode
from typing import Any, NamedTuple

from rq.exceptions import DeserializationError
from rq.job import JobStatus
from rq.results import Result
from rq.utils import now, utcparse

from . import keys
from .connection import SERIALIZER
from .errors import TaskNotFound, UnknownTaskType
from .reaper import WORKER_LOST_PREFIX
from .registry import get_task_type
from .rqjob import TaskJob

STATUSES = ("pending", "scheduled", "queued", "processing", "completed", "failed", "canceled")
FINAL_STATUSES = ("completed", "failed", "canceled")

_RQ_TO_STATUS = {
    JobStatus.CREATED: "pending",
    JobStatus.DEFERRED: "pending",
    JobStatus.SCHEDULED: "scheduled",
    JobStatus.QUEUED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.STARTED: "processing",
    JobStatus.FINISHED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "canceled",
    JobStatus.CANCELED: "canceled",
}

#: The same, keyed by the status string stored in the job hash (a str Enum hashes by name).
_STORED_TO_STATUS = {rq_status.value: status for rq_status, status in _RQ_TO_STATUS.items()}
_SUCCESSFUL, _FAILED = Result.Type.SUCCESSFUL.value, Result.Type.FAILED.value

#: Number of pipeline replies `queue_reads` adds per task.
READS_PER_TASK = 5


def queue_reads(pipe, task_id: str) -> None:
    """Add the reads one task view needs to `pipe`."""
    job_key = TaskJob.key_for(task_id)
    pipe.hgetall(job_key)
    pipe.xrevrange(Result.get_key(task_id), "+", "-", count=1)
    pipe.hgetall(keys.outputs(task_id))
    pipe.exists(keys.cancel_request(task_id))
    pipe.zscore(keys.task_index(), task_id)


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def not_found(task_id: str, in_index: bool) -> TaskNotFound:
    """A 404 that says why: expired tasks and unknown ids read differently."""
    if in_index:
        err = TaskNotFound(f"Task {task_id} has expired: its retention passed and Redis removed it.")
        err.expired = True
    else:
        err = TaskNotFound(f"No task has id {task_id!r}: check the id, or it was deleted.")
        err.expired = False
    return err


def build_view(conn, task_id: str, replies: list[Any]) -> dict[str, Any]:
    """The task view from the replies of `queue_reads` (raises TaskNotFound); `conn` is not used."""
    raw, latest, outputs, cancel_requested, index_score = replies
    if not raw or b"data" not in raw:
        raise not_found(task_id, index_score is not None)
    job = StoredJob.decode(raw)
    result = StoredResult.decode(latest[0][1]) if latest else None
    kwargs = job.kwargs
    type_name = kwargs.get("task_type")
    meta = job.meta
    status = _STORED_TO_STATUS.get(job.status, "queued")
    error = meta.get("error") if isinstance(meta.get("error"), dict) else None
    if status == "failed" and error and error.get("kind") == "canceled":
        status = "canceled"

    view: dict[str, Any] = {
        "id": task_id,
        "type": type_name,
        "status": status,
        "params": kwargs.get("params") or {},
        "progress": meta.get("progress") if isinstance(meta.get("progress"), dict) else None,
        "error": None,
        "result": None,
        "files": _files(outputs),
        "attempt": _attempt(job, meta, type_name),
        "worker": job.worker_name if status == "processing" else (result.worker_name if result else None) or None,
        "cancel_requested": bool(cancel_requested) and status not in FINAL_STATUSES,
        "created_at": job.created_at,
        "enqueued_at": job.enqueued_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "queue": job.origin,
    }
    if status == "completed" and result is not None and result.type == _SUCCESSFUL:
        view["result"] = result.return_value
    if status in ("failed", "canceled") or (status in ("queued", "scheduled") and error):
        view["error"] = _error(status, error, result)
    return view


def _stored_date(value: bytes | None) -> str | None:
    """A date rq stored with utcformat (2026-01-02T03:04:05.678901Z) as a view date (…05.678Z)."""
    if not value:
        return None
    text = value.decode()
    if len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z":
        return text[:23] + "Z"  # what isoformat(timespec="milliseconds") gives: truncated, not rounded
    return _iso(utcparse(text))  # rq's older format without microseconds


class StoredJob(NamedTuple):
    """The fields of rq's job hash the view shows, decoded as rq 3.0's Job.restore does."""

    status: str
    kwargs: dict
    meta: dict
    retries_left: int | None
    worker_name: str | None
    origin: str | None
    created_at: str | None
    enqueued_at: str | None
    started_at: str | None
    ended_at: str | None

    @classmethod
    def decode(cls, raw: dict[bytes, bytes]) -> "StoredJob":
        data = raw[b"data"]
        try:
            data = zlib.decompress(data)
        except zlib.error:
            pass  # rq also accepts uncompressed data
        try:
            kwargs = SERIALIZER.loads(data)[3] or {}  # (func_name, instance, args, kwargs)
        except Exception as exc:
            raise DeserializationError() from exc
        try:
            meta = SERIALIZER.loads(raw[b"meta"]) if raw.get(b"meta") else {}
        except Exception:
            meta = {}
        return cls(
            status=raw[b"status"].decode() if raw.get(b"status") else JobStatus.CREATED.value,
            kwargs=kwargs if isinstance(kwargs, dict) else {},
            meta=meta if isinstance(meta, dict) else {},
            retries_left=int(raw[b"retries_left"]) if raw.get(b"retries_left") else None,
            worker_name=raw[b"worker_name"].decode() if raw.get(b"worker_name") else None,
            origin=raw[b"origin"].decode() if raw.get(b"origin") else None,
            created_at=_stored_date(raw.get(b"created_at")) or _iso(now()),
            enqueued_at=_stored_date(raw.get(b"enqueued_at")),
            started_at=_stored_date(raw.get(b"started_at")),
            ended_at=_stored_date(raw.get(b"ended_at")),
        )


class StoredResult(NamedTuple):
    """The fields of rq's latest result entry the view shows, decoded as rq 3.0's Result.restore does."""

    type: int
    return_value: Any
    exc_string: str | None
    worker_name: str

    @classmethod
    def decode(cls, payload: dict[bytes, bytes]) -> "StoredResult":
        value, exc = payload.get(b"return_value"), payload.get(b"exc_string")
        return cls(
            type=int(payload[b"type"]),
            return_value=SERIALIZER.loads(b64decode(value)) if value is not None else None,
            exc_string=zlib.decompress(b64decode(exc)).decode() if exc else None,
            worker_name=payload[b"worker_name"].decode() if payload.get(b"worker_name") else "",
        )


def _files(outputs: dict) -> list[dict]:
    entries = []
    for name, raw in sorted((outputs or {}).items()):
        info = json.loads(raw)
        entries.append({"name": name.decode(), "size": info["size"], "content_type": info["content_type"]})
    return entries


def _attempt(job: StoredJob, meta: dict, type_name: str | None) -> dict:
    try:
        of = get_task_type(type_name).retry.max_attempts
    except UnknownTaskType:
        of = (meta.get("attempt") or {}).get("of", 1)
    if job.retries_left is not None and job.status not in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
        number = max(1, of - job.retries_left)
    else:
        number = (meta.get("attempt") or {}).get("number", 1)
    return {"number": number, "of": of}


def _error(status: str, recorded: dict | None, result: StoredResult | None) -> dict:
    """Kind, user message and operator traceback of a failed, canceled or retrying task."""
    traceback = result.exc_string if result is not None and result.type == _FAILED else None
    if status == "canceled":
        return {"kind": "canceled", "type": "Canceled",
                "message": "Canceled by request" if not recorded else recorded.get("message", "Canceled"),
                "traceback": traceback}
    if recorded:
        return {"kind": recorded.get("kind", "exception"), "type": recorded.get("type"),
                "message": recorded.get("message", ""), "traceback": traceback}
    text = traceback or ""
    if text.startswith(WORKER_LOST_PREFIX):
        return {"kind": "worker_lost", "type": "WorkerLost", "message": text.splitlines()[0][len(WORKER_LOST_PREFIX):].strip(),
                "traceback": text}
    if "TimeLimitExceeded" in text or "JobTimeoutException" in text:
        return {"kind": "timeout", "type": "TimeLimitExceeded", "message": "Task exceeded its time limit",
                "traceback": text}
    last = text.strip().splitlines()[-1] if text.strip() else "The task failed"
    return {"kind": "exception", "type": last.split(":", 1)[0] if ":" in last else None,
            "message": last.split(":", 1)[-1].strip() if ":" in last else last, "traceback": text}

