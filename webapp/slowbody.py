"""Bound how long one request body may take, so slow or stalled uploads free their thread.

gunicorn's gthread worker waits for a request's first bytes without holding a
thread, but once the app reads the body a thread blocks on the socket. This WSGI
middleware gives each read an idle limit (the socket's timeout, which also bounds
writing a response to a client that stopped reading) and the whole body a total
limit. Past either, reading raises 408 Request Timeout; a client that disconnects
mid-body gets Werkzeug's 400. Both are answered as errors, never 500.
"""

from __future__ import annotations

import time

from werkzeug.exceptions import RequestTimeout


class DeadlineInput:
    """A wsgi.input whose reads fail with 408 past the deadline or an idle timeout."""

    def __init__(self, stream, deadline: float):
        self.stream = stream
        self.deadline = deadline

    def _call(self, method, *args):
        if time.monotonic() > self.deadline:
            raise RequestTimeout("The request body arrived too slowly; send it again on a faster connection.")
        try:
            return getattr(self.stream, method)(*args)
        except TimeoutError:
            raise RequestTimeout("The request body stalled; send it again.") from None

    def read(self, *args):
        return self._call("read", *args)

    def readline(self, *args):
        return self._call("readline", *args)

    def readlines(self, *args):
        return self._call("readlines", *args)

    def __iter__(self):
        while line := self.readline():
            yield line


class BodyDeadline:
    """WSGI middleware applying DeadlineInput (and a socket idle timeout under gunicorn)."""

    def __init__(self, app, total: float, idle: float):
        self.app = app
        self.total = total
        self.idle = idle

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(self.idle)
        environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], time.monotonic() + self.total)
        return self.app(environ, start_response)
