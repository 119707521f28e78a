"""Finds tasks whose worker died and settles them within seconds, not rq's minutes.

A running task's worker refreshes the task's entry in rq's StartedJobRegistry
every JOBS_HEARTBEAT_INTERVAL seconds, with a lease of that plus JOBS_LOST_AFTER.
Every worker, idle or busy, looks for expired leases every JOBS_REAP_INTERVAL seconds: a
task of a rerun-safe type is requeued (at most MAX_CRASH_REQUEUES times), any
other fails with kind `worker_lost`.
"""

from __future__ import annotations

import logging

import redis
from rq.job import JobStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import CanceledJobRegistry, StartedJobRegistry
from rq.utils import current_timestamp

from . import keys
from .connection import SERIALIZER, queue
from .errors import UnknownTaskType
from .registry import get_task_type
from .rqjob import TaskJob

log = logging.getLogger(__name__)

#: How often one task may be requeued after worker crashes before it fails.
MAX_CRASH_REQUEUES = 3

#: The text rq's failure record starts with when we fail a task for a lost worker.
WORKER_LOST_PREFIX = "WorkerLost:"


def should_requeue(conn: redis.Redis, job: TaskJob, pipe=None) -> bool:
    """True if the task's type is rerun-safe and it has crash requeues left (counts this one).

    With `pipe` (a transaction), the count is raised only if that transaction is applied.
    """
    try:
        ttype = get_task_type((job.kwargs or {}).get("task_type"))
    except UnknownTaskType:
        return False
    if not ttype.rerun_safe:
        return False
    crashes = int(conn.get(keys.crash_count(job.id)) or 0) + 1
    target = conn.pipeline(transaction=False) if pipe is None else pipe
    target.incr(keys.crash_count(job.id))
    target.expire(keys.crash_count(job.id), 7 * 24 * 3600)
    if pipe is None:
        target.execute()
    return crashes <= MAX_CRASH_REQUEUES


def lost_message(reason: str) -> str:
    """The failure text recorded for a task whose worker went away."""
    return (f"{WORKER_LOST_PREFIX} {reason}. The task may have been cut off part way; "
            "retry it if it is safe to run again.")


def reap_lost_tasks(conn: redis.Redis, queue_names: list[str]) -> list[str]:
    """Settle every task on `queue_names` whose worker stopped heartbeating; return their ids.

    Each task is settled in a transaction watching its record, so when several workers
    reap at the same moment exactly one of them requeues or fails it.
    """
    settled: list[str] = []
    for name in queue_names:
        q = queue(conn, name)
        registry = StartedJobRegistry(name, connection=conn, job_class=TaskJob, serializer=SERIALIZER)
        cutoff = current_timestamp()
        for job_id in dict.fromkeys(registry.get_expired_job_ids(cutoff)):
            try:
                if _settle_lost_task(conn, q, job_id):
                    settled.append(job_id)
            except redis.WatchError:
                continue  # another reaper, or the worker itself, settled it meanwhile
        conn.zremrangebyscore(registry.key, 0, cutoff)
    return settled


def _settle_lost_task(conn: redis.Redis, q, job_id: str) -> bool:
    with conn.pipeline() as pipe:
        pipe.watch(TaskJob.key_for(job_id))
        try:
            job = TaskJob.fetch(job_id, connection=conn, serializer=SERIALIZER)
        except Exception:  # gone or unreadable: nothing left to settle
            return False
        if job.get_status(refresh=False) != JobStatus.STARTED:
            return False
        pipe.multi()
        requeue = should_requeue(conn, job, pipe)
        if requeue:
            job.retries_left = (job.retries_left or 0) + 1  # a crash re-run is not a new attempt
            job.retry(q, pipe)
        else:
            record_job_failure(job, lost_message("its worker stopped responding (crashed or was killed)"), pipe)
        pipe.execute()
    log.warning("Task %s: its worker died; %s", job_id,
                "requeued (type is rerun-safe)" if requeue else "marked failed (worker_lost)")
    return True


def trim_canceled(conn: redis.Redis, queue_names: list[str]) -> None:
    """Drop canceled-registry entries past their retention (rq never cleans that registry)."""
    cutoff = current_timestamp()
    with conn.pipeline(transaction=False) as pipe:
        for name in queue_names:
            pipe.zremrangebyscore(CanceledJobRegistry(name, connection=conn).key, 0, cutoff)
        pipe.execute()
