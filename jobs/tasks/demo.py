"""`demo`: N steps of S seconds, with progress per step and an optional failure.

Used by the tests, the docs and the web UI to show every state a task can be in.
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from ..context import TaskContext
from ..registry import task_type


class DemoFailure(RuntimeError):
    """The failure the demo was asked to raise."""


@task_type(
    "demo",
    title="Demo",
    description="Counts through a number of steps, sleeping between them; can be told to fail at a step.",
    time_limit=600,
    rerun_safe=True,
    result_ttl=24 * 3600,
    failure_ttl=7 * 24 * 3600,
)
def demo(
    ctx: TaskContext,
    *,
    steps: Annotated[int, Field(ge=1, le=1000, title="Steps", description="How many steps to run.")] = 5,
    step_seconds: Annotated[float, Field(ge=0, le=60, title="Seconds per step",
                                         description="How long each step takes.")] = 1.0,
    fail_at_step: Annotated[int | None, Field(ge=1, le=1000, title="Fail at step",
                                              description="Raise an error when this step starts (empty: never).")] = None,
    failure_message: Annotated[str, Field(max_length=500, title="Failure message",
                                          description="The error message used when failing.")] = "Demo failure requested",
) -> dict:
    """Run `steps` steps of `step_seconds` each, reporting progress after every step."""
    started = time.monotonic()
    for step in range(1, steps + 1):
        if fail_at_step == step:
            raise DemoFailure(failure_message)
        time.sleep(step_seconds)
        ctx.progress(done=step, total=steps, message=f"Step {step} of {steps} done")
    return {"steps": steps, "seconds": round(time.monotonic() - started, 3)}
