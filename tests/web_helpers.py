"""Shared helpers of the web tests: building apps, running queued tasks, reading CSRF tokens."""

from __future__ import annotations

import re

from jobs.connection import queue
from jobs.worker import TaskWorker

import tests.web_task_fixtures  # noqa: F401  (registers the web test task types)

SECRET = "test-secret-key"


def make_app(redis_url: str, **config):
    """An app on the test Redis, built through create_app like production."""
    from webapp import create_app

    return create_app({"TESTING": True, "SECRET_KEY": SECRET, "REDIS_URL": redis_url, **config})


def run_queued(conn, queues=("default",)) -> None:
    """Run every queued task to its end with a real rq worker in burst mode."""
    worker = TaskWorker([queue(conn, name) for name in queues], connection=conn)
    worker.work(burst=True, logging_level="WARNING")


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def idempotency_key(html: str) -> str:
    """The hidden idempotency key of the task form."""
    match = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert match, "form has no idempotency key"
    return match.group(1)
