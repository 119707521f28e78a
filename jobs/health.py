"""What a health check asks of the job core: which workers are alive, how deep the queues are."""

from __future__ import annotations

from datetime import timedelta

import redis
from rq import Queue, Worker
from rq.utils import now

from . import settings
from .connection import SERIALIZER


def liveness_window() -> int:
    """Seconds without a heartbeat after which a worker counts as dead.

    Idle workers heartbeat every JOBS_REAP_INTERVAL, busy ones every
    JOBS_HEARTBEAT_INTERVAL; rq keeps a killed worker's record for minutes.
    """
    return max(settings.REAP_INTERVAL, settings.HEARTBEAT_INTERVAL) + settings.LOST_AFTER


def live_workers(conn: redis.Redis) -> list[str]:
    """Names of the workers that heartbeated within the liveness window, sorted."""
    cutoff = now() - timedelta(seconds=liveness_window())
    return sorted(worker.name for worker in Worker.all(connection=conn, serializer=SERIALIZER)
                  if worker.last_heartbeat is not None and worker.last_heartbeat >= cutoff)


def queue_depths(conn: redis.Redis) -> dict[str, int]:
    """Tasks waiting in each known queue (configured ones included, even when empty)."""
    names = sorted({q.name for q in Queue.all(connection=conn, serializer=SERIALIZER)} | set(settings.QUEUES))
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(Queue(name, connection=conn, serializer=SERIALIZER).key)
        return dict(zip(names, pipe.execute()))
