"""Benchmark profile_csv against pandas.read_csv(...).describe() on generated CSVs.

Each measurement runs in a fresh interpreter so peak RSS (ru_maxrss) belongs to
that one tool alone. Run from the repository root:

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
import json, resource, sys, time
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
BARE = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"


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


def main() -> None:
    """Generate the files, measure each tool, print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,200", help="comma-separated file sizes in MB")
    parser.add_argument("--dir", default=None, help="where to write the generated CSVs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    bare = bare_rss()
    print(f"bare interpreter peak RSS: {bare:.0f} MB; 'warm' = the same child after importing "
          f"its tool and running it on a 3-row CSV")
    header = (f"{'size MB':>8} {'tool':<12} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12} "
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
            for tool, r in results.items():
                growth = r["rss_mb"] - r["warm_mb"]
                print(f"{mb:8.1f} {tool:<12} {r['seconds']:8.2f} {mb / r['seconds']:7.1f} "
                      f"{r['rss_mb']:12.0f} {r['rss_mb'] - bare:10.0f} {growth:10.0f} {growth / mb:15.2f}")
            prof, pan = results["csv_profile"], results["pandas"]
            rss_ratio = (prof["rss_mb"] - prof["warm_mb"]) / max(pan["rss_mb"] - pan["warm_mb"], 1.0)
            speed_ratio = prof["seconds"] / pan["seconds"]
            print(f"{mb:8.1f} {'ratio':<12} csv_profile/pandas: time {speed_ratio:.2f}x, "
                  f"RSS growth over warm {rss_ratio:.2f}x")
            path.unlink()
            growth = prof["rss_mb"] - prof["warm_mb"]
            if size < TARGET_MIN_MB:
                continue  # small files: fixed start-up costs dominate both tools
            if prof["seconds"] > pan["seconds"]:
                missed.append(f"{mb:.0f} MB: slower than pandas")
            if growth > mb / 4:
                missed.append(f"{mb:.0f} MB: RSS grew {growth:.0f} MB, over a quarter of the file")
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
