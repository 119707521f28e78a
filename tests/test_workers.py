"""Integration: real `rq worker` processes from the Procfile's worker line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import jobs
from tests.conftest import ROOT, wait_for, wait_status

pytestmark = pytest.mark.integration


def test_demo_runs_through_every_status_with_rising_progress(conn, redis_url, workers):
    # As in a Python shell: one process submits 5 steps of 1 s and exits; this one polls.
    script = ("import jobs; print(jobs.submit(jobs.connect(), 'demo', "
              "{'steps': 5, 'step_seconds': 1})['id'])")
    submitted = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                               env=dict(os.environ, REDIS_URL=redis_url), timeout=60, check=True)
    task_id = submitted.stdout.strip()
    assert jobs.get(conn, task_id)["status"] == "queued"
    workers.start(1)  # it may take the task before the first poll below
    seen_status, percents, messages = ["queued"], [], []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view = jobs.get(conn, task_id)
        if not seen_status or seen_status[-1] != view["status"]:
            seen_status.append(view["status"])
        if view["progress"] and view["progress"]["percent"] not in percents:
            percents.append(view["progress"]["percent"])
            messages.append(view["progress"]["message"])
        if view["status"] == "completed":
            break
        time.sleep(0.05)
    assert seen_status == ["queued", "processing", "completed"]
    assert percents == sorted(percents) and {20.0, 40.0, 60.0, 80.0, 100.0} <= set(percents)
    assert "Step 2 of 5 done" in messages
    assert view["result"]["steps"] == 5 and view["worker"] and view["ended_at"]
    assert view["error"] is None


def test_failure_at_step_reads_failed_with_the_message(conn, workers):
    workers.start(1)
    view = jobs.submit(conn, "demo", {"steps": 5, "step_seconds": 0.05, "fail_at_step": 3,
                                      "failure_message": "disk full on step 3"})
    view = wait_status(conn, view["id"], "failed")
    assert view["error"]["kind"] == "exception"
    assert view["error"]["message"] == "disk full on step 3"
    assert view["error"]["type"] == "DemoFailure"
    assert "Traceback" in view["error"]["traceback"] and "DemoFailure" in view["error"]["traceback"]
    assert view["progress"]["done"] == 2


def test_time_limit_holds_even_when_the_task_swallows_exceptions(conn, workers):
    workers.start(1)
    swallow = jobs.submit(conn, "swallow_timeout", {"seconds": 30})
    view = wait_status(conn, swallow["id"], "failed", timeout=15)
    assert view["error"]["kind"] == "timeout"
    assert "time limit of 1 s" in view["error"]["message"]


def test_time_limit_kills_a_task_that_swallows_even_base_exceptions(conn, workers):
    workers.start(1)
    stubborn = jobs.submit(conn, "swallow_everything", {"seconds": 60})
    view = wait_status(conn, stubborn["id"], "failed", timeout=20)
    assert view["error"]["kind"] == "timeout"
    assert "killed" in view["error"]["message"]
    # the worker survives and runs the next task
    assert wait_status(conn, jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})["id"], "completed")


def test_parameters_named_like_rq_options_reach_the_function(conn, workers):
    workers.start(1)
    view = jobs.submit(conn, "echo_options", {"timeout": 1, "description": "x", "result_ttl": 2})
    view = wait_status(conn, view["id"], "completed")
    assert view["result"] == {"timeout": 1, "description": "x", "result_ttl": 2}


def test_cancel_while_running_stops_the_task(conn, workers):
    workers.start(1)
    view = jobs.submit(conn, "sleeper", {"seconds": 30})
    wait_status(conn, view["id"], "processing")
    wait_for(lambda: (jobs.get(conn, view["id"])["progress"] or {}).get("done"), message="first progress")
    canceled_at = time.monotonic()
    jobs.cancel(conn, view["id"])
    view = wait_status(conn, view["id"], "canceled", timeout=10)
    assert time.monotonic() - canceled_at < 10
    assert view["error"]["kind"] == "canceled" and view["result"] is None
    assert view["ended_at"] is not None  # rq leaves stopped jobs without one; elapsed time must stop
    with pytest.raises(jobs.InvalidTransition):
        jobs.cancel(conn, view["id"])
    # the worker is free again
    assert wait_status(conn, jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})["id"], "completed")


def test_cancel_reaches_a_task_even_without_the_stop_command(conn, workers):
    """The cancel key is read by the progress reporter: the task stops at its next update."""
    workers.start(1)
    view = jobs.submit(conn, "sleeper", {"seconds": 30})
    wait_status(conn, view["id"], "processing")
    from jobs import keys
    conn.set(keys.cancel_request(view["id"]), 1)
    view = wait_status(conn, view["id"], "canceled", timeout=10)
    assert view["error"]["kind"] == "canceled" and view["ended_at"] is not None
    assert view["progress"]["message"] == "Canceled while running"
    assert view["attempt"]["number"] == 1


def test_retry_of_a_failed_task_keeps_its_id(conn, workers):
    workers.start(1)
    view = jobs.submit(conn, "flaky", {"succeed_on": 99})
    view = wait_status(conn, view["id"], "failed", timeout=30)
    assert view["attempt"] == {"number": 3, "of": 3}
    again = jobs.retry(conn, view["id"])
    assert again["id"] == view["id"] and again["status"] in ("queued", "processing")
    assert again["attempt"] == {"number": 1, "of": 3}


def test_retries_with_backoff_run_through_the_scheduler_and_keep_progress(conn, workers):
    workers.start(1)
    view = jobs.submit(conn, "flaky", {"succeed_on": 2})
    scheduled = wait_status(conn, view["id"], "scheduled", timeout=15)
    # between attempts: the failed attempt's progress and error are still readable
    assert scheduled["progress"]["percent"] == 50 and "attempt 1" in scheduled["progress"]["message"]
    assert scheduled["error"]["message"] == "attempt 1 failed on purpose"
    assert scheduled["attempt"]["number"] == 2
    done = wait_status(conn, view["id"], "completed", timeout=20)
    assert done["result"] == {"attempt": 2} and done["attempt"] == {"number": 2, "of": 3}


def test_killed_worker_fails_its_task_as_worker_lost_within_seconds(conn, workers):
    victim, = workers.start(1)
    view = jobs.submit(conn, "sleeper", {"seconds": 60})
    wait_status(conn, view["id"], "processing")
    workers.kill(victim)
    killed_at = time.monotonic()
    workers.start(1)  # another worker reaps it
    view = wait_status(conn, view["id"], "failed", timeout=30)
    # tests run with heartbeat 1 s + lost-after 2 s + reap every 1 s
    assert time.monotonic() - killed_at < 15
    assert view["error"]["kind"] == "worker_lost"
    # the task's own process died with its worker: progress stopped moving
    frozen = jobs.get(conn, view["id"])["progress"]
    time.sleep(1.0)
    assert jobs.get(conn, view["id"])["progress"] == frozen


def test_a_busy_worker_settles_a_dead_workers_task(conn, workers):
    # the only survivor is busy with a long task the whole time: it must still reap
    busy, = workers.start(1)
    long_task = jobs.submit(conn, "sleeper", {"seconds": 60})
    wait_status(conn, long_task["id"], "processing")
    victim, = workers.start(1)
    lost = jobs.submit(conn, "sleeper", {"seconds": 60})
    wait_status(conn, lost["id"], "processing")
    assert jobs.get(conn, lost["id"])["worker"] != jobs.get(conn, long_task["id"])["worker"]
    workers.kill(victim)
    killed_at = time.monotonic()
    view = wait_status(conn, lost["id"], "failed", timeout=30)
    assert time.monotonic() - killed_at < 15
    assert view["error"]["kind"] == "worker_lost"
    assert jobs.get(conn, long_task["id"])["status"] == "processing"


def test_killed_worker_requeues_a_rerun_safe_task_onto_another_worker(conn, workers):
    victim, = workers.start(1)
    view = jobs.submit(conn, "safe_sleeper", {"seconds": 3})
    wait_status(conn, view["id"], "processing")
    first_worker = jobs.get(conn, view["id"])["worker"]
    workers.kill(victim)
    workers.start(1)
    view = wait_status(conn, view["id"], "completed", timeout=40)
    assert view["worker"] != first_worker
    assert view["attempt"]["number"] == 1


def test_killed_task_process_under_a_live_worker_is_worker_lost(conn, workers):
    import os
    import signal

    workers.start(1)
    view = jobs.submit(conn, "pid_reporter", {"seconds": 60})
    message = wait_for(lambda: ((jobs.get(conn, view["id"])["progress"] or {}).get("message") or "")
                       .startswith("pid ") and jobs.get(conn, view["id"])["progress"]["message"], message="pid")
    os.kill(int(message.split()[1]), signal.SIGKILL)
    view = wait_status(conn, view["id"], "failed", timeout=15)
    assert view["error"]["kind"] == "worker_lost"
    assert "process running it died" in view["error"]["message"]


def test_spinning_progress_from_a_real_worker_makes_few_writes(conn, workers):
    workers.start(1)
    conn.config_resetstat()
    view = jobs.submit(conn, "spin_progress", {"calls": 100_000})
    view = wait_status(conn, view["id"], "completed", timeout=60)
    assert view["progress"]["done"] == 100_000
    meta_writes = conn.info("commandstats").get("cmdstat_hset", {}).get("calls", 0)
    # hset also counts rq's own bookkeeping (heartbeats, status); progress adds ~2 per second
    assert meta_writes < 80, meta_writes


def test_result_past_retention_reads_expired(conn, workers):
    workers.start(1)
    view = jobs.submit(conn, "short_lived", {"value": 3})
    assert wait_status(conn, view["id"], "completed")["result"] == 3
    time.sleep(2.2)
    with pytest.raises(jobs.TaskNotFound, match="expired"):
        jobs.get(conn, view["id"])


def test_a_task_that_never_reports_progress_ends_at_100_percent(conn, workers):
    workers.start(1)
    view = wait_status(conn, jobs.submit(conn, "short_lived", {})["id"], "completed")
    assert view["progress"]["percent"] == 100.0 and view["progress"]["message"] is None
