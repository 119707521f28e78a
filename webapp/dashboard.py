"""rq-dashboard at /rq: same Redis, the JSON serializer, behind HTTP basic auth.

Mounted by `mount(app)` alone. Outside dev mode it is off (404) unless
RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD are set; in dev mode without them
it uses admin / admin (logged at startup, see docs/configuration.md).

rq-dashboard 0.9 keeps its state on a shared blueprint and a module-level config,
and has faults with JSON-serialized jobs. Everything below is per app, so building
a second app (as every test does) changes nothing for the first:
- the serializer is set on rq_dashboard.web.config (the only place its views read
  it); the value is the same for every app;
- its templates come through this app's loader, which makes every underscore
  `<%= %>` (inserts HTML) a `<%- %>` (inserts text): its pages draw task errors,
  params, progress messages and results, all user-controlled, and the /rq CSP has to
  allow inline script;
- the blueprint's before_request (which reconnects to Redis per request and raises
  LookupError, a 500, for /rq/1/...) is replaced in this app by ours: auth, a
  same-origin check on POSTs, our own Redis client, and the path parts checked before
  any view runs (rq-dashboard turned bad ones into 500s; now 400 or 404);
- error handlers for the blueprint, in this app: its data URLs and actions answer
  errors in our JSON shape, its pages with a plain page; Redis down is a 503 for both
  (its queues page said "Connection Error" with a 200);
- views replaced in this app: the workers data (it read each worker's current job
  with pickle: a 500 while any task runs); requeue and "requeue all" through
  jobs.retry, so the old error and progress go (a job that is not failed was a 500;
  now 409); delete and "empty" through jobs.delete, so our index and files go too and
  a running task is refused (409) or skipped instead of being pulled from under its
  worker; compact without rq's rename of the queue (a 500 on an empty queue, and jobs
  lost if the process died halfway). Unknown or expired job ids are a 404.
"""

from __future__ import annotations

import functools
import hmac
import re

import redis
from flask import Flask, Response, abort, current_app, jsonify, request
from jinja2 import BaseLoader, ChoiceLoader, TemplateNotFound
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import JOB_ID_PATTERN
from rq.registry import (CanceledJobRegistry, DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry,
                         ScheduledJobRegistry, StartedJobRegistry)
from werkzeug.exceptions import Conflict, HTTPException, NotFound, ServiceUnavailable

import jobs
from jobs import settings as job_settings
from jobs.connection import SERIALIZER, queue, unavailable
from jobs.rqjob import TaskJob

from .errors import HTTP_CODES, error_response
from .security import csrf

DEV_USERNAME = DEV_PASSWORD = "admin"
ENDPOINT = "rq_dashboard"

#: The registries the dashboard's URLs name, besides "queued" (the queue itself).
REGISTRIES = {"failed": FailedJobRegistry, "deferred": DeferredJobRegistry, "started": StartedJobRegistry,
              "finished": FinishedJobRegistry, "scheduled": ScheduledJobRegistry, "canceled": CanceledJobRegistry}
#: The jobs page's own "On page" field allows 1 to 200.
MAX_PER_PAGE = 200
#: Keeps (page - 1) * per_page within the list indexes Redis accepts.
MAX_PAGE = 10**9
WHOLE_NUMBER = re.compile(r"[0-9]{1,10}")


def credentials(app: Flask) -> tuple[str, str] | None:
    """The (username, password) guarding /rq, or None when the dashboard is off."""
    user, password = app.config.get("RQ_DASHBOARD_USERNAME"), app.config.get("RQ_DASHBOARD_PASSWORD")
    if user and password:
        return user, password
    if app.config.get("DEV"):
        return DEV_USERNAME, DEV_PASSWORD
    return None


def mount(app: Flask) -> None:
    """Register rq-dashboard on `app` at /rq, or leave /rq a 404 when no credentials are set."""
    creds = credentials(app)
    if creds is None:
        app.logger.info("rq-dashboard is off: set RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD to enable /rq")
        return
    if creds == (DEV_USERNAME, DEV_PASSWORD) and not app.config.get("RQ_DASHBOARD_USERNAME"):
        app.logger.warning("Dev mode: rq-dashboard at /rq uses username %r, password %r", *creds)
    from rq_dashboard import web

    web.config.serializer = SERIALIZER
    app.config["RQ_DASHBOARD_REDIS_URL"] = (app.config["REDIS_URL"],)
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    app.register_blueprint(web.blueprint, url_prefix="/rq")
    csrf.exempt(web.blueprint)
    # The app's loader is asked before the blueprint's, so ours serves rq_dashboard/*.
    app.jinja_loader = ChoiceLoader([EscapingLoader(web.blueprint.jinja_loader), app.jinja_loader])
    app.redis_conn = app.extensions["jobs_redis"]
    app.before_request_funcs[ENDPOINT] = [functools.partial(_guard, creds)]
    handlers = app.error_handler_spec[ENDPOINT][None]  # this app's handlers for the blueprint, not the blueprint's
    handlers[HTTPException] = _error
    handlers[NoSuchJobError] = lambda exc: _error(NotFound("No such job: it expired or was deleted."))
    handlers[jobs.TaskNotFound] = handlers[jobs.InvalidTransition] = _refused
    for cls in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, jobs.RedisUnavailable):
        handlers[cls] = _redis_down
    views = app.view_functions
    views[f"{ENDPOINT}.queues_overview"] = _ping_first(views[f"{ENDPOINT}.queues_overview"])
    views[f"{ENDPOINT}.list_workers"] = list_workers
    views[f"{ENDPOINT}.requeue_job_view"] = requeue_job
    views[f"{ENDPOINT}.requeue_all"] = requeue_all
    views[f"{ENDPOINT}.delete_job_view"] = delete_job
    views[f"{ENDPOINT}.empty_queue"] = empty_queue
    views[f"{ENDPOINT}.compact_queue"] = compact_queue


class EscapingLoader(BaseLoader):
    """rq-dashboard's templates with every underscore `<%= %>` (inserts HTML) made `<%- %>` (inserts text)."""

    #: Its jobs list escapes two fields by hand; escaped twice, a "<" would show as "&lt;".
    HAND_ESCAPED = re.compile(r"\$\('<div/>'\)\.text\(([\w.]+)\)\.html\(\)")

    def __init__(self, loader: BaseLoader):
        self.loader = loader

    def get_source(self, environment, template):
        """The template's source, its underscore output escaped."""
        if not template.startswith("rq_dashboard/"):
            raise TemplateNotFound(template)
        source, filename, uptodate = self.loader.get_source(environment, template)
        return self.HAND_ESCAPED.sub(r"\1", source).replace("<%=", "<%-"), filename, uptodate

    def list_templates(self) -> list[str]:
        """rq-dashboard's template names."""
        return [name for name in self.loader.list_templates() if name.startswith("rq_dashboard/")]


def _guard(creds: tuple[str, str]):
    """Basic auth, one Redis instance, POSTs only from the dashboard's own pages, and sound path parts."""
    auth = request.authorization
    user, password = creds
    if (auth is None or auth.type != "basic"
            or not hmac.compare_digest((auth.username or "").encode(), user.encode())
            or not hmac.compare_digest((auth.password or "").encode(), password.encode())):
        return Response("Log in with the RQ_DASHBOARD_USERNAME / RQ_DASHBOARD_PASSWORD credentials.", 401,
                        {"WWW-Authenticate": 'Basic realm="RQ Dashboard"', "Content-Type": "text/plain"})
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)
    # Basic-auth credentials ride along on cross-site requests too; a page of
    # another site cannot add this header without a CORS preflight, which fails.
    if request.method == "POST" and request.headers.get("X-Requested-With") != "XMLHttpRequest":
        return Response("Dashboard actions must come from the dashboard's own pages.", 403,
                        {"Content-Type": "text/plain"})
    current_app.redis_conn = current_app.extensions["jobs_redis"]
    _check_path(request.view_args or {})
    return None


def _check_path(args: dict) -> None:
    """Refuse the path parts rq-dashboard's views would turn into a 500, before they run."""
    if "job_id" in args and not JOB_ID_PATTERN.fullmatch(args["job_id"]):
        abort(404, "No such job: job ids are made of letters, digits, - and _.")
    if args.get("registry_name", "queued") not in ("queued", *REGISTRIES):
        abort(404, f"No registry {args['registry_name']!r}; use one of: queued, {', '.join(REGISTRIES)}.")
    for name, limit in (("per_page", MAX_PER_PAGE), ("page", MAX_PAGE)):
        if name in args and not (WHOLE_NUMBER.fullmatch(str(args[name])) and 1 <= int(args[name]) <= limit):
            abort(400, f"{name} must be a whole number from 1 to {limit}.")
    if args.get("order", "asc") not in ("asc", "dsc"):
        abort(400, "order must be asc (oldest first) or dsc (newest first).")
    # Only queues that exist: its jobs page also writes the name into a script unescaped.
    name = args.get("queue_name")
    if name is not None and name not in job_settings.QUEUES and not current_app.redis_conn.sismember(
            Queue.redis_queues_keys, Queue.redis_queue_namespace_prefix + name):
        abort(404, f"No queue {name!r}.")


def _wants_json() -> bool:
    """The data URLs and the actions are read by the dashboard's scripts; its pages by people."""
    return request.path.endswith(".json") or request.method == "POST"


def _error(exc: HTTPException, code: str | None = None):
    """Our JSON error shape for the dashboard's scripts, Werkzeug's plain page for people."""
    if not _wants_json():
        return exc.get_response()
    return error_response(exc.code, code or HTTP_CODES.get(exc.code) or exc.name.lower().replace(" ", "_"),
                          exc.description)


def _refused(exc: jobs.JobsError):
    """An action on a task that is gone (404) or in a state that does not allow it (409)."""
    return _error((NotFound if isinstance(exc, jobs.TaskNotFound) else Conflict)(str(exc)), exc.code)


def _redis_down(exc: Exception):
    """Redis cannot be reached: a 503 that says where and what to do."""
    if not isinstance(exc, jobs.RedisUnavailable):
        exc = unavailable(current_app.extensions["jobs_redis"], exc)
    current_app.logger.warning("Redis unavailable: %s", exc)
    return _error(ServiceUnavailable(str(exc)), exc.code)


def _ping_first(view):
    """The queues page catches Redis errors itself (answering 200): find them out before it runs."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        jobs.check(current_app.redis_conn)
        return view(*args, **kwargs)

    return wrapper


def _ok(**fields):
    """A successful action's answer, as rq-dashboard's scripts expect it."""
    return jsonify(status="OK", **fields), {"Cache-Control": "no-store"}


def list_workers(instance_number: int):
    """workers.json, reading each worker's current job with our job class and serializer."""
    from rq_dashboard.web import serialize_current_job

    rows = []
    for worker in Worker.all(connection=current_app.redis_conn, job_class=TaskJob, serializer=SERIALIZER):
        try:
            current = serialize_current_job(worker.get_current_job())
        except NoSuchJobError:
            current = "idle"
        rows.append(dict(
            name=worker.name, pid=worker.pid, queues=[q.name for q in worker.queues],
            state=str(worker.get_state()), current_job=current, last_heartbeat=worker.last_heartbeat,
            birth_date=worker.birth_date, successful_job_count=worker.successful_job_count,
            failed_job_count=worker.failed_job_count, total_working_time=worker.total_working_time,
            version=getattr(worker, "version", ""), python_version=getattr(worker, "python_version", ""),
        ))
    rows.sort(key=lambda w: (w["state"], w["queues"], w["name"]))
    return jsonify(workers=rows), {"Cache-Control": "no-store"}


def requeue_job(job_id: str):
    """Requeue through jobs.retry, the same guarded path as the API's retry."""
    jobs.retry(current_app.redis_conn, job_id)
    return _ok()


def requeue_all(queue_name: str):
    """"Requeue all" failed tasks of a queue, each through jobs.retry; POST only."""
    if request.method != "POST":
        abort(405, valid_methods=["POST"])
    count, skipped = 0, []
    for job_id in FailedJobRegistry(queue_name, connection=current_app.redis_conn).get_job_ids(cleanup=False):
        try:
            jobs.retry(current_app.redis_conn, job_id)
            count += 1
        except (jobs.TaskNotFound, jobs.InvalidTransition) as exc:
            skipped.append({"id": job_id, "message": str(exc)})
    return _ok(count=count, skipped=skipped)


def delete_job(job_id: str):
    """Delete through jobs.delete, so the task's index entries and files go with it."""
    if current_app.config.get("RQ_DASHBOARD_DISABLE_DELETE"):
        return jsonify(status="DISABLED")
    jobs.delete(current_app.redis_conn, job_id)
    return _ok()


def empty_queue(queue_name: str, registry_name: str):
    """"Empty" a queue or registry, each task through jobs.delete; running tasks are skipped and listed."""
    if current_app.config.get("RQ_DASHBOARD_DISABLE_DELETE"):
        return jsonify(status="DISABLED")
    conn = current_app.redis_conn
    if registry_name == "queued":
        source = queue(conn, queue_name)
        job_ids = source.get_job_ids()
    else:
        source = REGISTRIES[registry_name](queue_name, connection=conn, serializer=SERIALIZER)
        job_ids = source.get_job_ids(cleanup=False)
    deleted, skipped = 0, []
    for job_id in job_ids:
        try:
            jobs.delete(conn, job_id)
            deleted += 1
        except jobs.TaskNotFound:
            # Expired: only the reference is left. rq cannot take one out of the started
            # registry; its own cleanup (and our reaper) settle those.
            if not isinstance(source, StartedJobRegistry):
                source.remove(job_id)
        except jobs.InvalidTransition as exc:
            skipped.append({"id": job_id, "message": str(exc)})
    return _ok(deleted=deleted, skipped=skipped)


def compact_queue(queue_name: str):
    """Take the ids of expired jobs out of a queue, one LREM each, leaving the rest in place."""
    conn = current_app.redis_conn
    q = queue(conn, queue_name)
    job_ids = q.get_job_ids()
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(TaskJob.key_for(job_id))
        alive = pipe.execute()
    gone = [job_id for job_id, exists in zip(job_ids, alive) if not exists]
    for job_id in gone:
        q.remove(job_id)
    return _ok(removed=len(gone))
