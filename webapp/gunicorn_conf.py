"""gunicorn settings for the Procfile's web process (`gunicorn --config webapp/gunicorn_conf.py ...`).

gthread workers: a thread per request in flight, and idle or slow-to-start
connections wait in the worker's poller without holding a thread, so slow or
vanished clients do not block others. Request bodies are bounded by the app
(webapp/slowbody.py: idle and total read limits → 408). The app never does long
work in a request: tasks run on rq workers, so `timeout` only catches a stuck
worker process.
"""

import os

from jobs.settings import SettingsError, env_int


def _int(name: str, default: int, minimum: int = 1) -> int:
    try:
        return env_int(name, default, minimum)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None


bind = f"0.0.0.0:{_int('PORT', 8000, minimum=1)}"
worker_class = "gthread"
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("GUNICORN_THREADS", 8)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 20
keepalive = 5
# Heroku and most proxies set X-Forwarded-*; only a front proxy can reach us there.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket lives at one fixed path per user; several servers on a
# host (tests, benchmarks, dev) would fight over it, and the Procfile never uses it.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# Limits on the request line and headers; bodies are limited by MAX_CONTENT_LENGTH.
limit_request_line = 8190
limit_request_fields = 100
