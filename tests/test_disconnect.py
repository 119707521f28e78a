"""Clients that vanish mid-request must not lose tasks or hurt the web process.

Runs the Procfile's real web line (gunicorn) and a real worker against the test
Redis, then talks to gunicorn over raw sockets.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import jobs
from tests.conftest import ROOT, procfile_command, wait_for, wait_status
from tests.web_task_fixtures import WEB_WORKER_ENV

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def web(redis_url, conn, tmp_path):
    """gunicorn from the Procfile's web line; yields (port, log path)."""
    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_url, PORT=str(port), SECRET_KEY="disconnect-test",
               PYTHONPATH=str(ROOT), WEB_CONCURRENCY="2", JOBS_BODY_IDLE_TIMEOUT="2", **WEB_WORKER_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(procfile_command("web"), shell=True, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def answering():
        try:
            return get(port, "/healthz", timeout=1)[0] in (200, 503)
        except OSError:
            assert proc.poll() is None, log.read_text()
            return False

    wait_for(answering, timeout=30, interval=0.1, message="gunicorn to answer")
    yield port, log, proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def raw_request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    headers = {"Content-Length": str(len(body)), **(headers or {})}  # a larger length: a body cut short
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"] + [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def slam(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed client or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_vanishing_clients_lose_nothing(web, conn, workers):
    port, log, proc = web
    workers.start(1, env=WEB_WORKER_ENV)
    body = json.dumps({"type": "demo", "params": {"steps": 3, "step_seconds": 0.5}}).encode()
    raw_request(port, "POST", "/api/tasks", body, {"Content-Type": "application/json"}).close()

    task_id = wait_for(lambda: [t["id"] for t in jobs.list_tasks(conn)["tasks"]], timeout=10,
                       message="the task to be created")[0]

    stop = threading.Event()
    polls = {"sent": 0}

    def poller(read_some: bool, reset: bool):
        while not stop.is_set():
            sock = raw_request(port, "GET", f"/api/tasks/{task_id}")
            if read_some:
                sock.recv(20)  # the status line has started: go away mid-response
            (slam if reset else socket.socket.close)(sock)
            polls["sent"] += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=poller, args=(read, reset), daemon=True)
               for read in (True, False) for reset in (True, False)]
    # a client that promises a body and never sends it, held open the whole time
    stalled = raw_request(port, "POST", "/api/tasks", b'{"type": "de', {"Content-Type": "application/json",
                                                                      "Content-Length": "5000"})
    for thread in threads:
        thread.start()
    try:
        view = wait_status(conn, task_id, ("completed", "failed", "canceled"), timeout=30)
        status, raw = get(port, "/healthz")
        assert status == 200, raw
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        stalled.close()
    assert view["status"] == "completed" and view["result"]["steps"] == 3
    assert polls["sent"] > 20
    assert len(jobs.list_tasks(conn)["tasks"]) == 1  # the vanished POST made exactly one task

    # the web process is healthy and serves new requests
    assert proc.poll() is None
    status, raw = get(port, "/healthz")
    assert status == 200 and json.loads(raw)["workers"] == 1
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("POST", "/api/tasks", body=json.dumps({"type": "demo", "params": {"steps": 1, "step_seconds": 0}}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 202
    new_id = json.loads(response.read())["id"]
    connection.close()
    assert get(port, f"/api/tasks/{new_id}")[0] == 200
    assert wait_status(conn, new_id, "completed")["status"] == "completed"
    text = log.read_text()
    assert "Traceback" not in text and "WORKER TIMEOUT" not in text, text[-3000:]


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict]:
    """Status and JSON body of the one response on `sock` (without waiting for the close)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_stalled_and_short_bodies_get_4xx_and_free_their_thread(web, conn):
    port, log, proc = web
    headers = {"Content-Type": "application/json", "Content-Length": "5000", "Connection": "close"}
    stalled = [raw_request(port, "POST", "/api/tasks", b'{"type": "de', headers) for _ in range(6)]
    time.sleep(0.3)
    started = time.monotonic()
    status, _ = get(port, "/healthz")  # served at once while the bodies hang
    assert status in (200, 503) and time.monotonic() - started < 1
    for sock in stalled:
        status, body = read_response(sock, timeout=15)
        assert time.monotonic() - started < 6  # JOBS_BODY_IDLE_TIMEOUT=2 frees the thread
        assert status == 408 and body["error"]["code"] == "request_timeout"
        sock.close()
    short = raw_request(port, "POST", "/api/tasks", b'{"type": "demo"', headers)
    short.shutdown(socket.SHUT_WR)  # the client gives up part way: fewer bytes than promised
    status, body = read_response(short, timeout=15)
    assert status == 400 and body["error"]["code"] == "bad_request"
    short.close()
    assert jobs.list_tasks(conn)["tasks"] == []
    assert proc.poll() is None
    assert "Traceback" not in log.read_text()


def test_a_chunked_json_body_is_capped_like_one_with_a_length(web, conn):
    port, log, _ = web

    def post_chunked(body: bytes) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
            connection.request("POST", "/api/tasks", body=chunks, encode_chunked=True,
                               headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    padding = "x" * (1024 * 1024)  # an unknown field, so a parsed body would get 422
    status, answer = post_chunked(json.dumps({"type": "demo", "pad": padding}).encode())
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert "1024 KiB" in answer["error"]["message"]
    status, answer = post_chunked(json.dumps({"type": "demo", "params": {"steps": 1}}).encode())
    assert status == 202 and answer["status"] == "queued"
    assert "Traceback" not in log.read_text()
