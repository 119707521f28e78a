"""Names of the Redis keys the job core keeps beside rq's own."""

from __future__ import annotations

from . import settings


def cancel_request(task_id: str) -> str:
    """Set by the web side to ask a running task to stop; read by the progress reporter."""
    return f"{settings.KEY_PREFIX}cancel:{task_id}"


def idempotency(key: str) -> str:
    """Maps a client's Idempotency-Key to the task it created."""
    return f"{settings.KEY_PREFIX}idem:{key}"


def task_index() -> str:
    """Sorted set of every task id, scored by creation time (newest first listing)."""
    return f"{settings.KEY_PREFIX}index"


def type_index(type_name: str) -> str:
    """Sorted set of the task ids of one type, scored by creation time."""
    return f"{settings.KEY_PREFIX}index:type:{type_name}"


def crash_count(task_id: str) -> str:
    """How often a rerun-safe task was requeued after its worker died."""
    return f"{settings.KEY_PREFIX}crashes:{task_id}"


def outputs(task_id: str) -> str:
    """Hash of the files a task produced: name -> JSON {id, size, content_type}."""
    return f"{settings.KEY_PREFIX}outputs:{task_id}"
