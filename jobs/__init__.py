"""The job core: task types, submit/status/cancel/retry over RQ, progress in job.meta.

Public API only; see README.md for a tour. Importing this package opens no
connection and loads neither Flask nor the web app.
"""

from .api import cancel, delete, get, list_tasks, retry, start, submit
from .connection import SERIALIZER, check, connect
from .context import TaskContext
from .errors import (FileExpired, FileTooLarge, IdempotencyConflict, InvalidParams, InvalidTransition, JobsError,
                     RedisUnavailable, TaskNotFound, UnknownTaskType)
from .files import InputFile
from .registry import TaskType, get_task_type, task_type, task_types
from .views import FINAL_STATUSES, STATUSES

__all__ = [
    "FINAL_STATUSES", "STATUSES", "SERIALIZER",
    "FileExpired", "FileTooLarge", "IdempotencyConflict", "InputFile", "InvalidParams", "InvalidTransition", "JobsError",
    "RedisUnavailable", "TaskContext", "TaskNotFound", "TaskType", "UnknownTaskType",
    "cancel", "check", "connect", "delete", "get", "get_task_type", "list_tasks", "retry", "start", "submit",
    "task_type", "task_types",
]
