"""Small named exceptions of the job core; the web layer maps each to one HTTP code."""

from __future__ import annotations


class JobsError(Exception):
    """Base class: every error the public API raises on purpose."""

    code = "error"


class RedisUnavailable(JobsError):
    """Redis cannot be reached; the message names the URL and what to do."""

    code = "redis_unavailable"


class UnknownTaskType(JobsError):
    """A submission names a task type that is not registered."""

    code = "unknown_task_type"


class InvalidParams(JobsError):
    """Parameters failed validation; `fields` maps each bad field to its message."""

    code = "invalid_params"

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = dict(fields or {})


class TaskNotFound(JobsError):
    """No task has this id (never created, deleted, or past its retention)."""

    code = "not_found"


class InvalidTransition(JobsError):
    """The task is in a state where the requested action makes no sense."""

    code = "invalid_state"


class FileTooLarge(JobsError):
    """An uploaded file is over the configured limit."""

    code = "file_too_large"


class FileExpired(JobsError):
    """A stored file is gone: its task's retention passed or it was deleted."""

    code = "file_expired"


class IdempotencyConflict(InvalidParams):
    """An idempotency key already made a task from a different request (type or params)."""

    code = "idempotency_conflict"

    def __init__(self, message: str, task_id: str):
        super().__init__(message, {"idempotency_key": "was used for a different request"})
        self.task_id = task_id
