"""Task types used only by the tests (loaded through JOBS_TASK_MODULES)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field

from jobs import TaskContext, task_type


def _sleep_catching(seconds: float, catch: type[BaseException]) -> None:
    """Sleep `seconds` in short slices, swallowing `catch` (time limits, shutdowns) as hostile task code does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except catch:  # noqa: B036 - the point of these task types
            pass


@task_type("swallow_timeout", title="Swallows exceptions", time_limit=1)
def swallow_timeout(ctx: TaskContext, *, seconds: float = 30) -> str:
    """Catches every Exception while sleeping: the time limit must still hold."""
    _sleep_catching(seconds, Exception)
    return "ran to the end"


@task_type("swallow_everything", title="Swallows even BaseException", time_limit=1)
def swallow_everything(ctx: TaskContext, *, seconds: float = 30) -> str:
    """Catches BaseException too: only the hard kill after the grace period stops it."""
    _sleep_catching(seconds, BaseException)
    return "ran to the end"


@task_type("echo_options", title="Echoes rq-looking parameter names", time_limit=30)
def echo_options(ctx: TaskContext, *, timeout: int = 7, description: str = "mine",
                 result_ttl: int = 3) -> dict:
    """Parameters named like rq options must reach the function untouched."""
    return {"timeout": timeout, "description": description, "result_ttl": result_ttl}


@task_type("flaky", title="Fails until attempt N", max_attempts=3, backoff=(2,), time_limit=30)
def flaky(ctx: TaskContext, *, succeed_on: int = 3) -> dict:
    """Reports 50 % then fails on attempts before `succeed_on`."""
    ctx.progress(50, message=f"halfway through attempt {ctx.attempt}")
    if ctx.attempt < succeed_on:
        raise ValueError(f"attempt {ctx.attempt} failed on purpose")
    ctx.progress(100, message="done")
    return {"attempt": ctx.attempt}


@task_type("spin_progress", title="Reports progress in a tight loop", time_limit=60)
def spin_progress(ctx: TaskContext, *, calls: int = 100_000) -> int:
    """Calls progress `calls` times as fast as it can."""
    for n in range(1, calls + 1):
        ctx.progress(done=n, total=calls, message=f"call {n}")
    return calls


@task_type("sleeper", title="Sleeps with progress (not rerun-safe)", time_limit=120, rerun_safe=False)
def sleeper(ctx: TaskContext, *, seconds: float = 10, mode: Literal["plain", "fancy"] = "plain") -> str:
    """Sleeps in 0.1 s slices, reporting progress; a crash must not rerun it."""
    slices = max(1, int(seconds * 10))
    for n in range(slices):
        time.sleep(0.1)
        ctx.progress(done=n + 1, total=slices, message=f"slept {(n + 1) / 10:.1f} s")
    return mode


@task_type("safe_sleeper", title="Sleeps with progress (rerun-safe)", time_limit=120, rerun_safe=True)
def safe_sleeper(ctx: TaskContext, *, seconds: float = 3) -> dict:
    """Like sleeper, but may be requeued after a crash."""
    slices = max(1, int(seconds * 10))
    for n in range(slices):
        time.sleep(0.1)
        ctx.progress(done=n + 1, total=slices)
    return {"attempt": ctx.attempt}


@task_type("short_lived", title="Result kept one second", result_ttl=1, time_limit=10)
def short_lived(ctx: TaskContext, *, value: Annotated[int, Field(ge=0)] = 1) -> int:
    """Finishes at once; its result expires a second later."""
    return value


@task_type("pid_reporter", title="Reports its process id, then sleeps", time_limit=120)
def pid_reporter(ctx: TaskContext, *, seconds: float = 60) -> None:
    """Lets a test find (and kill) the process running a task."""
    import os

    ctx.progress(1, message=f"pid {os.getpid()}")
    time.sleep(seconds)


@task_type("swallow_then_return", title="Swallows the timeout, then returns", time_limit=1)
def swallow_then_return(ctx: TaskContext, *, seconds: float = 2) -> str:
    """Catches even BaseException, then returns within the grace: still a timeout."""
    _sleep_catching(seconds, BaseException)
    return "returned after its limit"


@task_type("swallow_shutdown", title="Swallows the shutdown", time_limit=120)
def swallow_shutdown(ctx: TaskContext, *, seconds: float = 30) -> str:
    """Catches even BaseException with a long limit: a worker's SIGTERM must still end it."""
    ctx.progress(1, message="running")
    _sleep_catching(seconds, BaseException)
    return "ran to the end"
