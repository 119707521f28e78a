"""The ways people run the whole thing: the dev launcher and `honcho start` with the Procfile."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import jobs
from jobs.embedded import free_port
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def healthy(port: int) -> bool:
    try:
        return request(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False


def run_demo_to_completion(port: int) -> dict:
    status, task = request(port, "POST", "/api/tasks", {"type": "demo", "params": {"steps": 2, "step_seconds": 0.2}})
    assert status == 202, task

    def completed():
        view = request(port, "GET", f"/api/tasks/{task['id']}")[1]
        return view if view["status"] == "completed" else None

    return wait_for(completed, timeout=30, interval=0.2, message="demo to complete")


def reachable(host: str, port: int) -> bool:
    """Whether host:port accepts a connection (127.0.0.2 reaches only a socket bound to every address)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
        children = {int(child) for child in out} - found
        found |= children
        frontier.extend(children)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def marked(marker: str) -> set[int]:
    """Live processes whose environment holds DEV_TEST_MARKER=marker: all a launcher started, wherever reparented."""
    needle = f"DEV_TEST_MARKER={marker}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:
            pass  # gone meanwhile, or not ours
    return {pid for pid in found if alive(pid)}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "JOBS_", "RQ_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture
def launch(tmp_path):
    """`launch(*args, **env)` starts the dev launcher → (process, log); afterwards nothing it started is left."""
    started = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / "dev.log"
        marker = str(tmp_path)
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "webapp.dev", "--data-dir", str(tmp_path), *args],
                                    cwd=ROOT, env=clean_env(DEV_TEST_MARKER=marker, **env),
                                    stdout=out, stderr=subprocess.STDOUT)
        started.append((proc, marker))
        return proc, log

    yield start
    for proc, marker in started:
        if proc.poll() is None:
            proc.terminate()  # the launcher's own stop, which takes its children with it
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in marked(marker):  # a failed test must not leave servers running into the next ones
            os.kill(pid, signal.SIGKILL)


def test_dev_launcher_runs_everything_and_ctrl_c_stops_it_all(launch, tmp_path):
    port = free_port()
    proc, log = launch("--port", str(port))
    wait_for(lambda: "Job runner is up" in log.read_text(), timeout=60, interval=0.1, message="the banner")
    assert healthy(port)  # the banner waits for the site and its worker
    assert f"Job runner is up:  http://127.0.0.1:{port}/" in log.read_text()
    assert not reachable("127.0.0.2", port)  # loopback only: not open to the network
    assert "Dashboard" in log.read_text() and "password" in log.read_text()
    children = descendants(proc.pid)
    assert len(children) >= 3  # embedded redis, worker (+ its scheduler), gunicorn (+ its workers)
    view = run_demo_to_completion(port)
    assert view["result"]["steps"] == 2
    # The banner's Redis URL is what README's "Using it from Python" exports as REDIS_URL.
    redis_url = re.search(r"Redis:\s+(redis://127\.0\.0\.1:\d+/0)", log.read_text())[1]
    client = jobs.connect(redis_url)
    assert jobs.get(client, view["id"])["status"] == "completed"
    client.close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    wait_for(lambda: not marked(str(tmp_path)), timeout=10, message="every process it started to exit")
    assert (tmp_path / "redis").exists()  # data persisted under the data folder
    assert "Stopped." in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL])
def test_dev_launcher_closed_terminal_or_killed_leaves_nothing_running(launch, tmp_path, sig):
    # Was a bug: closing the terminal (SIGHUP) or killing the launcher left the worker and gunicorn running.
    proc, log = launch("--port", str(free_port()))
    wait_for(lambda: "Job runner is up" in log.read_text(), timeout=60, interval=0.1, message="the banner")
    proc.send_signal(sig)
    proc.wait(timeout=60)
    wait_for(lambda: not marked(str(tmp_path)), timeout=40, message="every process it started to exit")


def test_dev_launcher_ctrl_c_gives_a_running_task_its_shutdown_grace(launch, redis_url, conn):
    port = free_port()
    # 11 s: longer than the 10 s the launcher used to allow before SIGKILL
    proc, log = launch("--port", str(port), REDIS_URL=redis_url, JOBS_SHUTDOWN_GRACE="11")
    wait_for(lambda: "Job runner is up" in log.read_text(), timeout=60, interval=0.1, message="the banner")
    status, task = request(port, "POST", "/api/tasks", {"type": "demo", "params": {"steps": 60, "step_seconds": 1}})
    assert status == 202, task
    wait_for(lambda: jobs.get(conn, task["id"])["status"] == "processing", timeout=30, message="the task to run")
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: "Stopping" in log.read_text(), timeout=5, message="the stopping line")
    waiting = re.search(r"Stopping \(waiting up to (\d+) s for a running task\)", log.read_text())
    assert waiting and int(waiting[1]) > 11, log.read_text()
    assert proc.wait(timeout=60) == 0
    # The worker stopped the task after its grace and settled it (demo is rerun-safe: requeued), instead of
    # being killed with the task still "processing".
    assert jobs.get(conn, task["id"])["status"] == "queued"


def test_dev_launcher_listens_on_every_address_only_when_asked(launch):
    port = free_port()
    proc, log = launch("--port", str(port), "--host", "0.0.0.0")
    wait_for(lambda: "Job runner is up" in log.read_text(), timeout=60, interval=0.1, message="the banner")
    assert reachable("127.0.0.2", port)  # an address other than the one the URL names
    assert f"http://127.0.0.1:{port}/" in log.read_text()
    assert f"Listening on 0.0.0.0:{port}" in log.read_text()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0


def test_dev_launcher_whose_process_dies_at_startup_says_why_exits_1_and_leaves_nothing(launch, tmp_path):
    proc, log = launch("--port", str(free_port()), JOBS_TASK_MODULES="no.such.module")  # worker and web both fail
    assert proc.wait(timeout=90) == 1, log.read_text()
    output = log.read_text()
    assert re.search(r"error: (worker\.1|web) exited with code [1-9]\d* during startup", output), output
    assert "Job runner is up" not in output and "Stopped." in output
    wait_for(lambda: not marked(str(tmp_path)), timeout=5, message="no process of the launcher left")


def test_dev_launcher_gives_up_on_a_site_that_does_not_come_up():
    from webapp.dev import wait_until_up

    sleeper = subprocess.Popen(["sleep", "30"])  # a process that stays up while the site never answers
    try:
        reason = wait_until_up({"web": sleeper}, "127.0.0.1", free_port(), ["w"], timeout=0.5, stopping=lambda: False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert reason == "the site did not come up within 0.5 s (the web app did not answer)"


def test_honcho_runs_the_procfile_with_a_redis_url(redis_url, conn, tmp_path):
    port = free_port()
    env = clean_env(REDIS_URL=redis_url, SECRET_KEY="honcho-test", PYTHONPATH=str(ROOT))
    log = tmp_path / "honcho.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile",
                                 "-p", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: healthy(port), timeout=60, interval=0.2, message="honcho's web + worker to be healthy")
        children = descendants(proc.pid)
        view = run_demo_to_completion(port)
        assert view["worker"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        wait_for(lambda: not any(alive(pid) for pid in children), timeout=15, message="processes to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("env, args, message", [
    ({"PORT": "abc"}, [], "PORT='abc' is not a port number"),
    ({}, ["--port", "70000"], "--port 70000 is not a port number"),
    ({}, ["--workers", "0"], "--workers must be 1 or more"),
    ({}, ["--host", "192.0.2.1"], "--host 192.0.2.1: Cannot assign requested address"),  # not this machine's
])
def test_dev_launcher_refuses_bad_settings_with_one_line(tmp_path, env, args, message):
    done = subprocess.run([sys.executable, "-m", "webapp.dev", "--data-dir", str(tmp_path), *args],
                          cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "redis").exists()  # nothing was started
