"""The progress reporter: the one writer of a running task's progress in `job.meta`.

Writes go through `save_meta()` (one HSET of the meta field, never a full job
save) and are throttled: a task may call it in a tight loop, yet it writes at most
once per JOBS_PROGRESS_MIN_INTERVAL seconds. The first update and the final one
(done == total, 100 %, or an explicit flush) always land. Each write also reads the
task's cancel-request key in the same round trip, so a cancel reaches even a task
whose worker missed rq's stop command.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from rq.job import Job

from . import keys, settings

#: Longest progress message kept (the rest is cut): it is shown on a status line.
MAX_MESSAGE = 500


class TaskCanceled(BaseException):
    """Raised inside a task whose cancel was requested.

    A BaseException, like KeyboardInterrupt, so `except Exception` in task code
    does not swallow it.
    """


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ProgressReporter:
    """Throttled writer of `meta['progress']` (and `meta['error']`) for one job."""

    def __init__(self, job: Job, *, min_interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.job = job
        self.min_interval = settings.PROGRESS_MIN_INTERVAL if min_interval is None else min_interval
        self.clock = clock
        self._last_write: float | None = None
        self._pending = False
        self.writes = 0

    def update(self, percent: float | None = None, *, done: int | None = None, total: int | None = None,
               message: str | None = None) -> None:
        """Record progress as a percent, or as done/total (percent is then derived)."""
        if percent is None and done is not None and total:
            percent = 100.0 * done / total
        if percent is not None:
            percent = round(min(100.0, max(0.0, float(percent))), 2)
        progress = dict(self.job.meta.get("progress") or {})
        progress.update(percent=percent, done=done, total=total)
        if message is not None:
            progress["message"] = str(message)[:MAX_MESSAGE]
        progress["updated_at"] = _now_iso()
        self.job.meta["progress"] = progress
        final = percent is not None and percent >= 100.0
        now = self.clock()
        if final or self._last_write is None or now - self._last_write >= self.min_interval:
            self._write(now)
        else:
            self._pending = True

    def flush(self) -> None:
        """Write the latest progress now if a throttled update is waiting."""
        if self._pending:
            self._write(self.clock())

    def reset(self, attempt: int, max_attempts: int) -> None:
        """Start of an attempt: clear what an earlier attempt left, and write at once."""
        self.job.meta.pop("error", None)
        self.job.meta["attempt"] = {"number": attempt, "of": max_attempts}
        self.job.meta["progress"] = {"percent": 0.0, "done": None, "total": None, "message": "Started",
                                     "updated_at": _now_iso()}
        self._write(self.clock(), check_cancel=True)

    def record_error(self, kind: str, error_type: str, message: str) -> None:
        """Store how the attempt failed, for the user (the traceback goes to rq's result)."""
        self.job.meta["error"] = {"kind": kind, "type": error_type, "message": message[:MAX_MESSAGE]}
        self._write(self.clock(), check_cancel=False)

    def _write(self, now: float, check_cancel: bool = True) -> None:
        conn = self.job.connection
        with conn.pipeline(transaction=False) as pipe:
            pipe.hset(self.job.key, "meta", self.job.serializer.dumps(self.job.meta))
            pipe.exists(keys.cancel_request(self.job.id))
            _, cancel_requested = pipe.execute()
        self._last_write = now
        self._pending = False
        self.writes += 1
        if check_cancel and cancel_requested:
            raise TaskCanceled("Canceled by request")


def read_progress(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The progress part of a job's meta, as the task view shows it."""
    progress = meta.get("progress")
    return dict(progress) if isinstance(progress, dict) else None
