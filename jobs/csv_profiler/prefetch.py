"""Parse CSV blocks on a helper thread while the caller profiles the previous group.

pyarrow's own multi-threaded parsing would also overlap, but then it cannot say
which row was malformed; one parsing thread plus a queue about one group deep keeps
row numbers, uses both cores and bounds memory to about two groups of batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import pyarrow as pa

_DONE = object()
_POLL_SECONDS = 0.1


class Prefetcher:
    """Iterate a reader's batches in groups of about group_bytes; parsing runs ahead by `depth` batches."""

    def __init__(self, batches: Iterable[pa.RecordBatch], group_bytes: int, depth: int) -> None:
        self._batches = batches
        self._group_bytes = group_bytes
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="csv-prefetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[list[pa.RecordBatch]]:
        group: list[pa.RecordBatch] = []
        size = 0
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                break
            group.append(item)
            size += item.nbytes
            if size >= self._group_bytes:
                yield group
                group, size = [], 0
        if group:
            yield group

    def _produce(self) -> None:
        """Thread body: parse batches and hand them over; errors are re-raised by the reader."""
        try:
            for count, batch in enumerate(self._batches, start=1):
                if not self._put(batch):
                    return
                if count % self._queue.maxsize == 0:
                    # Arrow's allocator caches per thread; this thread allocates every batch.
                    pa.default_memory_pool().release_unused()
            self._put(_DONE)
        except BaseException as exc:  # handed to the consuming thread, which re-raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        """Queue an item, giving up once the consumer has stopped listening."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
