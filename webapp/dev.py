"""`python -m webapp.dev` (what `python3 manage.py start` runs): the whole app on one machine.

Starts an embedded Redis when REDIS_URL is unset (persisted under ./data/redis),
then the Procfile's `worker` and `web` processes (the web app on 127.0.0.1 unless
--host says otherwise), and prints the URL once the site answers and its workers
have registered. On Ctrl-C (or SIGTERM), or when a process exits or the site does
not come up, it stops all of them, Redis last, leaving nothing running (exit code
1 when something failed).
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from jobs import settings
from jobs.embedded import EmbeddedRedis, EmbeddedRedisError, free_port, parent_death_signal

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
#: Addresses meaning "every interface", and the one this machine reaches them on.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
#: Seconds Ctrl-C waits before SIGKILL: a running task gets its SIGTERM grace, then (if it
#: swallowed the stop) is killed the time-limit grace later, and its worker needs a moment to settle it.
STOP_GRACE = settings.SHUTDOWN_GRACE + settings.TIME_LIMIT_GRACE + 5


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """Process name → command line, from the Procfile (the one source of truth)."""
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def _persistent_secret(data: Path, name: str) -> str:
    """A random value kept in the data folder, so sessions and logins survive restarts."""
    path = data / name
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _address(host: str, port: int) -> str:
    """host:port as gunicorn's --bind and URLs write it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port_is_free(host: str, port: int) -> bool:
    """Whether `port` can be bound on `host`; OSError when `host` is not an address of this machine."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
    return True


def build_env(host: str, port: int, data: Path) -> dict[str, str]:
    """Environment for the web and worker processes in dev mode."""
    env = dict(os.environ, JOBS_DEV="1", PORT=str(port), PYTHONUNBUFFERED="1")
    # gunicorn_conf.py binds 0.0.0.0:$PORT (right behind a platform's router); gunicorn lets
    # GUNICORN_CMD_ARGS override the config file, so dev mode stays on `host` without a second config.
    env["GUNICORN_CMD_ARGS"] = f"{env.get('GUNICORN_CMD_ARGS', '')} --bind {_address(host, port)}".strip()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("SECRET_KEY", _persistent_secret(data, "secret_key"))
    env.setdefault("RQ_DASHBOARD_USERNAME", "admin")
    env.setdefault("RQ_DASHBOARD_PASSWORD", _persistent_secret(data, "dashboard_password"))
    return env


def start_process(command: str, env: dict[str, str]) -> subprocess.Popen:
    """Start one Procfile command in its own process group (so it can be stopped whole)."""
    argv = [os.path.expandvars(arg) for arg in shlex.split(command)]
    # it stops too if the launcher dies without cleaning up (SIGKILL, a crash)
    return subprocess.Popen(argv, cwd=ROOT, env={**env}, start_new_session=True, preexec_fn=parent_death_signal)


def stop_all(processes: dict[str, subprocess.Popen], grace: float = STOP_GRACE) -> None:
    """SIGTERM every process group, wait up to `grace` seconds, then SIGKILL what is left."""
    for proc in processes.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in processes.values():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _exited(processes: dict[str, subprocess.Popen]) -> str | None:
    """Why the launch is over when one of the processes has ended, else None."""
    for name, proc in processes.items():
        if proc.poll() is not None:
            return f"{name} exited with code {proc.returncode}"
    return None


def _health(host: str, port: int) -> tuple[int, dict] | None:
    """The web app's /healthz status and body, or None while it does not answer."""
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def wait_until_up(processes: dict[str, subprocess.Popen], host: str, port: int, workers: list[str],
                  timeout: float, stopping) -> str | None:
    """Wait until /healthz answers and lists every worker in `workers`; why not, if it does not."""
    deadline = time.monotonic() + timeout
    last = "the web app did not answer"
    while time.monotonic() < deadline and not stopping():
        exited = _exited(processes)
        if exited:
            return f"{exited} during startup (its output is above)"
        answer = _health(host, port)
        if answer is not None:
            status, body = answer
            if set(workers) <= set(body.get("worker_names", [])):
                return None
            last = f"/healthz answered {status}: {body.get('reason') or 'not every worker has registered'}"
        time.sleep(0.2)
    return None if stopping() else f"the site did not come up within {timeout:g} s ({last})"


def banner(url: str, env: dict[str, str], bound: str, embedded_redis: bool) -> str:
    """The lines printed once everything is up: the site, the dashboard login, Redis."""
    lines = ["", f"  Job runner is up:  {url}",
             f"  Dashboard:         {url}rq  (user {env['RQ_DASHBOARD_USERNAME']}, "
             f"password {env['RQ_DASHBOARD_PASSWORD']})"]
    if embedded_redis:  # its port changes per start, and `jobs.connect()` in a shell needs it
        lines += [f"  Redis:             {env['REDIS_URL']}",
                  f"  From Python:       export REDIS_URL={env['REDIS_URL']}  (in another shell; new port each start)"]
    if not bound.startswith(("127.0.0.1:", "localhost:", "[::1]:")):
        lines.append(f"  Listening on {bound}: other machines can reach it, and the API has no login.")
    return "\n".join([*lines, "  Press Ctrl-C to stop everything.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="web port (default: $PORT, else 5000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the web app listens on (default 127.0.0.1, this machine only; "
                             "0.0.0.0 opens the unauthenticated API to your network)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes to run (default 1)")
    parser.add_argument("--data-dir", type=Path, default=DATA,
                        help="where Redis data and dev secrets live (default ./data)")
    parser.add_argument("--start-timeout", type=float, default=60.0,
                        help="seconds the web app and workers get to come up (default 60)")
    args = parser.parse_args(argv)
    data = args.data_dir.resolve()
    if args.port is None:
        env_port = os.environ.get("PORT", "5000").strip()
        if not (env_port.isdigit() and 0 < int(env_port) < 65536):
            parser.error(f"PORT={os.environ['PORT']!r} is not a port number (1-65535); fix or unset it")
        args.port = int(env_port)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a port number (1-65535)")
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    if not args.start_timeout > 0:
        parser.error("--start-timeout must be more than 0")

    port = args.port
    try:
        port_is_free = _port_is_free(args.host, port)
    except OSError as exc:
        parser.error(f"--host {args.host}: {exc.strerror or exc}")
    if not port_is_free:
        port = free_port()
        print(f"Port {args.port} is taken; using {port} instead.", flush=True)
    env = build_env(args.host, port, data)
    local = WILDCARDS.get(args.host, args.host)  # where this machine reaches the site
    url = f"http://{_address(local, port)}/"

    redis_server = None
    if not os.environ.get("REDIS_URL"):
        redis_server = EmbeddedRedis(data_dir=data / "redis")
        try:
            env["REDIS_URL"] = redis_server.start()
        except EmbeddedRedisError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"Embedded Redis at {env['REDIS_URL']} (data in {data / 'redis'})", flush=True)

    commands = procfile()
    processes: dict[str, subprocess.Popen] = {}
    stopping = False
    problem = None

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_stop)  # the terminal was closed
    try:
        # Named workers, so the wait below knows when these (not some other host's) have registered.
        names = [f"dev-{os.getpid()}-worker.{n + 1}" for n in range(args.workers)]
        for n, name in enumerate(names):
            processes[f"worker.{n + 1}"] = start_process(f"{commands['worker']} --name {name}", env)
        processes["web"] = start_process(commands["web"], env)
        problem = wait_until_up(processes, local, port, names, args.start_timeout, lambda: stopping)
        if problem is None and not stopping:
            print(banner(url, env, _address(args.host, port), embedded_redis=redis_server is not None), flush=True)
        while problem is None and not stopping:
            problem = _exited(processes)
            time.sleep(0.2)
    finally:
        print(f"Stopping (waiting up to {STOP_GRACE} s for a running task) ...", flush=True)
        stop_all(processes)
        if redis_server is not None:
            redis_server.stop()
        print("Stopped.", flush=True)
    if problem:
        print(f"error: {problem}; everything is stopped.", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
