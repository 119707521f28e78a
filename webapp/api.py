"""The JSON API under /api: ping, task types, submit, status, list, start, cancel, retry, delete, files.

Not cookie-authenticated, hence exempt from CSRF (see docs/configuration.md). Every answer
is JSON with `Cache-Control: no-store`; errors use the one shape in webapp.errors.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

import jobs
from jobs.registry import TaskType

from . import downloads, openapi
from .errors import BadRequest
from .submission import form_params, store_uploads, submit_with_uploads

bp = Blueprint("api", __name__, url_prefix="/api")

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
SUBMISSION_KEYS = ("type", "params", "start", "delay")


def conn():
    """The app's Redis client."""
    return current_app.extensions["jobs_redis"]


@bp.after_request
def no_store(response):
    """API answers are never cached; an answer without a body has no content type."""
    response.headers["Cache-Control"] = "no-store"
    if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
        response.status_code = 204  # Flask's automatic OPTIONS: the Allow header is the answer
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)
    return response


def type_info(ttype: TaskType) -> dict[str, Any]:
    """What a client needs to know to submit a task of this type."""
    return {"name": ttype.name, "title": ttype.title, "description": ttype.description,
            "params": ttype.schema(), "time_limit": ttype.time_limit,
            "max_attempts": ttype.retry.max_attempts, "queue": ttype.queue}


#: JSON bodies carry parameters, not files: a cap keeps one request from costing hundreds of MB.
MAX_JSON_BYTES = 1024 * 1024


def json_object(optional: bool = False) -> dict:
    """The request's JSON object body; BadRequest if it is not one."""
    if optional and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    if request.mimetype != "application/json":
        raise BadRequest("Send a JSON object with Content-Type: application/json.")
    too_large = RequestEntityTooLarge(f"JSON bodies are limited to {MAX_JSON_BYTES // 1024} KiB; send files "
                                      "as multipart/form-data parts instead.")
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise too_large
    raw = request.stream.read(MAX_JSON_BYTES + 1)  # a chunked body has no Content-Length to check first
    if len(raw) > MAX_JSON_BYTES:
        raise too_large
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest("The JSON body is nested too deeply; send a flat JSON object.") from None
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}); send a JSON object.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object, like {\"params\": {...}}.")
    return body


def parse_bool(value: Any, name: str) -> bool:
    """A JSON boolean, or a form's true/false spelling."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "off", "no"):
        return False
    raise jobs.InvalidParams(f"{name} must be true or false.", {name: "must be true or false"})


def parse_delay(value: Any) -> float | None:
    """Seconds to wait before the task is queued, or None."""
    if value is None or value == "":
        return None
    try:
        delay = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        delay = math.nan
    if not math.isfinite(delay):
        raise jobs.InvalidParams("delay must be a number of seconds.", {"delay": "must be a number of seconds"})
    return delay


def idempotency_key() -> str | None:
    """The Idempotency-Key header, if sent; it must be 1-200 visible ASCII characters."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (0 < len(key) <= 200 and key.isascii() and key.isprintable()):
        raise BadRequest("Idempotency-Key must be 1 to 200 visible ASCII characters, such as a UUID.")
    return key


@bp.get("/ping")
def ping():
    """A liveness answer that touches nothing (no Redis): the baseline of bench/bench_api.py."""
    return jsonify(ok=True)


@bp.get("/task-types")
def list_types():
    """Every registered task type with its params schema."""
    return jsonify(task_types=[type_info(t) for t in jobs.task_types()])


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document, generated from the registered task types."""
    return jsonify(openapi.document(jobs.task_types()))


@bp.post("/tasks")
def submit():
    """Create a task from JSON, or from a form with one field per parameter and file parts."""
    key = idempotency_key()
    if request.mimetype in FORM_TYPES:
        return _submit_form(key)
    body = json_object()
    unknown = sorted(set(body) - set(SUBMISSION_KEYS))
    if unknown:
        raise jobs.InvalidParams(f"Unknown field(s) {', '.join(unknown)}; a submission has "
                                 f"{', '.join(SUBMISSION_KEYS)}.", {k: "is not a submission field" for k in unknown})
    if "type" not in body:
        raise jobs.InvalidParams("Say which task type to run in `type`; GET /api/task-types lists them.",
                                 {"type": "is required"})
    view = jobs.submit(conn(), body["type"], body.get("params"), start=parse_bool(body.get("start", True), "start"),
                       idempotency_key=key, delay=parse_delay(body.get("delay")))
    return _created(view)


def _submit_form(key: str | None):
    form = request.form
    repeated = [name for name in ("type", "start", "delay") if len(form.getlist(name)) > 1]
    if repeated:
        raise jobs.InvalidParams(f"{', '.join(repeated)} sent more than once; send each once.",
                                 {name: "sent more than once" for name in repeated})
    if not form.get("type"):
        raise jobs.InvalidParams("Say which task type to run in the `type` field; GET /api/task-types lists them.",
                                 {"type": "is required"})
    ttype = jobs.get_task_type(form["type"])
    start = parse_bool(form.get("start", "true"), "start")
    delay = parse_delay(form.get("delay"))
    params = form_params(ttype, form, reserved=("type", "start", "delay"))
    stored = store_uploads(conn(), ttype, request.files, current_app.config["MAX_UPLOAD_BYTES"])
    view = submit_with_uploads(conn(), ttype, params, stored, start=start, idempotency_key=key, delay=delay)
    return _created(view)


def _created(view: dict):
    response = jsonify(view)
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_task", task_id=view["id"])
    return response


@bp.get("/tasks")
def list_tasks():
    """Tasks newest first, filtered by ?status= and ?type=, paged by ?cursor=."""
    args = request.args
    limit = args.get("limit", "20")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit[:4]) <= jobs.api.MAX_LIMIT and len(limit) <= 3):
        raise jobs.InvalidParams(f"limit must be a whole number from 1 to {jobs.api.MAX_LIMIT}.",
                                 {"limit": f"must be a whole number from 1 to {jobs.api.MAX_LIMIT}"})
    page = jobs.list_tasks(conn(), status=args.get("status") or None, type_name=args.get("type") or None,
                           limit=int(limit), cursor=args.get("cursor") or None)
    return jsonify(page)


@bp.get("/tasks/<task_id>")
def get_task(task_id: str):
    """One task's view: status, progress, result or error."""
    return jsonify(jobs.get(conn(), task_id))


@bp.post("/tasks/<task_id>/start")
def start_task(task_id: str):
    """Queue a pending task, optionally with new values for some params."""
    body = json_object(optional=True)
    unknown = sorted(set(body) - {"params"})
    if unknown:
        raise jobs.InvalidParams(f"Unknown field(s) {', '.join(unknown)}; a start request has only `params`.",
                                 {k: "is not a start field" for k in unknown})
    return jsonify(jobs.start(conn(), task_id, body.get("params")))


@bp.post("/tasks/<task_id>/cancel")
def cancel_task(task_id: str):
    """Cancel a task that has not ended."""
    return jsonify(jobs.cancel(conn(), task_id))


@bp.post("/tasks/<task_id>/retry")
def retry_task(task_id: str):
    """Run a failed or canceled task again."""
    return jsonify(jobs.retry(conn(), task_id))


@bp.delete("/tasks/<task_id>")
def delete_task(task_id: str):
    """Remove a task that is not running."""
    jobs.delete(conn(), task_id)
    return "", 204


@bp.get("/tasks/<task_id>/files/<path:name>")
def download(task_id: str, name: str):
    """An output file of the task, streamed."""
    return downloads.output_file(conn(), task_id, name)
