"""Settings for the job core, read once from the environment (12-factor).

This module is also the config module that `rq worker -c jobs.settings` reads:
rq takes its UPPERCASE names (REDIS_URL, QUEUES), so a queue name or a Redis URL
is written in one place for the web app, the workers and the tools.
"""

from __future__ import annotations

import math
import os
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class SettingsError(ValueError):
    """An environment variable holds a value the job core cannot use."""


def _print_settings_errors(kind, value, tb, fallback=sys.excepthook):
    """sys.excepthook: an uncaught SettingsError prints as one line; anything else as before."""
    if issubclass(kind, SettingsError):
        print(f"error: {value}", file=sys.stderr)
    else:
        fallback(kind, value, tb)


def invalid(message: str) -> SettingsError:
    """The error to raise for a bad variable; if nothing catches it, it prints as one line, not a traceback.

    Settings are read when a process starts (worker, web, launcher): the message says
    what to fix, and the stack behind it says nothing more.
    """
    if sys.excepthook is sys.__excepthook__:  # installed once, and never over another program's hook
        sys.excepthook = _print_settings_errors
    return SettingsError(message)


def _int(name: str, default: int, minimum: int = 0) -> int:
    """An integer environment variable; SettingsError names it when it is not one."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name}={raw!r} is not a whole number; set it to an integer such as {default}.") from None
    if value < minimum:
        raise invalid(f"{name}={value} is too small; use {minimum} or more.")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise invalid(f"{name}={raw!r} is not a number; set it to a number such as {default}.") from None
    if not math.isfinite(value):
        raise invalid(f"{name}={raw!r} is not a finite number; set it to a number such as {default}.")
    if value < minimum:
        raise invalid(f"{name}={value} is too small; use {minimum} or more.")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise invalid(f"{name}={raw!r} is not a yes/no value; use true or false.")


def _list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return items or list(default)


def _file_store(name: str) -> str:
    """"redis", or the absolute path of the shared folder (checked when a process starts: files.check_store)."""
    raw = os.environ.get(name, "").strip()
    return "redis" if not raw or raw == "redis" else os.path.abspath(raw)


def effective_redis_url(url: str, verify_tls: bool) -> str:
    """Return `url`, with certificate checks turned off for `rediss://` when asked.

    Managed Redis on Heroku presents self-signed certificates: `REDIS_TLS_VERIFY=false`
    keeps the connection encrypted but skips verification. Putting the choice in the URL
    means every client built from it (ours, `rq worker`, `rq info`, rq-dashboard) agrees.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or verify_tls:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "ssl_cert_reqs"]
    query.append(("ssl_cert_reqs", "none"))
    return urlunsplit(parts._replace(query=urlencode(query)))


env_int = _int  # public name for the other settings readers (gunicorn's config)


#: Where Redis is. Unset means "the dev launcher starts an embedded server";
#: a worker or web process started on its own then tries localhost.
REDIS_URL_FROM_ENV = os.environ.get("REDIS_URL", "").strip() or None
REDIS_TLS_VERIFY = _bool("REDIS_TLS_VERIFY", True)
REDIS_URL = effective_redis_url(REDIS_URL_FROM_ENV or "redis://localhost:6379/0", REDIS_TLS_VERIFY)

#: Queues a worker listens on, highest priority first (rq reads this name).
QUEUES = _list("JOBS_QUEUES", ["default"])

#: Extra modules that declare task types (comma-separated import paths).
TASK_MODULES = _list("JOBS_TASK_MODULES", [])

#: Prefix of the keys the job core keeps beside rq's own.
KEY_PREFIX = os.environ.get("JOBS_KEY_PREFIX", "jobs:")

#: Progress writes per running task are at most one per this many seconds
#: (the first and the last update always land).
PROGRESS_MIN_INTERVAL = _float("JOBS_PROGRESS_MIN_INTERVAL", 0.5)

#: How often a worker refreshes its heartbeat while a task runs, and how long
#: past a missed heartbeat a task counts as lost. Together with REAP_INTERVAL they
#: bound how long a task whose worker died can read `processing`:
#: HEARTBEAT_INTERVAL + LOST_AFTER + REAP_INTERVAL seconds (15 s by default).
HEARTBEAT_INTERVAL = _int("JOBS_HEARTBEAT_INTERVAL", 3, minimum=1)
LOST_AFTER = _int("JOBS_LOST_AFTER", 7, minimum=1)
REAP_INTERVAL = _int("JOBS_REAP_INTERVAL", 5, minimum=1)

#: Seconds a time-limited task gets to unwind after its limit before its
#: process is killed outright (for code that swallows the timeout).
TIME_LIMIT_GRACE = _int("JOBS_TIME_LIMIT_GRACE", 5, minimum=1)

#: Seconds a running task gets after the worker's SIGTERM (a deploy or restart)
#: before it is stopped and requeued (rerun-safe types) or failed `worker_lost`.
#: Heroku sends SIGKILL 30 s after SIGTERM.
SHUTDOWN_GRACE = _int("JOBS_SHUTDOWN_GRACE", 20, minimum=0)

#: How long a pending (created, not started) task waits to be started.
PENDING_TTL = _int("JOBS_PENDING_TTL", 24 * 3600, minimum=1)

#: How long an idempotency key maps to the task it created.
IDEMPOTENCY_TTL = _int("JOBS_IDEMPOTENCY_TTL", 24 * 3600, minimum=1)

#: Default retention of results and failures when a task type does not say.
DEFAULT_RESULT_TTL = _int("JOBS_RESULT_TTL", 7 * 24 * 3600, minimum=1)
DEFAULT_FAILURE_TTL = _int("JOBS_FAILURE_TTL", 7 * 24 * 3600, minimum=1)

#: Upload limit for file parameters, and where files live: "redis" (default,
#: works across machines) or a folder path shared by web and workers.
MAX_UPLOAD_BYTES = _int("JOBS_MAX_UPLOAD_BYTES", 64 * 1024 * 1024, minimum=1)
FILE_STORE = _file_store("JOBS_FILE_STORE")
