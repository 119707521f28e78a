"""The progress reporter: the one writer of a running task's progress in `job.meta`.

Writes go through `save_meta()` (one HSET of the meta field, never a full job
save) and are throttled: a task may call it in a tight loop, yet it writes at most
once per JOBS_PROGRESS_MIN_INTERVAL seconds. The first update and the final one
(done == total, 100 %, or an explicit flush) always land, and a throttled update
is written by a timer at the end of the interval, so a task that reports and then
blocks for minutes still shows its latest message. Each write also reads the
task's cancel-request key in the same round trip, so a cancel reaches even a task
whose worker missed rq's stop command, and writes only while the task is still this
run's own (started, on this worker): a run whose task was deleted, or settled by the
reaper while its worker was frozen, is stopped at its next write instead of going on
unseen. A Redis outage does not fail the task: the write waits for the next update.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import redis
from rq.job import Job

from . import keys, settings

#: Longest progress message kept (the rest is cut): it is shown on a status line.
MAX_MESSAGE = 500

#: The message an attempt starts with, until the task reports its own.
STARTED = "Started"

log = logging.getLogger(__name__)

#: Writes meta only while the job is still this run's (its hash whole, started, on this
#: worker); returns -1 if it is not, else whether a cancel was requested.
_WRITE = """
local job = redis.call('hmget', KEYS[1], 'created_at', 'status', 'worker_name')
if not job[1] or job[2] ~= 'started' or job[3] ~= ARGV[2] then return -1 end
redis.call('hset', KEYS[1], 'meta', ARGV[1])
return redis.call('exists', KEYS[2])
"""

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class TaskLost(BaseException):
    """Raised inside a run whose task is no longer its own (deleted, or settled elsewhere).

    A BaseException, so task code cannot swallow it; nothing is recorded for it.
    """


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
        self._cancel_seen = False
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
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
        elif progress.get("message") == STARTED:
            progress["message"] = None  # the task moved on without saying how: "Started" would be stale
        progress["updated_at"] = _now_iso()
        final = percent is not None and percent >= 100.0
        with self._lock:
            self.job.meta["progress"] = progress
            now = self.clock()
            due = final or self._last_write is None or now - self._last_write >= self.min_interval
            if not (due and self._write_or_wait(now)):
                self._pending = True
                since = 0.0 if self._last_write is None else now - self._last_write
                self._arm_timer(self.min_interval - since)
        if self._cancel_seen:
            raise TaskCanceled("Canceled by request")

    def _arm_timer(self, delay: float) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(max(0.0, delay), self._timer_flush)
            self._timer.daemon = True
            self._timer.start()

    def _timer_flush(self) -> None:
        with self._lock:
            if self._pending:
                try:
                    self._write(self.clock())
                except (TaskLost, *_REDIS_DOWN):
                    pass  # the task's next update or flush sees it again

    def flush(self) -> None:
        """Write the latest progress now if a throttled update is waiting."""
        with self._lock:
            if self._pending:
                self._write_or_wait(self.clock())

    def _write_or_wait(self, now: float) -> bool:
        """Write now; during a Redis outage keep the update pending (False) instead of failing the task."""
        try:
            self._write(now)
            return True
        except _REDIS_DOWN as exc:
            log.warning("Task %s: progress not saved, Redis unavailable (%s); will retry", self.job.id, exc)
            return False

    def complete(self) -> None:
        """The attempt succeeded: land the last update, and 100 % for a task that never reported."""
        with self._lock:
            progress = self.job.meta.get("progress") or {}
            if progress.get("message") == STARTED and not progress.get("percent"):
                self.job.meta["progress"] = {**progress, "percent": 100.0, "message": None,
                                             "updated_at": _now_iso()}
                self._pending = True
            if self._pending:
                self._write_or_wait(self.clock())

    def close(self) -> None:
        """Stop the flush timer (the attempt is over)."""
        if self._timer is not None:
            self._timer.cancel()

    def reset(self, attempt: int, max_attempts: int) -> None:
        """Start of an attempt: clear what an earlier attempt left, and write at once."""
        self.job.meta.pop("error", None)
        self.job.meta["attempt"] = {"number": attempt, "of": max_attempts}
        self.job.meta["progress"] = {"percent": 0.0, "done": None, "total": None, "message": STARTED,
                                     "updated_at": _now_iso()}
        with self._lock:
            self._write(self.clock())
        if self._cancel_seen:
            raise TaskCanceled("Canceled before it started")

    def record_error(self, kind: str, error_type: str, message: str) -> None:
        """Store how the attempt failed, for the user (the traceback goes to rq's result)."""
        self.close()
        with self._lock:
            self.job.meta["error"] = {"kind": kind, "type": error_type, "message": message[:MAX_MESSAGE]}
            if kind == "canceled" and isinstance(self.job.meta.get("progress"), dict):
                self.job.meta["progress"] = {**self.job.meta["progress"], "message": message[:MAX_MESSAGE]}
            try:
                self._write(self.clock())
            except TaskLost:
                pass  # not this run's task any more: its outcome is recorded elsewhere
            except _REDIS_DOWN as exc:
                log.warning("Task %s: failure not saved, Redis unavailable (%s)", self.job.id, exc)

    def _write(self, now: float) -> None:
        """One round trip: store meta if the task is still ours, and read the cancel-request key.

        Call with the lock held.
        """
        reply = self.job.connection.eval(_WRITE, 2, self.job.key, keys.cancel_request(self.job.id),
                                         self.job.serializer.dumps(self.job.meta), self.job.worker_name or "")
        if reply == -1:
            raise TaskLost(f"Task {self.job.id} is no longer this run's: it was deleted or settled elsewhere")
        cancel_requested = reply
        self._last_write = now
        self._pending = False
        self.writes += 1
        self._cancel_seen = self._cancel_seen or bool(cancel_requested)


def read_progress(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The progress part of a job's meta, as the task view shows it."""
    progress = meta.get("progress")
    return dict(progress) if isinstance(progress, dict) else None
