"""The one place Redis clients and rq queues are built.

Nothing here runs at import time: callers build a client with `connect()` and pass
it along (the web app keeps it in `app.extensions`, a worker gets it from rq).
"""

from __future__ import annotations

import weakref
from urllib.parse import urlsplit

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from . import settings
from .errors import RedisUnavailable

#: Every job is stored as JSON: readable by rq-dashboard, `rq info`, other
#: languages and humans, and no user input is ever unpickled.
SERIALIZER = JSONSerializer

_queues: "weakref.WeakKeyDictionary[redis.Redis, dict[str, Queue]]" = weakref.WeakKeyDictionary()


def describe_url(url: str) -> str:
    """Return the URL without its password, fit for error messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@")[-1]
    if password:
        netloc = parts.netloc.replace(f":{password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def connect(url: str | None = None, **options) -> redis.Redis:
    """Build a Redis client for `url` (default: REDIS_URL); no I/O happens yet."""
    url = url or settings.REDIS_URL
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisUnavailable(
            f"REDIS_URL {describe_url(url)!r} is not a Redis URL; use redis://host:port/db, "
            "rediss://... for TLS, or unix:///path/to/redis.sock."
        )
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("health_check_interval", 30)
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise RedisUnavailable(f"REDIS_URL {describe_url(url)!r} is malformed ({exc}); use "
                               "redis://host:port/db, rediss://... for TLS, or unix:///path/to/redis.sock.") from None


def check(conn: redis.Redis) -> None:
    """Ping Redis, turning a connection failure into one clear RedisUnavailable line."""
    try:
        conn.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise unavailable(conn, exc) from None


def unavailable(conn: redis.Redis, exc: BaseException) -> RedisUnavailable:
    """Describe a failed Redis call in one line that says where and what to do."""
    kwargs = conn.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RedisUnavailable(
        f"Cannot reach Redis at {where} ({reason}). Start Redis or set REDIS_URL to a reachable server."
    )


def queue(conn: redis.Redis, name: str) -> Queue:
    """Return the rq Queue `name` on `conn`, built once per client.

    Reusing the Queue keeps rq from asking the server's version (an extra round trip)
    on every enqueue.
    """
    from .rqjob import TaskJob

    per_conn = _queues.setdefault(conn, {})
    if name not in per_conn:
        per_conn[name] = Queue(name, connection=conn, job_class=TaskJob, serializer=SERIALIZER)
    return per_conn[name]
