"""Turn what Redis holds about a task into the view the API and pages show.

Reading is one round trip: `queue_reads()` adds the commands to a pipeline, and
`build_view()` turns their replies into the view, with the DESIGN status model.
"""

from __future__ import annotations

import json
from typing import Any

from rq.job import JobStatus
from rq.results import Result

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
    """The task view from the replies of `queue_reads` (raises TaskNotFound)."""
    raw, latest, outputs, cancel_requested, index_score = replies
    if not raw or b"data" not in raw:
        raise not_found(task_id, index_score is not None)
    job = TaskJob(task_id, connection=conn, serializer=SERIALIZER)
    job.restore(raw)
    result = Result.restore(task_id, latest[0][0].decode(), latest[0][1], connection=conn,
                            serializer=SERIALIZER) if latest else None
    kwargs = job.kwargs or {}
    type_name = kwargs.get("task_type")
    meta = job.meta if isinstance(job.meta, dict) else {}
    status = _RQ_TO_STATUS.get(job.get_status(refresh=False), "queued")
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
        "created_at": _iso(job.created_at),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "queue": job.origin or None,
    }
    if status == "completed" and result is not None and result.type == Result.Type.SUCCESSFUL:
        view["result"] = result.return_value
    if status in ("failed", "canceled") or (status in ("queued", "scheduled") and error):
        view["error"] = _error(status, error, result)
    return view


def _files(outputs: dict) -> list[dict]:
    entries = []
    for name, raw in sorted((outputs or {}).items()):
        info = json.loads(raw)
        entries.append({"name": name.decode(), "size": info["size"], "content_type": info["content_type"]})
    return entries


def _attempt(job: TaskJob, meta: dict, type_name: str | None) -> dict:
    try:
        of = get_task_type(type_name).retry.max_attempts
    except UnknownTaskType:
        of = (meta.get("attempt") or {}).get("of", 1)
    if job.retries_left is not None and job.get_status(refresh=False) not in (JobStatus.FAILED, JobStatus.STOPPED):
        number = max(1, of - job.retries_left)
    else:
        number = (meta.get("attempt") or {}).get("number", 1)
    return {"number": number, "of": of}


def _error(status: str, recorded: dict | None, result: Result | None) -> dict:
    """Kind, user message and operator traceback of a failed, canceled or retrying task."""
    traceback = result.exc_string if result is not None and result.type == Result.Type.FAILED else None
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
