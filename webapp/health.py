"""GET /healthz: what a load balancer or an operator needs to know in one call."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

import jobs
from jobs.health import liveness_window, live_workers, queue_depths

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when Redis answers and at least one worker is alive, else 503 with the reason."""
    conn = current_app.extensions["jobs_redis"]
    try:
        jobs.check(conn)
        workers = live_workers(conn)
        depths = queue_depths(conn)
    except (jobs.RedisUnavailable, redis.exceptions.RedisError) as exc:
        body = {"status": "unavailable", "reason": str(exc), "redis": False, "workers": 0,
                "worker_names": [], "queues": {}}
        return _answer(body, 503)
    body = {"status": "ok", "redis": True, "workers": len(workers), "worker_names": workers, "queues": depths}
    if not workers:
        body.update(status="unavailable", reason=f"No worker has heartbeated in the last {liveness_window()} s: "
                                                 "start one with the Procfile's worker line.")
        return _answer(body, 503)
    return _answer(body, 200)


def _answer(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
