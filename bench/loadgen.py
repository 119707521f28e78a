"""A closed-loop HTTP/1.1 keep-alive load generator for 127.0.0.1: Debian's `wrk`, else Python.

`run(port, request, connections=..., seconds=..., warmup=...)` keeps `connections`
requests in flight for `seconds` and returns a Result: completed requests per
second, p50/p99 latency, and the count of non-2xx answers and socket errors.

- `wrk` (C, `apt-get install wrk`) is used when it is on PATH: it costs the server
  the least CPU, which matters on a 2-core machine where the generator and the
  server share the cores. POSTs go through a small Lua script.
- Otherwise a few processes each run an asyncio raw-socket client (asyncio.Protocol,
  no HTTP library), so the benchmark also runs on a fresh machine with only Python.

Every run is bounded: only 127.0.0.1, a fixed duration, at most MAX_REQUESTS
requests per process, and a hard deadline after which the generator is killed.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"
#: Per generator process; at ~10k requests/s this is far beyond any phase's length.
MAX_REQUESTS = 2_000_000
#: Seconds past the planned end after which a generator is killed.
HARD_MARGIN = 30.0


@dataclass(frozen=True)
class Request:
    """One request, sent again and again on every connection."""

    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None

    def raw(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {HOST}", "Connection: keep-alive"]
        if self.content_type:
            lines.append(f"Content-Type: {self.content_type}")
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + self.body


@dataclass
class Result:
    """What one measured phase produced."""

    generator: str
    seconds: float
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    #: Every response the run received, in the measured window or not (for cost per request).
    responses: int = 0
    statuses: dict = field(default_factory=dict)
    #: Filled in by the caller when it measures the server's CPU time over the run.
    server_cpu_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def available() -> str:
    """The generator `run(generator="auto")` uses: "wrk" when installed, else "python"."""
    return "wrk" if shutil.which("wrk") else "python"


def run(port: int, request: Request, *, connections: int = 16, seconds: float = 5.0, warmup: float = 1.0,
        generator: str = "auto", procs: int = 2) -> Result:
    """Warm up for `warmup` s, then measure `seconds` s of closed-loop load on 127.0.0.1:`port`."""
    generator = available() if generator == "auto" else generator
    if generator == "wrk":
        if warmup > 0:
            _run_wrk(port, request, connections, max(1.0, warmup))
        return _run_wrk(port, request, connections, seconds)
    if generator == "python":
        return _run_python(port, request, connections, seconds, warmup, procs)
    raise ValueError(f"unknown generator {generator!r}; use auto, wrk or python")


# --- wrk ---------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"status\\": %d, \\"connect\\": %d, " ..
    "\\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d, \\"p50\\": %d, \\"p99\\": %d}}\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII text is a valid Lua string literal


def _run_wrk(port: int, request: Request, connections: int, seconds: float) -> Result:
    headers = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}"
                        for k, v in ({"Content-Type": request.content_type} if request.content_type else {}).items())
    script = WRK_SCRIPT.format(method=_lua_string(request.method), body=_lua_string(request.body.decode("ascii")),
                               headers=headers)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        threads = max(1, min(connections, os.cpu_count() or 1))
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                "--timeout", "10s", "-s", handle.name, f"http://{HOST}:{port}{request.path}"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + HARD_MARGIN, check=True).stdout
    finally:
        os.unlink(handle.name)
    match = re.search(r"^WRKJSON (.*)$", out, re.M)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    s = json.loads(match.group(1))
    return Result("wrk", s["duration_us"] / 1e6, s["requests"], s["status"],
                  s["connect"] + s["read"] + s["write"] + s["timeout"], s["p50"] / 1000, s["p99"] / 1000,
                  responses=s["requests"])


# --- Python: asyncio raw sockets in several processes -----------------------------------

class _Client(asyncio.Protocol):
    """One keep-alive connection sending `payload` again as soon as each response ends."""

    def __init__(self, shared: "_Shared"):
        self.shared = shared
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def send(self):
        self.shared.sent += 1
        self.sent_at = time.perf_counter()
        self.transport.write(self.shared.payload)

    def data_received(self, data):
        buf = self.buffer
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        match = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if match is None:
            self.shared.socket_errors += 1  # no length (chunked): not something our API sends
            self.transport.close()
            return
        total = end + 4 + int(match.group(1))
        if len(buf) < total:
            return
        done = time.perf_counter()
        status = int(head[9:12])
        del buf[:total]
        self.shared.record(status, self.sent_at, done)
        if b"\r\nconnection: close" in head:
            self.transport.close()
        elif self.shared.more(done):
            self.send()
        else:
            self.transport.close()

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)


class _Shared:
    """Counters of one generator process."""

    def __init__(self, payload: bytes, start: float, end: float):
        self.payload = payload
        self.start = start
        self.end = end
        self.latencies = array("d")
        self.statuses: Counter[int] = Counter()
        self.socket_errors = 0
        self.sent = 0
        self.responses = 0

    def record(self, status: int, sent: float, done: float) -> None:
        self.responses += 1
        if self.start <= done <= self.end:
            self.latencies.append(done - sent)
            self.statuses[status] += 1

    def more(self, now: float) -> bool:
        """Whether to send another request (the window is open and the cap not reached)."""
        return now < self.end and self.sent < MAX_REQUESTS


async def _connection(port: int, shared: _Shared) -> None:
    loop = asyncio.get_running_loop()
    while shared.more(time.perf_counter()):
        try:
            _, client = await loop.create_connection(lambda: _Client(shared), HOST, port)
        except OSError:
            shared.socket_errors += 1
            await asyncio.sleep(0.05)
            continue
        client.send()
        if await client.closed is not None:
            shared.socket_errors += 1


async def _generate(port: int, payload: bytes, connections: int, start: float, end: float) -> _Shared:
    shared = _Shared(payload, start, end)
    await asyncio.wait_for(asyncio.gather(*(_connection(port, shared) for _ in range(connections))),
                           timeout=end - time.perf_counter() + HARD_MARGIN)
    return shared


def _child(port: int, payload: bytes, connections: int, warmup: float, seconds: float, out) -> None:
    start = time.perf_counter() + warmup
    shared = asyncio.run(_generate(port, payload, connections, start, start + seconds))
    out.send((shared.latencies.tobytes(), dict(shared.statuses), shared.socket_errors, shared.responses))
    out.close()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def _run_python(port: int, request: Request, connections: int, seconds: float, warmup: float,
                procs: int) -> Result:
    procs = max(1, min(procs, connections))
    ctx = multiprocessing.get_context("fork")
    children = []
    for n in range(procs):
        share = connections // procs + (1 if n < connections % procs else 0)
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(port, request.raw(), share, warmup, seconds, send), daemon=True)
        child.start()
        send.close()
        children.append((child, receive))
    latencies = array("d")
    statuses: Counter[int] = Counter()
    socket_errors = responses = 0
    deadline = time.monotonic() + warmup + seconds + HARD_MARGIN
    try:
        for child, receive in children:
            if not receive.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("a load generator process did not finish in time")
            raw, counts, errors, answered = receive.recv()
            latencies.frombytes(raw)
            statuses.update(counts)
            socket_errors += errors
            responses += answered
    finally:
        for child, receive in children:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    ordered = sorted(latencies)
    non_2xx = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    return Result("python", seconds, len(ordered), non_2xx, socket_errors,
                  _percentile(ordered, 50) * 1000, _percentile(ordered, 99) * 1000, responses, dict(statuses))
