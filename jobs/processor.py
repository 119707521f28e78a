"""What a worker runs for every task.

rq calls `run_task(task_type=..., params=...)`: it looks up the registered type,
validates the params again (they were stored as JSON), fetches input files,
hands the function a TaskContext, enforces the time limit, and records how the
attempt ended. Errors are never swallowed: the exception goes back to rq, which
marks the job failed (or retries it); only the user-facing summary is added to
meta first.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

from pydantic import ValidationError
from rq import get_current_job
from rq.exceptions import ShutDownImminentException

from . import files, settings
from .context import TaskContext
from .progress import ProgressReporter, TaskCanceled
from .registry import get_task_type

#: Exit status of a task process killed for ignoring its time limit.
TIME_LIMIT_EXIT_CODE = 124


class TimeLimitExceeded(BaseException):
    """Raised in a task that ran past its time limit.

    A BaseException so that task code catching `Exception` cannot swallow it;
    code that swallows even this is killed after JOBS_TIME_LIMIT_GRACE seconds.
    """


class TaskResultError(TypeError):
    """The task returned something that cannot be stored as JSON."""


@contextmanager
def time_limit(seconds: int, grace: int, on_kill) -> Iterator[dict]:
    """Raise TimeLimitExceeded after `seconds`; kill the process `grace` seconds later.

    Yields a dict whose "expired" turns true when the limit passed, so code that
    swallowed the exception and returned in time still counts as timed out.
    """
    state = {"expired": False}

    def hard_kill(signum, frame):
        on_kill()
        os._exit(TIME_LIMIT_EXIT_CODE)

    def expire(signum, frame):
        state["expired"] = True
        signal.signal(signal.SIGALRM, hard_kill)
        signal.setitimer(signal.ITIMER_REAL, grace)
        raise TimeLimitExceeded(f"Task exceeded its time limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt_numbers(job, max_attempts: int) -> tuple[int, int]:
    """(attempt n, of m) from rq's remaining-retries counter."""
    left = job.retries_left if job.retries_left is not None else 0
    return max(1, max_attempts - left), max_attempts


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, or its type name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_task(task_type: str, params: dict[str, Any]) -> Any:
    """Run one attempt of a task inside an rq worker."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_task must run inside an rq worker")
    ttype = get_task_type(task_type)
    attempt, max_attempts = attempt_numbers(job, ttype.retry.max_attempts)
    reporter = ProgressReporter(job)
    try:
        reporter.reset(attempt, max_attempts)
        kwargs = ttype.load(params)
    except TaskCanceled as exc:
        reporter.record_error("canceled", "TaskCanceled", "Canceled before it started")
        job.retries_left = 0
        raise exc
    except ValidationError as exc:
        reporter.record_error("exception", "InvalidParams", f"Invalid parameters: {one_line(exc)}")
        job.retries_left = 0
        raise

    with tempfile.TemporaryDirectory(prefix=f"task-{job.id}-") as scratch, _closing(reporter):
        try:
            for value in kwargs.values():
                if isinstance(value, files.InputFile):
                    value._path = files.copy_to_path(job.connection, value, scratch)
            files_ttl = ttype.time_limit + max(ttype.result_ttl, ttype.failure_ttl)
            ctx = TaskContext(job, reporter, task_type=ttype.name, attempt=attempt, max_attempts=max_attempts,
                              files_ttl=files_ttl, scratch_dir=scratch)

            def record_kill():
                reporter.record_error("timeout", "TimeLimitExceeded",
                                      f"Task exceeded its time limit of {ttype.time_limit} s and was killed")

            with time_limit(ttype.time_limit, settings.TIME_LIMIT_GRACE, record_kill) as limit:
                result = ttype.func(ctx, **kwargs)
            if limit["expired"]:  # the task swallowed the timeout and returned anyway
                raise TimeLimitExceeded(f"Task exceeded its time limit of {ttype.time_limit} s")
            _check_json(result)
            reporter.complete()
            return result
        except TimeLimitExceeded as exc:
            reporter.record_error("timeout", "TimeLimitExceeded", str(exc))
            raise
        except TaskCanceled:
            reporter.record_error("canceled", "TaskCanceled", "Canceled while running")
            job.retries_left = 0
            raise
        except ShutDownImminentException:
            reporter.record_error("worker_lost", "WorkerShutdown",
                                  "The worker was shut down (a deploy or restart) while the task ran")
            raise
        except Exception as exc:
            reporter.flush()
            reporter.record_error("exception", type(exc).__name__, one_line(exc))
            raise


@contextmanager
def _closing(reporter: ProgressReporter) -> Iterator[None]:
    try:
        yield
    finally:
        reporter.close()


def _check_json(result: Any) -> None:
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TaskResultError(f"The task's result cannot be stored as JSON ({exc}); return dicts, lists, "
                              "strings, numbers, booleans or None.") from None
