"""The rq Job class every process uses (enqueuer, worker, reaper).

One change to rq's Job: a job object that was *read* from Redis never writes its
`meta` back with a full `save()`. rq's retry and failure paths save the whole
hash from whatever copy of the job they hold; without this, progress written by
the running task in the meantime would be overwritten by a stale copy. Meta is
written only by the progress reporter, with `save_meta()`.
"""

from __future__ import annotations

from rq.job import Job


class TaskJob(Job):
    """rq Job whose full saves keep meta only when this process created the job."""

    _meta_owned = False

    @classmethod
    def create(cls, *args, **kwargs):
        job = super().create(*args, **kwargs)
        job._meta_owned = True
        return job

    def restore(self, raw_data):
        self._meta_owned = False
        return super().restore(raw_data)

    def save(self, pipeline=None, include_meta: bool = True, include_result: bool = True):
        super().save(pipeline=pipeline, include_meta=include_meta and self._meta_owned,
                     include_result=include_result)
