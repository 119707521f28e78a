"""Robustness: hostile input, broken infrastructure, races and statuses that must not lie.

Written by QA while trying to break the app the way production would. A comment
starting "# Was a bug:" names the fault the test caught before it was fixed; the
test now guards the fix. Every other test documents a guarantee that held from the start.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rq import Worker

import jobs
from jobs.connection import SERIALIZER
from jobs.embedded import EmbeddedRedis, free_port
from jobs.rqjob import TaskJob
from tests.conftest import ROOT, WorkerPool, procfile_command, wait_for, wait_status
from tests.web_helpers import make_app

FINAL = ("completed", "failed", "canceled")
DASHBOARD_AUTH = {"Authorization": "Basic " + base64.b64encode(b"qa:qa-pass").decode(),
                  "X-Requested-With": "XMLHttpRequest"}


@pytest.fixture
def app(redis_url, conn):
    return make_app(redis_url)


@pytest.fixture
def client(app):
    return app.test_client()


def file_meta_keys(conn) -> list[bytes]:
    return [k for k in conn.keys("jobs:file:*") if not k.endswith(b":data")]


def assert_json_error(response, status: int, app) -> None:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    assert set(response.json["error"]) >= {"code", "message"}
    assert "Traceback" not in response.get_data(as_text=True)
    assert app.extensions["webapp_unhandled"] == []


# --- hostile input: 4xx JSON, never 500 ------------------------------------------------------

def _json(body: str | bytes, content_type: str = "application/json") -> dict:
    return {"data": body, "content_type": content_type}


HOSTILE = [
    # numbers JSON should not have, in every place a number goes
    ("post", "/api/tasks", _json('{"type": "demo", "params": {"steps": NaN}}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "params": {"step_seconds": Infinity}}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "params": {"steps": 1e309}}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "delay": -Infinity}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "delay": 1e309}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "delay": [1]}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "delay": true}'), 422),
    ("post", "/api/tasks", _json('{"type": "demo", "params": {"steps": ' + "9" * 5000 + "}}"), 400),
    # strings that are not text
    ("post", "/api/tasks", _json('{"type": "demo", "params": {"failure_message": "\\ud800"}}'), 422),
    ("post", "/api/tasks", _json('{"type": "\\ud800"}'), 422),
    ("post", "/api/tasks", _json('{"type": {"a": 1}}'), 422),
    ("post", "/api/tasks", _json(b'{"type": "demo", "params": {"failure_message": "\xff\xfe"}}'), 400),
    # ids: long, slashed, dotted, percent-encoded, non-ASCII
    ("get", "/api/tasks/" + "a" * 65, {}, 404),
    ("get", "/api/tasks/%ff", {}, 404),
    ("get", "/api/tasks/%C0%AF", {}, 404),
    ("get", "/api/tasks/a%2Fb", {}, 404),
    ("get", "/api/tasks/x.json", {}, 404),
    ("get", "/api/tasks/\U0001F600", {}, 404),
    ("post", "/api/tasks/\U0001F600/cancel", {}, 404),
    ("post", "/api/tasks/%00/retry", {}, 404),
    ("delete", "/api/tasks/" + "z" * 300, {}, 404),
    ("get", "/api/tasks/abc/files/%ff%fe", {}, 404),
    # listing parameters
    ("get", "/api/tasks?limit=+5", {}, 422),
    ("get", "/api/tasks?limit=1.5", {}, 422),
    ("get", "/api/tasks?cursor=%00", {}, 422),
    ("get", "/api/tasks?cursor=" + "f" * 65, {}, 422),
    ("get", "/api/tasks?status=bogus&status=queued", {}, 422),
    ("get", "/api/tasks?type=%00", {}, 422),
    ("get", "/api/tasks?type=" + "x" * 10000, {}, 422),
    # headers
    ("post", "/api/tasks", {"json": {"type": "demo"}, "headers": {"Idempotency-Key": "k" * 100_000}}, 400),
    ("post", "/api/tasks", {"json": {"type": "demo"}, "headers": {"Idempotency-Key": "\u043a\u043b\u044e\u0447"}}, 400),
    ("post", "/api/tasks", {"json": {"type": "demo"}, "environ_overrides": {"HTTP_IDEMPOTENCY_KEY": "\xe9t\xe9"}}, 400),
    # wrong methods
    ("put", "/api/tasks/abc", {}, 405),
    ("get", "/api/tasks/abc/cancel", {}, 405),
    ("delete", "/api/tasks", {}, 405),
    ("post", "/healthz", {}, 405),
]


@pytest.mark.parametrize("method, url, kwargs, status", HOSTILE)
def test_hostile_api_input_gets_4xx_json(app, client, method, url, kwargs, status):
    assert_json_error(getattr(client, method)(url, **kwargs), status, app)


@pytest.mark.parametrize("url, body", [
    ("/api/tasks", "[" * 100_000 + "]" * 100_000),
    ("/api/tasks", '{"type": "demo", "params": ' + '{"a": ' * 5000 + "1" + "}" * 5001),
])
def test_deeply_nested_json_is_a_400(app, client, url, body):
    # Was a bug: json.loads raises RecursionError, which webapp/api.py json_object() does not catch -> 500
    assert_json_error(client.post(url, data=body, content_type="application/json"), 400, app)


def test_deeply_nested_json_to_start_is_a_400(app, client, conn):
    # Was a bug: same RecursionError through json_object(optional=True) -> 500
    pending = jobs.submit(conn, "demo", {}, start=False)
    response = client.post(f"/api/tasks/{pending['id']}/start", data="[" * 100_000, content_type="application/json")
    assert_json_error(response, 400, app)


@pytest.mark.parametrize("limit", ["\u00b2", "9" * 5000])
def test_limit_that_passes_isdigit_but_not_int_is_a_422(app, client, limit):
    # Was a bug: webapp/api.py list_tasks() checks str.isdigit() ("²" passes) then int() raises ValueError -> 500;
    # 5000 digits trip Python's int-string limit -> 500
    assert_json_error(client.get("/api/tasks", query_string={"limit": limit}), 422, app)


@pytest.mark.parametrize("params", [[1], "steps=3", 5])
def test_start_with_params_that_are_not_an_object_is_a_422(app, client, conn, params):
    # Was a bug: jobs.api.start() does {**kwargs["params"], **params} before validating -> TypeError -> 500
    pending = jobs.submit(conn, "demo", {}, start=False)
    response = client.post(f"/api/tasks/{pending['id']}/start", json={"params": params})
    assert_json_error(response, 422, app)
    assert jobs.get(conn, pending["id"])["status"] == "pending"


# --- multipart: nothing half-stored ---------------------------------------------------------

def _upload(**fields):
    return {"type": "web_kinds", "label": "x", "upload": (io.BytesIO(b"hello"), "a.txt"), **fields}


@pytest.mark.parametrize("fields, headers, status", [
    ({"zzz": "1"}, {}, 422),                          # unknown parameter
    ({"count": "99"}, {}, 422),                        # out of range
    ({"label": "x" * 300}, {}, 422),                   # too long
    ({"delay": "-5"}, {}, 422),
    ({"delay": "1e300"}, {}, 422),
    ({"start": "maybe"}, {}, 422),
    ({}, {"Idempotency-Key": "k" * 300}, 400),
    ({"upload": (io.BytesIO(b"x" * 2000), "big.bin")}, {}, 413),
])
def test_rejected_multipart_submission_leaves_no_file_and_no_task(redis_url, conn, fields, headers, status):
    app = make_app(redis_url, MAX_UPLOAD_BYTES=1000)
    response = app.test_client().post("/api/tasks", data=_upload(**fields), headers=headers,
                                      content_type="multipart/form-data")
    assert_json_error(response, status, app)
    assert conn.keys("jobs:file:*") == []
    assert jobs.list_tasks(conn)["tasks"] == []


def test_odd_but_valid_file_names_are_stored_safely(client, conn):
    for name, stored in [("\U0001F600\u202egpj.exe\x00.txt", "\U0001F600gpj.exe.txt"), ("../../etc/passwd", "passwd"),
                         ("...", "file"), ("a" * 5000 + ".txt", "a" * 196 + ".txt")]:
        response = client.post("/api/tasks", data=_upload(upload=(io.BytesIO(b"data"), name)),
                               content_type="multipart/form-data")
        assert response.status_code == 202, response.data
        assert response.json["params"]["upload"]["name"] == stored
    empty = client.post("/api/tasks", data=_upload(upload=(io.BytesIO(b""), "zero.txt")),
                        content_type="multipart/form-data")
    assert empty.status_code == 202 and empty.json["params"]["upload"]["size"] == 0


def test_idempotent_multipart_resend_stores_one_file(client, conn):
    # Was a bug: webapp/api.py _submit_form() (and pages.create_task) store the upload before jobs.submit()
    # finds the existing task for the key, and never discard it -> one orphan file per resend/double-click
    ids = set()
    for _ in range(3):
        response = client.post("/api/tasks", data=_upload(), content_type="multipart/form-data",
                               headers={"Idempotency-Key": "resend-1"})
        assert response.status_code == 202
        ids.add(response.json["id"])
    assert len(ids) == 1
    assert len(file_meta_keys(conn)) == 1


# --- races ---------------------------------------------------------------------------------

def _in_threads(count: int, target) -> list:
    """Run target(client) in `count` threads released together; return their results."""
    barrier = threading.Barrier(count)
    results: list = []
    lock = threading.Lock()

    def run():
        client = jobs.connect(_in_threads.url)
        try:
            barrier.wait()
            try:
                value = target(client)
            except jobs.JobsError as exc:
                value = type(exc).__name__
            with lock:
                results.append(value)
        finally:
            client.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def race(redis_url):
    _in_threads.url = redis_url
    return _in_threads


def test_concurrent_submits_with_one_idempotency_key_make_one_task(conn, race):
    # Was a bug: jobs/api.py submit(): the losers of the SET NX read the winner's id before the winner's job
    # is saved, get TaskNotFound, DELETE the key and submit again -> up to 14 tasks from 16 threads
    for trial in range(8):
        conn.flushdb()
        ids = race(12, lambda c: jobs.submit(c, "demo", {"steps": 1}, idempotency_key=f"dbl-{trial}")["id"])
        assert len(set(ids)) == 1, f"trial {trial}: {len(set(ids))} different tasks returned"
        assert conn.zcard("jobs:index") == 1


@pytest.mark.parametrize("action", ["cancel", "delete"])
def test_concurrent_cancels_and_deletes_of_one_task_give_one_winner_and_clear_refusals(conn, race, action):
    # Was a bug: rq's Job.cancel()/delete() re-read the job outside our WATCH and raised InvalidJobOperation
    # ("Cannot cancel already canceled job", "Failed to retrieve status"), a 500 over HTTP.
    refusal = "InvalidTransition" if action == "cancel" else "TaskNotFound"
    for _ in range(5):
        task_id = jobs.submit(conn, "demo", {}, start=False)["id"]
        def act(client):
            getattr(jobs, action)(client, task_id)
            return "done"

        outcomes = race(8, act)
        assert sorted(outcomes) == sorted(["done"] + [refusal] * 7), outcomes


@pytest.mark.parametrize("type_name", ["sleeper", "safe_sleeper"])
def test_reapers_racing_for_one_lost_task_settle_it_once(conn, race, type_name):
    # Was a bug: two workers reaping at the same moment both requeued a lost rerun-safe task (it ran twice).
    from rq.registry import StartedJobRegistry

    from jobs import keys
    from jobs.reaper import reap_lost_tasks

    for _ in range(5):
        task_id = jobs.submit(conn, type_name, {})["id"]
        job = TaskJob.fetch(task_id, connection=conn, serializer=SERIALIZER)
        with conn.pipeline() as pipe:  # what a worker that then died left behind: started, lease expired
            job.prepare_for_execution("dead-worker", pipeline=pipe)
            pipe.lrem("rq:queue:default", 0, task_id)
            pipe.zadd(StartedJobRegistry("default", connection=conn).key, {f"{task_id}:gone": time.time() - 5})
            pipe.execute()
        settled = [tid for found in race(4, lambda c: reap_lost_tasks(c, ["default"])) for tid in found]
        assert settled == [task_id]
        if type_name == "safe_sleeper":
            assert conn.lrange("rq:queue:default", 0, -1) == [task_id.encode()]
            assert conn.get(keys.crash_count(task_id)) == b"1"
            conn.delete("rq:queue:default")
        else:
            assert jobs.get(conn, task_id)["error"]["kind"] == "worker_lost"


def test_double_start_from_many_threads_enqueues_once(conn, race):
    for _ in range(10):
        conn.flushdb()
        pending = jobs.submit(conn, "demo", {"steps": 1}, start=False)
        results = race(8, lambda c: jobs.start(c, pending["id"])["status"])
        assert sorted(results) == ["InvalidTransition"] * 7 + ["queued"]
        assert conn.lrange("rq:queue:default", 0, -1) == [pending["id"].encode()]


def test_concurrent_retries_enqueue_once(conn, race):
    for _ in range(10):
        conn.flushdb()
        task = jobs.submit(conn, "demo", {"steps": 1})
        jobs.cancel(conn, task["id"])
        results = race(8, lambda c: jobs.retry(c, task["id"])["status"])
        assert sorted(results) == ["InvalidTransition"] * 7 + ["queued"]
        assert conn.lrange("rq:queue:default", 0, -1) == [task["id"].encode()]


def _make_failed(conn, task_id: str) -> None:
    from rq.job_lifecycle import record_job_failure

    job = TaskJob.fetch(task_id, connection=conn, serializer=SERIALIZER)
    conn.lrem("rq:queue:default", 0, task_id)
    with conn.pipeline() as pipe:
        record_job_failure(job, "RuntimeError: boom", pipe)
        pipe.execute()


def test_dashboard_requeue_racing_api_retry_enqueues_once(redis_url, conn):
    # Was a bug (about 1 trial in 8, so 60 trials): rq's requeue (webapp/dashboard.py requeue_job) guards with
    # ZREM on the failed registry, jobs.retry guards with WATCH on the job hash: both can win and the task is
    # queued twice (runs twice). Route the dashboard's requeue through jobs.retry.
    app = make_app(redis_url, RQ_DASHBOARD_USERNAME="qa", RQ_DASHBOARD_PASSWORD="qa-pass")
    dashboard = app.test_client()
    api = jobs.connect(redis_url)
    try:
        for trial in range(60):
            conn.flushdb()
            task = jobs.submit(conn, "demo", {"steps": 1})
            _make_failed(conn, task["id"])
            barrier = threading.Barrier(2)

            def by_api():
                barrier.wait()
                with contextlib.suppress(jobs.InvalidTransition):
                    jobs.retry(api, task["id"])

            def by_dashboard():
                barrier.wait()
                dashboard.post(f"/rq/job/{task['id']}/requeue", headers=DASHBOARD_AUTH)

            threads = [threading.Thread(target=by_api), threading.Thread(target=by_dashboard)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=10)
            queued = conn.lrange("rq:queue:default", 0, -1).count(task["id"].encode())
            assert queued == 1, f"trial {trial}: the task is queued {queued} times"
    finally:
        api.close()


# --- configuration: bad values stop the process at startup, naming the variable ------------

@pytest.mark.parametrize("name, value", [("JOBS_BODY_IDLE_TIMEOUT", "nan"), ("JOBS_BODY_IDLE_TIMEOUT", "inf"),
                                         ("JOBS_BODY_TIMEOUT", "nan")])
def test_non_finite_body_timeouts_are_refused_at_startup(redis_url, monkeypatch, name, value):
    # Was a bug: webapp/config.py _number() accepts nan/inf (nan < 1 is False); under gunicorn every request
    # then dies in slowbody.BodyDeadline (sock.settimeout) with gunicorn's HTML 500, or the deadline never fires
    from webapp import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        make_app(redis_url)


def test_unimportable_task_module_stops_the_web_app_at_startup(redis_url, monkeypatch):
    # Was a bug: create_app() never loads JOBS_TASK_MODULES; the web boots and every submit is a 500 ImportError
    from jobs import settings

    monkeypatch.setattr(settings, "TASK_MODULES", [*settings.TASK_MODULES, "tests.no_such_task_module"])
    with pytest.raises(Exception, match="JOBS_TASK_MODULES"):
        make_app(redis_url)


@pytest.mark.parametrize("process", ["python", "worker"])
def test_a_bad_setting_stops_a_process_with_one_line(redis_url, process):
    # Was: a traceback wall ending in the message.
    env = dict(os.environ, REDIS_URL=redis_url, JOBS_HEARTBEAT_INTERVAL="soon")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    argv = ([sys.executable, "-c", "import jobs"] if process == "python"
            else [os.path.expandvars(arg) for arg in shlex.split(procfile_command("worker"))])
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip() == ("error: JOBS_HEARTBEAT_INTERVAL='soon' is not a whole number; "
                                   "set it to an integer such as 3."), done.stderr


@pytest.mark.parametrize("store", ["/proc/no-such-folder", "/etc/passwd/files"])
def test_a_file_store_that_cannot_hold_files_stops_the_start(redis_url, monkeypatch, store):
    # Was a bug: an unusable JOBS_FILE_STORE was accepted; then every upload got a 500.
    from jobs import settings
    from webapp import ConfigError

    monkeypatch.setattr(settings, "FILE_STORE", store)
    with pytest.raises(ConfigError, match=f"JOBS_FILE_STORE='{store}' cannot hold files .*or to 'redis'"):
        make_app(redis_url)


def test_a_file_store_folder_is_made_when_the_app_starts(redis_url, monkeypatch, tmp_path):
    from jobs import settings

    monkeypatch.setattr(settings, "FILE_STORE", str(tmp_path / "shared" / "files"))
    app = make_app(redis_url)
    assert (tmp_path / "shared" / "files").is_dir() and not list((tmp_path / "shared" / "files").iterdir())
    app.extensions["jobs_redis"].close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "redis://[::1", "redis:/nohost"])
def test_malformed_redis_url_names_the_variable(url):
    # Was a bug: jobs.connection.connect() lets redis-py's bare ValueError ("Port could not be cast...") escape
    from webapp import ConfigError

    with pytest.raises((ConfigError, jobs.RedisUnavailable), match="REDIS_URL"):
        make_app(url)


# --- workers: crashes, shutdowns, outages --------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
    return found


@pytest.mark.integration
def test_cancel_racing_completion_always_ends_consistent(conn, workers):
    workers.start(2)
    rng = random.Random(7)
    ids = [jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0.3})["id"] for _ in range(12)]
    cancel_at: dict[str, float] = {}
    open_ids = set(ids)
    deadline = time.monotonic() + 40
    while open_ids and time.monotonic() < deadline:
        for task_id in list(open_ids):
            status = jobs.get(conn, task_id)["status"]
            if status == "processing" and task_id not in cancel_at:
                cancel_at[task_id] = time.monotonic() + rng.uniform(0.15, 0.45)
            if task_id in cancel_at and time.monotonic() >= cancel_at[task_id]:
                with contextlib.suppress(jobs.InvalidTransition):
                    jobs.cancel(conn, task_id)
                open_ids.discard(task_id)
            elif status in FINAL:
                open_ids.discard(task_id)
        time.sleep(0.01)
    for task_id in ids:
        view = wait_status(conn, task_id, FINAL, timeout=15)
        assert view["status"] in ("completed", "canceled"), view
        if view["status"] == "completed":
            assert view["error"] is None and view["result"]["steps"] == 1
        else:
            assert view["error"]["kind"] == "canceled" and view["result"] is None


@pytest.mark.integration
def test_killed_only_worker_task_settles_as_soon_as_a_new_worker_starts(conn, workers):
    victim, = workers.start(1)
    task = jobs.submit(conn, "sleeper", {"seconds": 60})
    wait_status(conn, task["id"], "processing")
    queued = jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})
    workers.kill(victim)
    time.sleep(4)  # past the lease (heartbeat 1 s + lost-after 2 s): nobody is left to notice
    assert jobs.get(conn, task["id"])["status"] == "processing"
    started = time.monotonic()
    workers.start(1, wait=False)
    view = wait_status(conn, task["id"], "failed", timeout=20)
    assert view["error"]["kind"] == "worker_lost"
    assert time.monotonic() - started < 10
    assert wait_status(conn, queued["id"], "completed", timeout=20)


@pytest.mark.integration
def test_sigterm_mid_task_settles_like_a_lost_worker(conn, workers):
    # Was a bug: on SIGTERM (every Heroku deploy/restart) HerokuWorker raises ShutDownImminentException in the
    # task 6 s later; it is recorded as kind "exception", type "rq.exceptions.ShutDownImminentException",
    # message "shut down imminent (signal: SIGALRM)", and a rerun-safe task is NOT requeued (DESIGN: a task
    # whose worker goes away becomes failed/worker_lost or is requeued). Fix in jobs/worker.py TaskWorker.
    first, second = workers.start(2)
    plain = jobs.submit(conn, "sleeper", {"seconds": 30})
    safe = jobs.submit(conn, "safe_sleeper", {"seconds": 30})
    for task in (plain, safe):
        wait_for(lambda: (jobs.get(conn, task["id"])["progress"] or {}).get("done"), message="progress")
    for proc in (first, second):
        os.kill(proc.pid, signal.SIGTERM)
    for proc in (first, second):
        proc.wait(timeout=20)
    plain_view, safe_view = jobs.get(conn, plain["id"]), jobs.get(conn, safe["id"])
    # holds today: nothing is left reading processing
    assert plain_view["status"] != "processing" and safe_view["status"] != "processing"
    assert plain_view["status"] == "failed"
    assert plain_view["error"]["kind"] == "worker_lost", plain_view["error"]
    assert safe_view["status"] in ("queued", "scheduled"), (safe_view["status"], safe_view["error"])


@pytest.mark.integration
def test_sigterm_leaves_the_time_limit_in_force(conn, workers):
    # Was a bug: rq's HerokuWorker times the shutdown grace with SIGALRM, replacing the task's time limit:
    # a task with a 1 s limit ran on for the whole 20 s grace and read worker_lost instead of timeout.
    worker, = workers.start(1, env={"JOBS_SHUTDOWN_GRACE": "20"})
    task = jobs.submit(conn, "swallow_timeout", {"seconds": 30})  # time_limit 1 s
    wait_status(conn, task["id"], "processing")
    os.kill(worker.pid, signal.SIGTERM)
    signalled = time.monotonic()
    view = wait_status(conn, task["id"], FINAL, timeout=15)
    assert view["error"]["kind"] == "timeout", view["error"]
    assert time.monotonic() - signalled < 8
    worker.wait(timeout=20)


@pytest.mark.integration
def test_a_task_that_swallows_the_shutdown_still_ends_after_the_grace(conn, workers):
    # Was a bug: a task catching BaseException kept running after its worker's SIGTERM until it chose to
    # finish (here 30 s), past the documented JOBS_SHUTDOWN_GRACE (2 s in tests) and Heroku's 30 s SIGKILL.
    worker, = workers.start(1)
    task = jobs.submit(conn, "swallow_shutdown", {"seconds": 30})
    wait_for(lambda: jobs.get(conn, task["id"])["progress"], message="progress")
    os.kill(worker.pid, signal.SIGTERM)
    signalled = time.monotonic()
    worker.wait(timeout=20)
    assert time.monotonic() - signalled < 10  # grace 2 s + kill 2 s later, on a loaded machine
    view = wait_status(conn, task["id"], FINAL, timeout=10)
    assert view["status"] == "failed" and view["error"]["kind"] == "worker_lost", view["error"]


@pytest.mark.integration
def test_a_task_that_swallows_its_timeout_and_returns_is_still_a_timeout(conn, workers):
    workers.start(1)
    task = jobs.submit(conn, "swallow_then_return", {"seconds": 2})
    view = wait_status(conn, task["id"], FINAL, timeout=15)
    assert view["status"] == "failed" and view["error"]["kind"] == "timeout", view
    assert view["result"] is None


@pytest.mark.integration
def test_the_scheduler_process_dies_with_its_worker(conn, workers):
    # Was a bug: rq's scheduler (a forked child of the worker) outlived a SIGKILLed worker, holding the
    # scheduler lock for its queues while nothing supervised it.
    worker, = workers.start(1)
    scheduler, = wait_for(lambda: _children(worker.pid), message="the scheduler process")
    workers.kill(worker)
    wait_for(lambda: not os.path.exists(f"/proc/{scheduler}") or _state(scheduler) == "Z", timeout=10,
             message="the scheduler to die with its worker")


def _state(pid: int) -> str:
    with contextlib.suppress(OSError, IndexError):
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    return ""


@pytest.mark.integration
def test_frozen_worker_cannot_overwrite_a_settled_task(conn, workers):
    # Was a bug: a worker frozen past its lease (VM pause, swap storm, SIGSTOP) gets its task reaped as
    # failed/worker_lost; when it resumes, its work-horse finishes and rq writes FINISHED over the final
    # status: the task flips failed -> completed (and for rerun-safe types, two runs overlap). The finishing
    # path (TaskWorker / processor) must check it still owns the execution before writing.
    frozen, = workers.start(1)
    task = jobs.submit(conn, "sleeper", {"seconds": 3})
    wait_for(lambda: (jobs.get(conn, task["id"])["progress"] or {}).get("done"), message="progress")
    stopped = [frozen.pid, *_children(frozen.pid)]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        workers.start(1, wait=False)
        lost = wait_status(conn, task["id"], "failed", timeout=20)
        assert lost["error"]["kind"] == "worker_lost"
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    time.sleep(5)  # the resumed sleeper has ~2.5 s left
    after = jobs.get(conn, task["id"])
    assert after["status"] == "failed" and after["error"]["kind"] == "worker_lost", after["status"]


@pytest.mark.integration
def test_a_run_whose_task_was_settled_elsewhere_stops_at_its_next_progress_write(conn, workers):
    # Was a bug: with only the worker frozen (its task process running on), the reaper failed the task as
    # worker_lost while the orphaned run went on reporting progress, and finished: the task said "cut off
    # part way; retry it" while it was still running (a retry then ran it twice at once).
    frozen, = workers.start(1)
    task = jobs.submit(conn, "sleeper", {"seconds": 30})
    wait_for(lambda: (jobs.get(conn, task["id"])["progress"] or {}).get("done"), message="progress")
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        workers.start(1, wait=False)
        lost = wait_status(conn, task["id"], "failed", timeout=20)
        assert lost["error"]["kind"] == "worker_lost"
        time.sleep(1.5)  # the orphaned run reports every 0.1 s (throttled to 0.5 s) while it goes on
        assert jobs.get(conn, task["id"])["progress"] == lost["progress"]
    finally:
        os.kill(frozen.pid, signal.SIGCONT)


@pytest.mark.integration
def test_a_task_deleted_as_a_worker_takes_it_stays_deleted(conn, workers):
    # Was a bug: delete refused only `started` tasks; a task a worker had just popped off the queue still read
    # `queued`, was deleted, then ran anyway and rq saved it back whole (with a 7-day TTL), minus its index.
    workers.start(1)
    deleted = []
    for _ in range(20):
        task = jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0.3})
        try:
            jobs.delete(conn, task["id"])
            deleted.append(task["id"])
        except jobs.InvalidTransition:
            pass  # it started first: refusing is right
        time.sleep(0.05)
    time.sleep(2)
    assert deleted
    for task_id in deleted:
        assert not conn.exists(TaskJob.key_for(task_id)), task_id
        with pytest.raises(jobs.TaskNotFound):
            jobs.get(conn, task_id)


@pytest.mark.integration
def test_dashboard_requeue_of_a_task_canceled_while_running_runs_it(redis_url, conn, workers):
    # Was a bug: the dashboard's requeue (webapp/dashboard.py requeue_job -> rq Job.requeue) leaves the
    # task's cancel key (TTL >= 1 h) in place, so the requeued run cancels itself at once ("Canceled before it
    # started") while the dashboard said OK. Route it through jobs.retry (clears cancel key, meta, outputs).
    workers.start(1)
    app = make_app(redis_url, RQ_DASHBOARD_USERNAME="qa", RQ_DASHBOARD_PASSWORD="qa-pass")
    task = jobs.submit(conn, "sleeper", {"seconds": 1.5})
    wait_for(lambda: (jobs.get(conn, task["id"])["progress"] or {}).get("done"), message="progress")
    jobs.cancel(conn, task["id"])
    wait_status(conn, task["id"], "canceled")
    response = app.test_client().post(f"/rq/job/{task['id']}/requeue", headers=DASHBOARD_AUTH)
    assert response.status_code == 200
    view = wait_status(conn, task["id"], FINAL, timeout=20)
    assert view["status"] == "completed", view["error"]


@contextlib.contextmanager
def restartable_redis(tmp_path: Path):
    """A persistent Redis of our own that a test may stop and start again on the same port."""
    holder = {"server": EmbeddedRedis(data_dir=tmp_path / "redis")}
    url = holder["server"].start()
    port = holder["server"].port

    def stop() -> None:
        holder["server"].stop()

    def start() -> None:
        # from the main thread only: the server gets PR_SET_PDEATHSIG, which fires when the *thread* that
        # started it exits (jobs/embedded.py), so a server started from a helper thread dies with that thread
        holder["server"] = EmbeddedRedis(data_dir=tmp_path / "redis", port=port)
        holder["server"].start()

    def restart(down_for: float) -> None:
        stop()
        time.sleep(down_for)
        start()

    client = jobs.connect(url)
    pool = WorkerPool(url, client)
    try:
        yield url, client, pool, restart, stop, start
    finally:
        pool.stop_all()
        client.close()
        holder["server"].stop()


@pytest.mark.integration
def test_idle_worker_and_web_ride_out_a_redis_restart(tmp_path):
    with restartable_redis(tmp_path) as (url, client, pool, restart, stop, start):
        worker, = pool.start(1)
        app = make_app(url)
        web = app.test_client()
        try:
            created_before = jobs.submit(client, "demo", {"steps": 1, "step_seconds": 0}, start=False)
            stop()
            assert_json_error(web.get("/api/tasks"), 503, app)
            assert_json_error(web.post("/api/tasks", json={"type": "demo"}), 503, app)
            health = web.get("/healthz")
            assert health.status_code == 503 and health.json["redis"] is False
            time.sleep(2)
            start()
            assert web.get("/api/tasks").status_code == 200  # the same app object: no restart needed
            assert web.post(f"/api/tasks/{created_before['id']}/start").status_code == 200  # kept by persistence
            fresh = web.post("/api/tasks", json={"type": "demo", "params": {"steps": 1, "step_seconds": 0}})
            assert wait_status(client, fresh.json["id"], "completed", timeout=20)
            assert wait_status(client, created_before["id"], "completed", timeout=20)
            assert worker.poll() is None
        finally:
            app.extensions["jobs_redis"].close()


@pytest.mark.integration
def test_delayed_task_still_runs_after_a_redis_restart(tmp_path):
    # Was a bug: rq's scheduler process (--with-scheduler) dies on the first Redis error and the worker only
    # restarts it in rq's own maintenance, every 600 s: after any Redis blip, delayed tasks and retry back-offs
    # (status scheduled) stall for up to 10 minutes. Fix: TaskWorker.run_maintenance_tasks (every
    # JOBS_REAP_INTERVAL) should restart a dead scheduler (self.scheduler.acquire_locks(auto_start=True)).
    with restartable_redis(tmp_path) as (url, client, pool, restart, stop, start):
        pool.start(1)
        later = jobs.submit(client, "demo", {"steps": 1, "step_seconds": 0}, delay=3)
        restart(2)
        assert wait_status(client, later["id"], "completed", timeout=15)


@pytest.mark.integration
def test_busy_worker_survives_a_redis_outage(tmp_path):
    # Was a bug: a Redis outage of ~3 s while a task runs kills the worker process (rc 1): rq's
    # monitor_work_horse() calls job.get_status()/heartbeat, the ConnectionError escapes execute_job() and
    # Worker.work() "quits". The task then reads processing until some worker is started again (with one
    # worker: forever), and nothing else runs. docs/operations.md promises workers retry with back-off.
    with restartable_redis(tmp_path) as (url, client, pool, restart, stop, start):
        worker, = pool.start(1)
        task = jobs.submit(client, "safe_sleeper", {"seconds": 3})
        wait_status(client, task["id"], "processing")
        time.sleep(0.5)
        restart(3)
        time.sleep(2)
        assert worker.poll() is None, f"the worker exited with code {worker.returncode} during the outage"
        view = wait_status(client, task["id"], FINAL, timeout=25)
        assert view["status"] == "completed", view["error"]
        fresh = jobs.submit(client, "demo", {"steps": 1, "step_seconds": 0})
        assert wait_status(client, fresh["id"], "completed", timeout=20)


@pytest.mark.integration
def test_workers_register_again_after_redis_comes_back_empty(tmp_path):
    # Was a bug: after Redis restarted without its data, workers kept running tasks but never re-registered,
    # so /healthz said "no worker is alive" (503) and the dashboard listed none, for as long as they ran.
    with restartable_redis(tmp_path) as (url, client, pool, restart, stop, start):
        pool.start(1)
        app = make_app(url)
        try:
            stop()
            shutil.rmtree(tmp_path / "redis")  # the data is gone
            start()
            wait_for(lambda: Worker.count(connection=client) == 1, timeout=15, message="the worker to register again")
            health = app.test_client().get("/healthz")
            assert health.status_code == 200, health.json
            fresh = jobs.submit(client, "demo", {"steps": 1, "step_seconds": 0})
            assert wait_status(client, fresh["id"], "completed", timeout=20)
        finally:
            app.extensions["jobs_redis"].close()


@pytest.mark.integration
def test_a_task_reporting_progress_rides_out_a_redis_restart(tmp_path):
    # Was a bug: a progress write during the outage raised ConnectionError into the task, its process exited
    # and the reaper failed it as worker_lost ("its worker stopped responding"), though no worker died.
    with restartable_redis(tmp_path) as (url, client, pool, restart, stop, start):
        pool.start(1)
        task = jobs.submit(client, "sleeper", {"seconds": 6})  # not rerun-safe: a requeue cannot hide a failure
        wait_for(lambda: (jobs.get(client, task["id"])["progress"] or {}).get("done"), message="progress")
        restart(2)
        view = wait_status(client, task["id"], FINAL, timeout=30)
        assert view["status"] == "completed", view["error"]
        assert view["progress"]["percent"] == 100.0


@pytest.mark.integration
def test_a_task_ending_during_a_redis_outage_keeps_its_result(tmp_path):
    # Was a bug: the run's last bookkeeping (is the task still mine?) raised ConnectionError, the task process
    # exited 1, and a finished task read worker_lost (or, rerun-safe, ran again from the start).
    with restartable_redis(tmp_path) as (url, client, pool, restart, stop, start):
        pool.start(1)
        task = jobs.submit(client, "pid_reporter", {"seconds": 1.5})  # one progress call, then a quiet sleep
        wait_for(lambda: jobs.get(client, task["id"])["progress"], message="progress")
        stop()
        time.sleep(3)  # the task ends while Redis is down
        start()
        view = wait_status(client, task["id"], FINAL, timeout=30)
        assert view["status"] == "completed", view["error"]


# --- slow clients against real gunicorn ----------------------------------------------------

@contextlib.contextmanager
def gunicorn(redis_url: str, tmp_path: Path, **extra):
    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_url, PORT=str(port), SECRET_KEY="robustness", PYTHONPATH=str(ROOT),
               WEB_CONCURRENCY="1", GUNICORN_THREADS="2", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(procfile_command("web"), shell=True, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def answering():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/api/ping")
            return connection.getresponse().status == 200
        except OSError:
            assert proc.poll() is None, log.read_text()
            return False
        finally:
            connection.close()

    try:
        wait_for(answering, timeout=30, interval=0.1, message="gunicorn to answer")
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.mark.integration
def test_trickled_body_is_cut_off_at_the_total_body_timeout(redis_url, conn, tmp_path):
    # Was a bug: webapp/slowbody.py DeadlineInput checks the deadline only before each read() call, and one
    # read(n) blocks until n bytes arrive; a client sending a byte every 0.5 s (under the idle timeout) holds a
    # thread until its whole Content-Length arrives. JOBS_BODY_TIMEOUT=3 here, yet no answer comes in 10 s.
    # A handful of such clients (threads x WEB_CONCURRENCY, 16 by default) stops the web process.
    with gunicorn(redis_url, tmp_path, JOBS_BODY_TIMEOUT="3", JOBS_BODY_IDLE_TIMEOUT="2") as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            sock.sendall(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\nConnection: close\r\n\r\n")
            sock.setblocking(False)
            started, answer = time.monotonic(), b""
            while time.monotonic() - started < 10 and not answer:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                with contextlib.suppress(BlockingIOError):
                    answer = sock.recv(4096) or b"<closed>"
                time.sleep(0.5)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), f"after {time.monotonic() - started:.1f} s: {answer[:80]!r}"
        assert time.monotonic() - started < 8
    assert jobs.list_tasks(conn)["tasks"] == []
