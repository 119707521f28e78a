"""Task types the web tests need: every parameter kind, table results and output files.

Imported by the web tests; workers load it through JOBS_TASK_MODULES (see WEB_WORKER_ENV).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from jobs import InputFile, TaskContext, task_type

#: Worker environment that registers these types next to tests.task_fixtures.
WEB_WORKER_ENV = {"JOBS_TASK_MODULES": "tests.task_fixtures,tests.web_task_fixtures"}


@task_type("web_kinds", title="Every parameter kind", description="Echoes one parameter of each kind.",
           time_limit=30)
def web_kinds(ctx: TaskContext, *, label: Annotated[str, Field(max_length=200, title="Label")],
              mode: Literal["fast", "slow"] = "fast",
              level: Literal[1, 2, 3] = 1,
              count: Annotated[int, Field(ge=1, le=10, title="Count", description="How many rows.")] = 2,
              ratio: Annotated[float, Field(ge=0, le=1)] = 0.5,
              loud: bool = False,
              day: dt.date | None = None,
              at: dt.datetime | None = None,
              limit: int | None = None,
              upload: InputFile | None = None) -> dict:
    """Returns its params as a table plus a list of rows; saves the upload back as an output file."""
    if upload is not None:
        with open(upload.path, "rb") as handle:
            ctx.save_file(upload.name, handle.read(), upload.content_type)
    rows = [{"n": n, "label": label, "nested": {"n": n}} for n in range(count)]
    return {"rows": rows, "label": label, "mode": mode, "level": level, "loud": loud,
            "day": day.isoformat() if day else None, "at": at.isoformat() if at else None,
            "upload": upload.name if upload else None}


@task_type("web_files", title="Writes output files", time_limit=30)
def web_files(ctx: TaskContext, *, name: str = "report.csv", content: str = "a,b\n1,2\n") -> list:
    """Saves one file called `name` and returns a list of dicts."""
    ctx.save_file(name, content.encode(), "text/csv")
    return [{"file": name, "bytes": len(content.encode())}]
