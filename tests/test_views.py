"""jobs.views decodes rq's stored job hash and result entry itself: check it against rq's own objects."""

from __future__ import annotations

from rq.job import Job
from rq.results import Result
from rq.utils import utcparse

import jobs
from jobs.connection import SERIALIZER, queue
from jobs.rqjob import TaskJob
from jobs.views import StoredJob, StoredResult, _iso, _stored_date
from jobs.worker import TaskWorker


def run_queued(conn) -> None:
    TaskWorker([queue(conn, "default")], connection=conn).work(burst=True, logging_level="WARNING")


def test_decoders_agree_with_rq_in_every_state(conn):
    ids = [jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})["id"],
           jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0, "fail_at_step": 1})["id"],
           jobs.submit(conn, "flaky", {"succeed_on": 3})["id"]]
    run_queued(conn)  # completed, failed, and a failed attempt waiting for its retry
    ids += [jobs.submit(conn, "demo", {"steps": 2})["id"],
            jobs.submit(conn, "demo", {}, start=False)["id"],
            jobs.submit(conn, "demo", {}, delay=60)["id"]]
    canceled = jobs.submit(conn, "demo", {})["id"]
    jobs.cancel(conn, canceled)
    ids.append(canceled)
    seen = set()
    for task_id in ids:
        job = Job.fetch(task_id, connection=conn, serializer=SERIALIZER)
        stored = StoredJob.decode(conn.hgetall(TaskJob.key_for(task_id)))
        assert stored.status == job.get_status(refresh=False).value
        assert (stored.kwargs, stored.meta, stored.retries_left) == (job.kwargs, job.meta, job.retries_left)
        assert (stored.worker_name, stored.origin) == (job.worker_name, job.origin)
        for name in ("created_at", "enqueued_at", "started_at", "ended_at"):
            assert getattr(stored, name) == _iso(getattr(job, name)), name
        latest = job.latest_result()
        entries = conn.xrevrange(Result.get_key(task_id), "+", "-", count=1)
        assert (latest is None) == (not entries)
        if latest is not None:
            result = StoredResult.decode(entries[0][1])
            assert result.type == latest.type.value and result.return_value == latest.return_value
            assert (result.exc_string, result.worker_name) == (latest.exc_string, latest.worker_name)
        seen.add(jobs.get(conn, task_id)["status"])
    assert seen == {"completed", "failed", "queued", "pending", "scheduled", "canceled"}
    assert jobs.get(conn, ids[2])["attempt"] == {"number": 2, "of": 3}  # from retries_left


def test_stored_dates_read_like_rq_parses_them():
    for text in ("2026-01-02T03:04:05.678999Z", "2026-01-02T03:04:05.000001Z", "2026-01-02T03:04:05Z"):
        assert _stored_date(text.encode()) == _iso(utcparse(text))
    assert _stored_date(b"2026-01-02T03:04:05.678999Z") == "2026-01-02T03:04:05.678Z"
    assert _stored_date(None) is None and _stored_date(b"") is None
