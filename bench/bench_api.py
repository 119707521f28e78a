"""Benchmark the JSON API under the Procfile's real gunicorn: throughput, latency, enqueue-to-start.

Starts its own embedded Redis (no persistence), gunicorn from the Procfile's web
line and, for the enqueue-to-start part, one worker from the Procfile's worker
line; everything listens on 127.0.0.1 and is stopped at the end. Then:

1. enqueue-to-start latency: N demo tasks submitted one at a time to an idle worker;
2. throughput at one concurrency, no worker running: GET /api/ping (no Redis: the
   baseline), GET /api/tasks/{id} of a completed task, POST /api/tasks of a small
   demo task (the queue just grows); after a warm-up, several rounds of short slices
   in rotating order, ratios to ping taken per round; plus server CPU per response;
3. in-process: `jobs.get` against plain rq reading the same job.

Run from the repository root (method and results: docs/performance.md):

    .venv/bin/python bench/bench_api.py [--rounds 6] [--seconds 2] [--connections 16] [--generator auto|wrk|python]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # noqa: E402
from rq import Worker  # noqa: E402
from rq.job import Job  # noqa: E402

import jobs  # noqa: E402
import loadgen  # noqa: E402
from jobs.connection import SERIALIZER  # noqa: E402
from jobs.embedded import EmbeddedRedis, free_port  # noqa: E402

DEMO = {"type": "demo", "params": {"steps": 1, "step_seconds": 0}}
#: The issue's targets: requests/s of each endpoint as a share of GET /api/ping's, same run.
TARGETS = {"get": 0.50, "post": 0.35}


def procfile_command(process: str) -> str:
    """The command line of one Procfile process type."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise KeyError(f"Procfile has no {process!r} process")


def _child_setup() -> None:
    """In a child: its own process group, and SIGTERM when the benchmark dies (Linux)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _env(redis_url: str, **extra: str) -> dict:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=pythonpath, **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("JOBS_DEV", None)
    return env


def start_web(redis_url: str, port: int, log: Path) -> subprocess.Popen:
    """gunicorn from the Procfile's web line, unchanged; only the bind address is narrowed to loopback."""
    # GUNICORN_CMD_ARGS overrides the config file's 0.0.0.0 without touching the command line.
    env = _env(redis_url, PORT=str(port), SECRET_KEY="bench-api-secret-key",
               GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}")
    with open(log, "wb") as out:
        proc = subprocess.Popen(procfile_command("web"), shell=True, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
    deadline = time.monotonic() + 30
    while True:
        try:
            if http_get(port, "/api/ping", timeout=1)[0] == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"gunicorn did not answer within 30 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def start_worker(redis_url: str, conn, log: Path) -> subprocess.Popen:
    """One worker from the Procfile's worker line; returns once it has registered."""
    argv = [os.path.expandvars(arg) for arg in shlex.split(procfile_command("worker"))]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=_env(redis_url), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
    deadline = time.monotonic() + 30
    while Worker.count(connection=conn) < 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the worker did not register within 30 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pgids: tuple[int, ...], pids: tuple[int, ...]) -> float:
    """User + system CPU seconds used so far by every process of `pgids` and by `pids` (Linux /proc)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it just ended
        # after the command: state ppid pgrp ... utime(12) stime(13) (0-based from `state`)
        if int(fields[2]) in pgids or int(entry.name) in pids:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _call(connection: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status not in (200, 202):
        raise RuntimeError(f"{method} {path} answered {response.status}: {data[:300]!r}")
    return json.loads(data)


def _when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# --- 1. enqueue-to-start -----------------------------------------------------------------

def enqueue_to_start(port: int, count: int, warm: int, poll_ms: float) -> tuple[dict[str, list[float]], str]:
    """Submit demo tasks one at a time to an idle worker: milliseconds per measure, and the last task's id."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    measures: dict[str, list[float]] = {"started_at - enqueued_at (view)": [], "submit -> seen processing (poll)": [],
                                        "submit -> seen completed (poll)": [], "POST /api/tasks answer": []}
    last_id = None
    try:
        for n in range(warm + count):
            sent = time.perf_counter()
            view = _call(connection, "POST", "/api/tasks", DEMO)
            answered = time.perf_counter()
            seen_started = None
            while True:
                view = _call(connection, "GET", f"/api/tasks/{view['id']}")
                now = time.perf_counter()
                if seen_started is None and view["status"] != "queued":
                    seen_started = now
                if view["status"] in ("completed", "failed", "canceled"):
                    break
                if now - sent > 30:
                    raise RuntimeError(f"task {view['id']} still {view['status']} after 30 s; is the worker up?")
                time.sleep(poll_ms / 1000)
            if view["status"] != "completed":
                raise RuntimeError(f"demo task {view['id']} ended {view['status']}: {view['error']}")
            last_id = view["id"]
            if n < warm:
                continue
            measures["started_at - enqueued_at (view)"].append(
                (_when(view["started_at"]) - _when(view["enqueued_at"])) * 1000)
            measures["submit -> seen processing (poll)"].append((seen_started - sent) * 1000)
            measures["submit -> seen completed (poll)"].append((now - sent) * 1000)
            measures["POST /api/tasks answer"].append((answered - sent) * 1000)
    finally:
        connection.close()
    return measures, last_id


# --- 3. jobs.get against plain rq ---------------------------------------------------------

class CountingConnection(redis.connection.Connection):
    """A real connection that counts round trips (one per packed send)."""

    round_trips = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.round_trips += 1
        return super().send_packed_command(command, check_health)


def plain_rq_read(conn, task_id: str) -> dict:
    """What a plain-rq status endpoint would do: fetch, status, meta, latest result."""
    job = Job.fetch(task_id, connection=conn, serializer=SERIALIZER)
    result = job.latest_result()
    return {"id": job.id, "status": job.get_status(), "meta": job.meta,
            "result": result.return_value if result is not None else None}


def compare_reads(redis_url: str, task_id: str, calls: int) -> list[tuple[str, float, float]]:
    """(name, microseconds per read, round trips per read), in this process, no HTTP."""
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    conn = redis.Redis(connection_pool=pool)
    rows = []
    try:
        for name, read in (("jobs.get (the API's read)", lambda: jobs.get(conn, task_id)),
                           ("plain rq: Job.fetch + get_status + meta + latest_result",
                            lambda: plain_rq_read(conn, task_id)),
                           ("json.dumps of the view only", None)):
            if read is None:
                view = jobs.get(conn, task_id)
                start = time.perf_counter()
                for _ in range(calls):
                    json.dumps(view)
                rows.append((name, (time.perf_counter() - start) / calls * 1e6, 0.0))
                continue
            for _ in range(min(200, calls)):
                read()
            trips = CountingConnection.round_trips
            start = time.perf_counter()
            for _ in range(calls):
                read()
            elapsed = time.perf_counter() - start
            rows.append((name, elapsed / calls * 1e6, (CountingConnection.round_trips - trips) / calls))
    finally:
        conn.close()
    return rows


# --- reporting ------------------------------------------------------------------------------

def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    generator = loadgen.available()
    return {"date": datetime.now().astimezone().isoformat(timespec="seconds"), "nproc": os.cpu_count(),
            "cpu": model, "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(), "wrk_installed": generator == "wrk",
            "gunicorn": f"gthread, WEB_CONCURRENCY={os.environ.get('WEB_CONCURRENCY', '2 (default)')}, "
                        f"GUNICORN_THREADS={os.environ.get('GUNICORN_THREADS', '8 (default)')}"}


NAMES = {"ping": "GET /api/ping", "get": "GET /api/tasks/{id}", "post": "POST /api/tasks"}


def print_throughput(rounds: list[dict[str, loadgen.Result]], connections: int) -> dict[str, dict[str, float]]:
    """Each round's req/s, then medians over rounds; returns the median ratios to ping per endpoint."""
    median = statistics.median
    first = rounds[0]["ping"]
    print(f"\nthroughput: {len(rounds)} rounds of {first.seconds:.0f} s per endpoint, {connections} connections, "
          f"generator {first.generator}, no worker running")
    print(f"{'round':>5} {'ping req/s':>10} {'get req/s':>10} {'post req/s':>10} {'get/ping':>9} {'post/ping':>9}")
    for n, results in enumerate(rounds, 1):
        rps = {key: r.rps for key, r in results.items()}
        print(f"{n:5d} {rps['ping']:10.0f} {rps['get']:10.0f} {rps['post']:10.0f} "
              f"{rps['get'] / rps['ping']:9.2f} {rps['post'] / rps['ping']:9.2f}")
    ratios: dict[str, dict[str, list[float]]] = {key: {"rps": [], "p50": [], "p99": [], "cpu": []} for key in NAMES}
    for results in rounds:
        base = results["ping"]
        for key, r in results.items():
            ratios[key]["rps"].append(r.rps / base.rps)
            ratios[key]["p50"].append(r.p50_ms / base.p50_ms)
            ratios[key]["p99"].append(r.p99_ms / base.p99_ms)
            ratios[key]["cpu"].append(r.server_cpu_ms / base.server_cpu_ms)
    print(f"\nmedian over the {len(rounds)} rounds; ratios are per round (same moment), then the median; "
          "spread = min-max of rps/ping;\ncpu ms = gunicorn + Redis CPU time per response (less sensitive to "
          "other load on the machine)")
    header = (f"{'endpoint':<20} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'rps/ping':>8} {'spread':>11} "
              f"{'p50/ping':>8} {'p99/ping':>8} {'cpu ms':>7} {'cpu/ping':>8} {'non-2xx':>7} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for key in NAMES:
        runs = [results[key] for results in rounds]
        r = ratios[key]
        print(f"{NAMES[key]:<20} {median(x.rps for x in runs):7.0f} {median(x.p50_ms for x in runs):7.2f} "
              f"{median(x.p99_ms for x in runs):7.2f} {median(r['rps']):8.2f} "
              f"{min(r['rps']):5.2f}-{max(r['rps']):<5.2f} {median(r['p50']):8.2f} {median(r['p99']):8.2f} "
              f"{median(x.server_cpu_ms for x in runs):7.2f} {median(r['cpu']):8.2f} "
              f"{sum(x.non_2xx for x in runs):7d} {sum(x.socket_errors for x in runs):6d}")
    return {key: {name: median(values) for name, values in ratios[key].items()} for key in NAMES}


def print_latency(measures: dict[str, list[float]], count: int) -> None:
    print(f"\nenqueue-to-start, one idle worker, {count} demo tasks one at a time (ms)")
    header = f"{'measure':<34} {'p50':>8} {'p95':>8} {'max':>8}"
    print(header)
    print("-" * len(header))
    for name, values in measures.items():
        print(f"{name:<34} {_pct(values, 50):8.1f} {_pct(values, 95):8.1f} {max(values):8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per endpoint and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per endpoint, before round 1")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--rounds", type=int, default=6, help="ping/get/post rounds (ratios: median of rounds)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="auto: wrk when installed, else the Python generator")
    parser.add_argument("--procs", type=int, default=2, help="processes of the Python generator")
    parser.add_argument("--tasks", type=int, default=30, help="tasks for the enqueue-to-start part")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="pause between status polls of that part")
    parser.add_argument("--reads", type=int, default=3000, help="reads per variant in the jobs.get/rq comparison")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if not (1 <= args.seconds <= 120 and 0 <= args.warmup <= 60 and 1 <= args.connections <= 256
            and 1 <= args.rounds <= 30 and 1 <= args.tasks <= 1000):
        parser.error("keep --seconds 1-120, --warmup 0-60, --connections 1-256, --rounds 1-10, --tasks 1-1000")
    generator = loadgen.available() if args.generator == "auto" else args.generator

    info = machine()
    print(f"{info['date']}  nproc {info['nproc']}  {info['cpu']}  load {info['loadavg_at_start']}  "
          f"python {info['python']}  generator {generator}  {info['gunicorn']}")
    tmp = tempfile.TemporaryDirectory(prefix="bench-api-")
    logs = Path(tmp.name)
    server = EmbeddedRedis()
    web = worker = None
    try:
        redis_url = server.start()
        conn = jobs.connect(redis_url)
        port = free_port()
        web = start_web(redis_url, port, logs / "gunicorn.log")

        worker = start_worker(redis_url, conn, logs / "worker.log")
        measures, task_id = enqueue_to_start(port, args.tasks, warm=3, poll_ms=args.poll_ms)
        stop(worker)
        worker = None

        requests = {"ping": loadgen.Request("GET", "/api/ping"),
                    "get": loadgen.Request("GET", f"/api/tasks/{task_id}"),
                    "post": loadgen.Request("POST", "/api/tasks", json.dumps(DEMO).encode(), "application/json")}
        server_pids = ((web.pid,), (server.process.pid,))
        options = dict(connections=args.connections, warmup=0, generator=generator, procs=args.procs)

        def measure(request: loadgen.Request) -> loadgen.Result:
            before = cpu_seconds(*server_pids)
            result = loadgen.run(port, request, seconds=args.seconds, **options)
            result.server_cpu_ms = (cpu_seconds(*server_pids) - before) * 1000 / max(1, result.responses)
            return result

        queued_before = conn.llen("rq:queue:default")
        if args.warmup:
            for request in requests.values():
                loadgen.run(port, request, seconds=args.warmup, **options)
        # Short slices, the order rotating each round: the three endpoints see the same
        # background load on a shared machine, and no endpoint always runs first or last.
        rounds = []
        order = list(requests)
        for n in range(args.rounds):
            turn = order[n % len(order):] + order[:n % len(order)]
            results = {key: measure(requests[key]) for key in turn}
            rounds.append({key: results[key] for key in order})
        created = conn.llen("rq:queue:default") - queued_before
        reads = compare_reads(redis_url, task_id, args.reads)
        log_text = (logs / "gunicorn.log").read_text(errors="replace")
    finally:
        stop(worker)
        stop(web)
        server.stop()
        tmp.cleanup()

    print_latency(measures, args.tasks)
    ratios = print_throughput(rounds, args.connections)
    print(f"\nPOST phases created {created} queued tasks (no worker running).")
    print("\nreading one completed task in-process, no HTTP (same Redis)")
    header = f"{'read':<56} {'us/read':>8} {'round trips':>12}"
    print(header)
    print("-" * len(header))
    for name, micros, trips in reads:
        print(f"{name:<56} {micros:8.0f} {trips:12.1f}")
    problems = [line for line in log_text.splitlines() if "Traceback" in line or "WORKER TIMEOUT" in line]
    if problems:
        print(f"\ngunicorn logged {len(problems)} problem line(s), first: {problems[0]}")
    missed = [f"{key} at {ratios[key]['rps']:.2f} of ping's req/s (target {target:.2f})"
              for key, target in TARGETS.items() if ratios[key]["rps"] < target]
    print("\ntargets met: " + ", ".join(f"{k} {ratios[k]['rps']:.2f} >= {t:.2f}" for k, t in TARGETS.items())
          if not missed else "\ntargets missed: " + "; ".join(missed))
    print("by CPU cost (1 / cpu-per-request ratio): " + ", ".join(
        f"{k} {1 / ratios[k]['cpu']:.2f}" for k in TARGETS))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "generator": generator, "connections": args.connections, "seconds": args.seconds,
            "enqueue_to_start_ms": measures,
            "rounds": [{k: {**vars(r), "rps": r.rps} for k, r in results.items()} for results in rounds],
            "ratios": ratios, "reads": reads, "created": created}, indent=1))
    return 1 if missed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
