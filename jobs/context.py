"""What a task function receives as its first argument."""

from __future__ import annotations

import io
import json
from typing import BinaryIO

from rq.job import Job

from . import files, keys
from .progress import ProgressReporter


class TaskContext:
    """The running task's handle: report progress, save output files, know who you are."""

    def __init__(self, job: Job, reporter: ProgressReporter, *, task_type: str, attempt: int,
                 max_attempts: int, files_ttl: int, scratch_dir: str):
        self.job = job
        self.id = job.id
        self.task_type = task_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.scratch_dir = scratch_dir
        self._reporter = reporter
        self._files_ttl = files_ttl

    def progress(self, percent: float | None = None, *, done: int | None = None, total: int | None = None,
                 message: str | None = None) -> None:
        """Report progress: `ctx.progress(40, message=...)` or `ctx.progress(done=4, total=10)`.

        Cheap to call in a tight loop: writes are throttled. Raises TaskCanceled
        when the task's cancel was requested.
        """
        self._reporter.update(percent, done=done, total=total, message=message)

    def save_file(self, name: str, data: bytes | BinaryIO, content_type: str | None = None) -> dict:
        """Store an output file; it is listed in the task view and downloadable by name."""
        stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        ref = files.store_file(self.job.connection, stream, name, ttl=self._files_ttl,
                               content_type=content_type, max_bytes=2**40)
        entry = {"id": ref.id, "size": ref.size, "content_type": ref.content_type}
        with self.job.connection.pipeline(transaction=False) as pipe:
            pipe.hset(keys.outputs(self.id), ref.name, json.dumps(entry))
            pipe.expire(keys.outputs(self.id), self._files_ttl)
            pipe.execute()
        return {"name": ref.name, **entry}
