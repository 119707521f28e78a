"""`csv_profile`: upload a CSV or TSV file and get a per-column profile of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from ..context import TaskContext
from ..files import InputFile
from ..registry import task_type

def human_size(n: int) -> str:
    """Bytes as people read them: '812 B', '8.2 kB', '14.0 MB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


_DELIMITERS = {"auto": None, "comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
_HEADERS = {"auto": None, "yes": True, "no": False}


@task_type(
    "csv_profile",
    title="CSV profile",
    description="Upload a CSV or TSV file (any common encoding and delimiter) and get, per column, its "
                "type, missing values, distinct count, range and most frequent values.",
    time_limit=1800,
    rerun_safe=True,
    result_ttl=7 * 24 * 3600,
    preload=["jobs.csv_profiler"],
)
def csv_profile(
    ctx: TaskContext,
    *,
    file: Annotated[InputFile, Field(title="CSV or TSV file", description="Up to the upload limit; "
                                                                          "encodings and delimiters are detected.")],
    encoding: Annotated[Literal["auto", "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"],
                        Field(title="Encoding", description="Leave on auto unless the text comes out garbled.")]
    = "auto",
    delimiter: Annotated[Literal["auto", "comma", "semicolon", "tab", "pipe"],
                         Field(title="Delimiter", description="The character between fields.")] = "auto",
    header: Annotated[Literal["auto", "yes", "no"],
                      Field(title="First row is a header", description="Auto guesses from the data.")] = "auto",
) -> dict:
    """Profile the file, reporting progress by bytes read; the profile is also saved as JSON."""
    from ..csv_profiler import profile_csv  # pyarrow: preloaded by workers, never loaded by the web

    def report(done: int, total: int) -> None:
        ctx.progress(done=done, total=max(total, 1), message=f"Read {human_size(done)} of {human_size(total)}")

    profile = profile_csv(
        file.path,
        encoding=None if encoding == "auto" else encoding,
        delimiter=_DELIMITERS[delimiter],
        has_header=_HEADERS[header],
        progress=report,
    )
    name = f"{Path(file.name).stem or 'file'}-profile.json"
    ctx.save_file(name, json.dumps(profile, indent=2, ensure_ascii=False).encode(), "application/json")
    return profile
