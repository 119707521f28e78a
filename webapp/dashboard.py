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
  same-origin check on POSTs, and our own Redis client;
- four views are replaced in this app: the workers data (it read each worker's
  current job with pickle: a 500 while any task runs), the job page and job data
  (an unknown or expired id was a 500; now 404), requeue (a job that is not failed
  was a 500; now 409) and delete (now through jobs.delete, so our index and files go
  too, and a running task is refused with 409 instead of being pulled from under its
  worker); "requeue all" only answers POST.
"""

from __future__ import annotations

import functools
import hmac
import re

from flask import Flask, Response, abort, current_app, jsonify, request
from jinja2 import BaseLoader, ChoiceLoader, TemplateNotFound
from rq import Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError

import jobs
from jobs.connection import SERIALIZER
from jobs.rqjob import TaskJob

from .security import csrf

DEV_USERNAME = DEV_PASSWORD = "admin"
ENDPOINT = "rq_dashboard"


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
    views = app.view_functions
    views[f"{ENDPOINT}.list_workers"] = list_workers
    views[f"{ENDPOINT}.job_view"] = _not_found_as_404(views[f"{ENDPOINT}.job_view"])
    views[f"{ENDPOINT}.job_info"] = _not_found_as_404(views[f"{ENDPOINT}.job_info"])
    views[f"{ENDPOINT}.requeue_job_view"] = requeue_job
    views[f"{ENDPOINT}.delete_job_view"] = delete_job
    views[f"{ENDPOINT}.requeue_all"] = _post_only(views[f"{ENDPOINT}.requeue_all"])


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
    """Basic auth, one Redis instance, and POSTs only from the dashboard's own pages."""
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
    return None


def _not_found_as_404(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except NoSuchJobError:
            return jsonify(status="ERROR", message="No such job: it expired or was deleted."), 404

    return wrapper


def _post_only(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if request.method != "POST":
            abort(405, valid_methods=["POST"])
        return view(*args, **kwargs)

    return wrapper


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
    """Requeue through jobs.retry, the same guarded path as the API's retry; 409/404 otherwise."""
    try:
        jobs.retry(current_app.redis_conn, job_id)
    except jobs.TaskNotFound:
        return jsonify(status="ERROR", message="No such job."), 404
    except jobs.InvalidTransition as exc:
        return jsonify(status="ERROR", message=str(exc)), 409
    return jsonify(status="OK"), {"Cache-Control": "no-store"}


def delete_job(job_id: str):
    """Delete through jobs.delete, so the task's index entries and files go with it."""
    if current_app.config.get("RQ_DASHBOARD_DISABLE_DELETE"):
        return jsonify(status="DISABLED")
    try:
        jobs.delete(current_app.redis_conn, job_id)
    except jobs.TaskNotFound:
        return jsonify(status="ERROR", message="No such job."), 404
    except jobs.InvalidTransition as exc:
        return jsonify(status="ERROR", message=str(exc)), 409
    return jsonify(status="OK"), {"Cache-Control": "no-store"}
