"""Benchmark profile_csv against pandas.read_csv(...).describe() on generated CSVs.

Each engine measurement runs in a fresh interpreter so its peak RSS (VmHWM) belongs
to that one tool alone. Then the real thing: the same file uploaded to an embedded
Redis and profiled by a real `rq worker` (the Procfile's line), timed from the
task's started_at to ended_at, with the peak RSS of the worker's task process.
Run from the repository root:

    .venv/bin/python bench/bench_csv_profile.py --sizes 10,200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CATEGORIES = np.array(["north", "south", "east", "west", "central", "online"])
WORDS = np.array(
    ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
     "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa"]
)
HEADER = "id,amount,quantity,ordered_on,updated_at,paid,region,customer,comment\n"
ROWS_PER_CHUNK = 10_000
TARGET_MIN_MB = 100  # the speed and memory targets are checked on files at least this big

# Each child warms its tool up on a tiny CSV first (imports, lazily loaded code), notes
# that RSS, then runs the real file and reports time and its own peak RSS.
CHILD = """
import json, sys, time
def rss_mb():
    # VmHWM: the peak of this process alone (ru_maxrss can carry a parent's peak across exec)
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) / 1024
{setup}
run(sys.argv[2])
warm = rss_mb()
t0 = time.perf_counter()
run(sys.argv[1])
print(json.dumps({{"seconds": time.perf_counter() - t0, "rss_mb": rss_mb(), "warm_mb": warm}}))
"""
SETUPS = {
    "csv_profile": "from jobs.csv_profiler import profile_csv as run",
    "pandas": "import pandas\ndef run(path):\n    pandas.read_csv(path).describe(include='all')",
}
BARE = 'print(int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) / 1024)'


def _chunk_lines(rng: np.random.Generator, start: int, n: int) -> str:
    """Build n CSV rows of mixed types, with missing values and quoted commas."""
    ids = np.arange(start, start + n)
    amount = np.char.mod("%.2f", rng.normal(250.0, 120.0, n).round(2))
    amount[rng.random(n) < 0.02] = ""
    quantity = rng.integers(1, 500, n).astype(str)
    quantity[rng.random(n) < 0.01] = "NA"
    days = rng.integers(0, 3650, n)
    ordered = np.datetime_as_string(np.datetime64("2015-01-01") + days, unit="D")
    seconds = rng.integers(0, 3650 * 86400, n)
    updated = np.char.replace(
        np.datetime_as_string(np.datetime64("2015-01-01T00:00:00") + seconds, unit="s"), "T", " "
    )
    paid = np.where(rng.random(n) < 0.7, "true", "false")
    region = CATEGORIES[rng.integers(0, len(CATEGORIES), n)]
    customer = np.char.add("cust-", rng.integers(0, 200_000, n).astype(str))
    w = WORDS[rng.integers(0, len(WORDS), (n, 3))]
    comment = np.char.add(np.char.add(np.char.add('"', w[:, 0]), ", "), w[:, 1])
    comment = np.char.add(np.char.add(np.char.add(comment, " "), w[:, 2]), '"')
    cols = [ids.astype(str), amount, quantity, ordered, updated, paid, region, customer, comment]
    table = np.stack(cols, axis=1)
    return "\n".join(",".join(row) for row in table.tolist()) + "\n"


def generate_csv(path: Path, target_bytes: int, seed: int = 42) -> int:
    """Write a deterministic mixed-type CSV of about target_bytes; return its row count."""
    rng = np.random.default_rng(seed)
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        while out.tell() < target_bytes:
            out.write(_chunk_lines(rng, rows, ROWS_PER_CHUNK))
            rows += ROWS_PER_CHUNK
    return rows


def run_child(tool: str, path: Path, tiny: Path) -> dict:
    """Run one tool in a fresh interpreter and return its timing and RSS figures."""
    code = CHILD.format(setup=SETUPS[tool])
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tiny)],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare_rss() -> float:
    """Peak RSS of an interpreter that imports nothing."""
    out = subprocess.run([sys.executable, "-c", BARE], check=True, capture_output=True, text=True)
    return float(out.stdout)


def _kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith(field + ":")).split()[1])


def run_through_worker(path: Path) -> dict:
    """Upload `path`, profile it with a real worker, return seconds and RSS figures."""
    import os
    import shlex
    import time

    import jobs
    from jobs import files
    from jobs.embedded import EmbeddedRedis

    command = next(line.split(":", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines()
                   if line.startswith("worker:"))
    argv = [arg for arg in shlex.split(command) if arg != "--with-scheduler"]  # only child: the task process
    with EmbeddedRedis() as server:
        conn = jobs.connect(server.url)
        with open(path, "rb") as handle:
            ref = files.store_file(conn, handle, path.name, ttl=3600, max_bytes=2**40)
        env = dict(os.environ, REDIS_URL=server.url, PYTHONPATH=str(ROOT))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            from rq import Worker
            while Worker.count(connection=conn) == 0:
                time.sleep(0.05)
            idle_kb = _kb(worker.pid, "VmRSS")
            task = jobs.submit(conn, "csv_profile", {"file": ref.model_dump()})
            peak_kb = 0
            while True:
                children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True,
                                          text=True).stdout.split()
                for child in children:
                    try:
                        peak_kb = max(peak_kb, _kb(int(child), "VmHWM"))
                    except (FileNotFoundError, StopIteration, ProcessLookupError):
                        pass
                view = jobs.get(conn, task["id"])
                if view["status"] in ("completed", "failed"):
                    break
                time.sleep(0.02)
            if view["status"] != "completed":
                raise SystemExit(f"csv_profile task failed: {view['error']}")
            from datetime import datetime
            started = datetime.fromisoformat(view["started_at"].replace("Z", "+00:00"))
            ended = datetime.fromisoformat(view["ended_at"].replace("Z", "+00:00"))
            return {"seconds": (ended - started).total_seconds(), "rss_mb": peak_kb / 1024,
                    "warm_mb": idle_kb / 1024}
        finally:
            worker.kill()
            worker.wait()


def main() -> None:
    """Generate the files, measure each tool, print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,200", help="comma-separated file sizes in MB")
    parser.add_argument("--dir", default=None, help="where to write the generated CSVs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    bare = bare_rss()
    print(f"bare interpreter peak RSS: {bare:.0f} MB; 'warm' = the same child after importing "
          f"its tool and running it on a 3-row CSV; for 'task (worker)', warm = the idle worker's RSS, "
          f"peak = its task process's peak, seconds = started_at → ended_at (includes fetching the file "
          f"from Redis)")
    header = (f"{'size MB':>8} {'tool':<14} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12} "
              f"{'over bare':>10} {'over warm':>10} {'over warm/size':>15}")
    print(header)
    print("-" * len(header))
    missed: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tiny = Path(tmp) / "tiny.csv"
        tiny.write_text("a,b\n1,x\n2,y\n")
        for size in sizes:
            path = Path(tmp) / f"mixed_{size}mb.csv"
            generate_csv(path, size * 1024 * 1024)
            mb = path.stat().st_size / (1024 * 1024)
            results = {tool: run_child(tool, path, tiny) for tool in ("csv_profile", "pandas")}
            results["task (worker)"] = run_through_worker(path)
            for tool, r in results.items():
                growth = r["rss_mb"] - r["warm_mb"]
                print(f"{mb:8.1f} {tool:<14} {r['seconds']:8.2f} {mb / r['seconds']:7.1f} "
                      f"{r['rss_mb']:12.0f} {r['rss_mb'] - bare:10.0f} {growth:10.0f} {growth / mb:15.2f}")
            prof, pan = results["csv_profile"], results["pandas"]
            rss_ratio = (prof["rss_mb"] - prof["warm_mb"]) / max(pan["rss_mb"] - pan["warm_mb"], 1.0)
            speed_ratio = prof["seconds"] / pan["seconds"]
            task = results["task (worker)"]
            print(f"{mb:8.1f} {'ratio':<14} csv_profile/pandas: time {speed_ratio:.2f}x, "
                  f"RSS growth over warm {rss_ratio:.2f}x; task (worker)/pandas: time "
                  f"{task['seconds'] / pan['seconds']:.2f}x")
            path.unlink()
            growth = prof["rss_mb"] - prof["warm_mb"]
            if size < TARGET_MIN_MB:
                continue  # small files: fixed start-up costs dominate both tools
            if prof["seconds"] > pan["seconds"]:
                missed.append(f"{mb:.0f} MB: slower than pandas")
            if task["seconds"] > pan["seconds"]:
                missed.append(f"{mb:.0f} MB: the task on a worker was slower than pandas")
            if task["rss_mb"] - task["warm_mb"] > mb / 4:
                missed.append(f"{mb:.0f} MB: the worker's task process grew over a quarter of the file")
            if growth > mb / 4:
                missed.append(f"{mb:.0f} MB: RSS grew {growth:.0f} MB, over a quarter of the file")
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
