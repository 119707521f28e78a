"""GET /healthz: what a load balancer or an operator needs to know in one call."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify
from rq import Queue, Worker

import jobs
from jobs import settings as job_settings
from jobs.connection import SERIALIZER

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when Redis answers and at least one worker is alive, else 503 with the reason."""
    conn = current_app.extensions["jobs_redis"]
    try:
        jobs.check(conn)
        workers = Worker.all(connection=conn, serializer=SERIALIZER)
        names = sorted({q.name for q in Queue.all(connection=conn, serializer=SERIALIZER)} | set(job_settings.QUEUES))
        with conn.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(Queue(name, connection=conn, serializer=SERIALIZER).key)
            depths = dict(zip(names, pipe.execute()))
    except (jobs.RedisUnavailable, redis.exceptions.RedisError) as exc:
        body = {"status": "unavailable", "reason": str(exc), "redis": False, "workers": 0,
                "worker_names": [], "queues": {}}
        return _answer(body, 503)
    body = {"status": "ok", "redis": True, "workers": len(workers),
            "worker_names": sorted(w.name for w in workers), "queues": depths}
    if not workers:
        body.update(status="unavailable", reason="No worker is alive: start one with the Procfile's worker line.")
        return _answer(body, 503)
    return _answer(body, 200)


def _answer(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
