"""The web app's settings: defaults, then the environment, then the caller's overrides.

Everything is read when `create_app` runs (not at import), so each app built by a
test sees the environment of that moment. The job core's own settings (limits,
TTLs, queues) live in `jobs.settings`; only what the web side adds is read here.
"""

from __future__ import annotations

import math
import os
import secrets
from typing import Any

from jobs import settings as job_settings

#: Bytes allowed on top of the upload limit for the multipart envelope and the
#: other form fields, so a file of exactly JOBS_MAX_UPLOAD_BYTES still fits.
MULTIPART_OVERHEAD = 1024 * 1024


class ConfigError(RuntimeError):
    """The web app cannot start with this configuration; the message says what to set."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value; use 1 or 0.")


def _number(name: str, raw: str, minimum: float, cast=int):
    try:
        value = cast(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a number of {minimum} or more.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number; set it to a number of {minimum} or more.")
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is too small; use {minimum} or more.")
    return value


def defaults() -> dict[str, Any]:
    """Values used when neither the environment nor the caller sets them."""
    return {
        "DEV": False,
        "SECRET_KEY": None,
        "REDIS_URL": job_settings.REDIS_URL,
        "MAX_UPLOAD_BYTES": job_settings.MAX_UPLOAD_BYTES,
        "RQ_DASHBOARD_USERNAME": None,
        "RQ_DASHBOARD_PASSWORD": None,
        "BODY_TIMEOUT": 300.0,
        "BODY_IDLE_TIMEOUT": 20.0,
        "POLL_INTERVAL_MS": 1000,
        "WTF_CSRF_TIME_LIMIT": None,  # a form left open overnight still submits
        "SESSION_COOKIE_SAMESITE": "Lax",
    }


def from_environment(env: os._Environ | dict) -> dict[str, Any]:
    """The settings the environment sets, validated; a bad value names its variable."""
    found: dict[str, Any] = {}
    if env.get("JOBS_DEV", "").strip():
        found["DEV"] = _bool("JOBS_DEV", env["JOBS_DEV"])
    if env.get("SECRET_KEY", "").strip():
        found["SECRET_KEY"] = env["SECRET_KEY"].strip()
    if env.get("REDIS_URL", "").strip():
        found["REDIS_URL"] = job_settings.effective_redis_url(env["REDIS_URL"].strip(),
                                                              job_settings.REDIS_TLS_VERIFY)
    for name in ("RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD"):
        if env.get(name, ""):
            found[name] = env[name]
    if env.get("JOBS_BODY_TIMEOUT", "").strip():
        found["BODY_TIMEOUT"] = _number("JOBS_BODY_TIMEOUT", env["JOBS_BODY_TIMEOUT"], 1, float)
    if env.get("JOBS_BODY_IDLE_TIMEOUT", "").strip():
        found["BODY_IDLE_TIMEOUT"] = _number("JOBS_BODY_IDLE_TIMEOUT", env["JOBS_BODY_IDLE_TIMEOUT"], 1, float)
    if env.get("JOBS_POLL_INTERVAL_MS", "").strip():
        found["POLL_INTERVAL_MS"] = _number("JOBS_POLL_INTERVAL_MS", env["JOBS_POLL_INTERVAL_MS"], 200)
    return found


def load(overrides: dict[str, Any] | None = None, env: os._Environ | dict | None = None) -> dict[str, Any]:
    """Merge defaults, environment and overrides, then check what must hold together."""
    config = defaults()
    config.update(from_environment(os.environ if env is None else env))
    config.update(overrides or {})
    relaxed = bool(config.get("DEV") or config.get("TESTING"))
    if not config.get("SECRET_KEY"):
        if not relaxed:
            raise ConfigError("SECRET_KEY is not set. Set it to a long random string (for example the output of "
                              "`python -c 'import secrets; print(secrets.token_hex(32))'`), or set JOBS_DEV=1 "
                              "for local development.")
        config["SECRET_KEY"] = secrets.token_hex(32)
    user, password = config.get("RQ_DASHBOARD_USERNAME"), config.get("RQ_DASHBOARD_PASSWORD")
    if bool(user) != bool(password):
        raise ConfigError("Set both RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD, or neither "
                          "(then the dashboard at /rq is off outside dev mode).")
    config.setdefault("MAX_CONTENT_LENGTH", int(config["MAX_UPLOAD_BYTES"]) + MULTIPART_OVERHEAD)
    return config
