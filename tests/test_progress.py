"""The progress reporter: throttled, meta-only writes that survive rq's retry path."""

from __future__ import annotations

import pytest
from rq.job import JobStatus

import jobs
from jobs import keys
from jobs.connection import SERIALIZER, queue
from jobs.progress import ProgressReporter, TaskCanceled
from jobs.rqjob import TaskJob
from tests.conftest import wait_for


def make_job(conn) -> TaskJob:
    """A task as its run sees it: started, on a worker (the reporter writes only then)."""
    view = jobs.submit(conn, "demo", {})
    job = TaskJob.fetch(view["id"], connection=conn, serializer=SERIALIZER)
    with conn.pipeline() as pipe:
        job.prepare_for_execution("test-worker", pipeline=pipe)
        pipe.execute()
    return job


def command_calls(conn, name: str) -> int:
    stats = conn.info("commandstats")
    return stats.get(f"cmdstat_{name}", {}).get("calls", 0)


def test_100k_updates_make_a_few_writes(conn):
    job = make_job(conn)
    reporter = ProgressReporter(job)
    conn.config_resetstat()
    for n in range(1, 100_001):
        reporter.update(done=n, total=100_000, message=f"row {n}")
    reporter.flush()
    writes = command_calls(conn, "hset")
    assert 2 <= writes <= 36, writes
    stored = TaskJob.fetch(job.id, connection=conn, serializer=SERIALIZER).meta["progress"]
    assert stored["done"] == 100_000 and stored["percent"] == 100.0 and stored["message"] == "row 100000"


def test_first_and_last_updates_always_land():
    clock = [0.0]

    class Recorder(ProgressReporter):
        def _write(self, now):
            self._last_write, self._pending = now, False
            self.written.append(dict(self.job.meta["progress"]))

        def _arm_timer(self, delay):
            self.timer_delays.append(delay)

    rec = Recorder(type("FakeJob", (), {"meta": {}})(), min_interval=10.0, clock=lambda: clock[0])
    rec.written, rec.timer_delays = [], []
    rec.update(1, message="first")
    clock[0] = 4.0
    rec.update(2, message="throttled")
    rec.update(3, message="throttled too")
    clock[0] = 11.0
    rec.update(50, message="after the interval")
    rec.update(60, message="pending")
    rec.flush()
    rec.update(100, message="last")
    assert [w["message"] for w in rec.written] == ["first", "after the interval", "pending", "last"]
    assert rec.timer_delays[0] == 6.0  # a throttled update is flushed when the interval ends


def test_a_throttled_update_lands_by_timer_while_the_task_blocks(conn):
    job = make_job(conn)
    reporter = ProgressReporter(job, min_interval=0.3)
    reporter.update(10, message="first")
    reporter.update(20, message="then the task blocks")
    assert jobs.get(conn, job.id)["progress"]["message"] == "first"
    wait_for(lambda: jobs.get(conn, job.id)["progress"]["message"] == "then the task blocks",
             timeout=5, message="timer flush")
    reporter.close()


def test_a_progress_write_costs_one_round_trip(conn, counting_conn):
    client, Counter = counting_conn
    job = make_job(conn)
    job = TaskJob.fetch(job.id, connection=client, serializer=SERIALIZER)
    reporter = ProgressReporter(job, min_interval=0)
    reporter.update(1)
    counter = Counter()
    reporter.update(2, message="two")
    assert counter.count == 1


def test_progress_survives_a_stale_full_save_on_the_retry_path(conn):
    """rq's retry path saves the whole hash from its own (stale) copy of the job."""
    job = make_job(conn)
    stale = TaskJob.fetch(job.id, connection=conn, serializer=SERIALIZER)
    ProgressReporter(job).update(42, message="kept")
    stale.retries_left = 1
    with conn.pipeline() as pipe:
        stale.retry(queue(conn, "default"), pipe)
        pipe.execute()
    after = TaskJob.fetch(job.id, connection=conn, serializer=SERIALIZER)
    assert after.get_status() == JobStatus.QUEUED
    assert after.meta["progress"]["percent"] == 42 and after.meta["progress"]["message"] == "kept"


def test_cancel_request_lives_in_its_own_key_and_stops_the_reporter(conn):
    job = make_job(conn)
    reporter = ProgressReporter(job, min_interval=0)
    reporter.update(10)
    conn.set(keys.cancel_request(job.id), 1)
    with pytest.raises(TaskCanceled):
        reporter.update(20)
    assert not isinstance(TaskCanceled("x"), Exception)  # `except Exception` in a task cannot swallow it


def test_progress_message_is_capped(conn):
    job = make_job(conn)
    ProgressReporter(job).update(5, message="x" * 5000)
    assert len(jobs.get(conn, job.id)["progress"]["message"]) == 500


def test_the_started_message_goes_once_the_task_reports_without_one(conn):
    job = make_job(conn)
    reporter = ProgressReporter(job, min_interval=0)
    reporter.reset(1, 1)
    assert jobs.get(conn, job.id)["progress"]["message"] == "Started"
    reporter.update(done=5, total=10)
    assert jobs.get(conn, job.id)["progress"]["message"] is None
    reporter.update(done=6, total=10, message="six")
    reporter.update(done=7, total=10)
    assert jobs.get(conn, job.id)["progress"]["message"] == "six"  # a task's own message stays
