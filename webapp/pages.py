"""The HTML pages: home, the form per task type, the task page and the task list.

Forms post back to themselves (CSRF-protected), re-render with field messages on
invalid input (422) and redirect to the task page on success (POST/redirect/GET).
Pages are complete without JavaScript; static/app.js only keeps them live.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

import jobs
from jobs.registry import TaskType

from . import present
from .submission import form_params, store_uploads, submit_with_uploads

bp = Blueprint("pages", __name__)

RESERVED = ("csrf_token", "idempotency_key")


def conn():
    """The app's Redis client."""
    return current_app.extensions["jobs_redis"]


@bp.app_context_processor
def navigation():
    """Whether the header links to the dashboard (it is off without credentials)."""
    return {"dashboard_enabled": "rq_dashboard" in current_app.blueprints}


def _task_type(name: str) -> TaskType:
    try:
        return jobs.get_task_type(name)
    except jobs.UnknownTaskType as exc:
        abort(404, description=str(exc))


@bp.get("/")
def home():
    """Task-type cards and the latest tasks."""
    latest = jobs.list_tasks(conn(), limit=10)["tasks"]
    return render_template("home.html", types=jobs.task_types(), tasks=latest)


@bp.get("/tasks")
def task_list():
    """Tasks newest first, filtered by status and type, one page at a time."""
    status, type_name = request.args.get("status") or None, request.args.get("type") or None
    cursor = request.args.get("cursor") or None
    try:
        page = jobs.list_tasks(conn(), status=status, type_name=type_name, cursor=cursor, limit=20)
        problem, code = None, 200
    except (jobs.InvalidParams, jobs.UnknownTaskType) as exc:
        page, problem, code = {"tasks": [], "next_cursor": None}, str(exc), 422
    return render_template("tasks.html", page=page, status=status, type_name=type_name, problem=problem,
                           statuses=jobs.STATUSES, types=jobs.task_types(), cursor=cursor), code


def _render_form(ttype: TaskType, values: dict, errors: dict, key: str, status: int = 200, problem: str = ""):
    return render_template("form.html", ttype=ttype, values=values, errors=errors, idempotency_key=key,
                           problem=problem, input_value=present.input_value), status


@bp.get("/tasks/new/<type_name>")
def new_task(type_name: str):
    """The form for one task type, with a fresh idempotency key."""
    ttype = _task_type(type_name)
    defaults = {spec.name: spec.default for spec in ttype.params}
    return _render_form(ttype, defaults, {}, uuid.uuid4().hex)


@bp.post("/tasks/new/<type_name>")
def create_task(type_name: str):
    """Validate and submit; one task per form render however often it is sent."""
    ttype = _task_type(type_name)
    form = request.form
    key = form.get("idempotency_key", "")
    if not (0 < len(key) <= 200 and key.isascii() and key.isprintable()):
        key = uuid.uuid4().hex
    values = {spec.name: form.getlist(spec.name)[-1] for spec in ttype.params
              if spec.kind != "file" and form.getlist(spec.name)}
    try:
        stored = store_uploads(conn(), ttype, request.files, current_app.config["MAX_UPLOAD_BYTES"])
    except jobs.FileTooLarge as exc:
        return _render_form(ttype, values, {getattr(exc, "field", "file"): str(exc)}, key, 413, str(exc))
    except jobs.InvalidParams as exc:
        return _render_form(ttype, values, exc.fields, key, 422, str(exc))
    try:
        view = submit_with_uploads(conn(), ttype, form_params(ttype, form, RESERVED), stored,
                                   idempotency_key=f"form:{key}")  # apart from API clients' keys
    except jobs.IdempotencyConflict as exc:
        problem = (f"This form was already sent, and made task {exc.task_id} with other values. "
                   "Send it again to make a new task.")
        return _render_form(ttype, values, {}, uuid.uuid4().hex, 422, problem)
    except jobs.InvalidParams as exc:
        problem = "Some values need fixing; see the messages next to the fields."
        if stored or any(spec.kind == "file" for spec in ttype.params):
            problem += " Files are not kept: choose them again."
        return _render_form(ttype, values, exc.fields, key, 422, problem)
    return redirect(url_for(".task_page", task_id=view["id"]), 303)


@bp.get("/tasks/<task_id>")
def task_page(task_id: str):
    """Status, progress, params, result or error, and the actions that apply now."""
    view = jobs.get(conn(), task_id)
    try:
        ttype = jobs.get_task_type(view["type"])
    except jobs.UnknownTaskType:
        ttype = None
    titles = {spec.name: spec.title for spec in ttype.params} if ttype else {}
    params = [(titles.get(name, name), "—" if value is None else  # not given: say so, not a blank cell
               value.get("name", "") if isinstance(value, dict) else present.cell(value))
              for name, value in view["params"].items()]
    return render_template("task.html", task=view, ttype=ttype, params=params,
                           timing=present.timing(view), blocks=present.result_blocks(view["result"]),
                           final=view["status"] in jobs.FINAL_STATUSES,
                           poll_ms=current_app.config["POLL_INTERVAL_MS"])


@bp.post("/tasks/<task_id>/cancel")
def cancel(task_id: str):
    """Cancel from the task page, then show it again."""
    return _act(jobs.cancel, task_id, "Cancel requested.")


@bp.post("/tasks/<task_id>/retry")
def retry(task_id: str):
    """Retry from the task page, then show it again."""
    return _act(jobs.retry, task_id, "Queued again.")


def _act(action, task_id: str, done: str):
    try:
        action(conn(), task_id)
        flash(done, "info")
    except jobs.InvalidTransition as exc:
        flash(str(exc), "error")
    return redirect(url_for(".task_page", task_id=task_id), 303)
