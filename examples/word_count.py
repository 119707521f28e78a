"""A user's own task type: count the words in an uploaded text file."""

from collections import Counter
from typing import Annotated

from pydantic import Field

from jobs import InputFile, TaskContext, task_type


@task_type("word_count", title="Word count", description="Counts words in a text file.",
           time_limit=120, max_attempts=2, backoff=[5], rerun_safe=True)
def word_count(
    ctx: TaskContext,
    *,
    text: Annotated[InputFile, Field(title="Text file")],
    top: Annotated[int, Field(ge=1, le=100, description="How many frequent words to list.")] = 10,
    ignore_case: bool = True,
) -> dict:
    counts: Counter[str] = Counter()
    done = 0
    with open(text.path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            done += len(line.encode("utf-8"))
            counts.update((line.lower() if ignore_case else line).split())
            ctx.progress(done=done, total=text.size, message=f"{sum(counts.values())} words so far")
    return {"words": sum(counts.values()), "distinct": len(counts),
            "top": [{"word": w, "count": n} for w, n in counts.most_common(top)]}
