"""Bound how long one request body may take, so slow or stalled uploads free their thread.

gunicorn's gthread worker waits for a request's first bytes without holding a
thread, but once the app reads the body a thread blocks on the socket. This WSGI
middleware gives each read an idle limit (the socket's timeout, which also bounds
writing a response to a client that stopped reading) and the whole body a total
limit. A client trickling bytes just under the idle limit would keep one read
blocked forever, so a watchdog thread shuts the socket's reading side at the
deadline: the blocked read returns and the request is answered 408. A client
that disconnects mid-body gets Werkzeug's 400. Both are errors, never 500.
"""

from __future__ import annotations

import socket
import threading
import time

from werkzeug.exceptions import RequestTimeout

_SLOW = "The request body arrived too slowly; send it again on a faster connection."


class Watchdog:
    """One daemon thread per process that cuts off sockets whose body deadline passed."""

    def __init__(self, tick: float = 0.25):
        self.tick = tick
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            self._deadlines[sock] = deadline
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="body-deadline", daemon=True)
                self._thread.start()

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                expired = [sock for sock, deadline in self._deadlines.items() if deadline <= now]
                for sock in expired:
                    del self._deadlines[sock]
            for sock in expired:
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


WATCHDOG = Watchdog()


class DeadlineInput:
    """A wsgi.input whose reads fail with 408 past the deadline or an idle timeout."""

    def __init__(self, stream, deadline: float):
        self.stream = stream
        self.deadline = deadline

    def _call(self, method, *args):
        if time.monotonic() > self.deadline:
            raise RequestTimeout(_SLOW)
        try:
            data = getattr(self.stream, method)(*args)
        except TimeoutError:
            raise RequestTimeout("The request body stalled; send it again.") from None
        except Exception:
            if time.monotonic() > self.deadline:  # the watchdog cut the socket under the read
                raise RequestTimeout(_SLOW) from None
            raise
        if time.monotonic() > self.deadline:
            raise RequestTimeout(_SLOW)
        return data

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
        deadline = time.monotonic() + self.total
        has_body = environ.get("CONTENT_LENGTH") not in (None, "", "0") or "chunked" in environ.get(
            "HTTP_TRANSFER_ENCODING", "")
        if sock is not None:
            sock.settimeout(self.idle)
            if has_body:
                WATCHDOG.watch(sock, deadline)
        environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], deadline)
        try:
            return self.app(environ, start_response)
        finally:
            if sock is not None and has_body:
                WATCHDOG.forget(sock)
