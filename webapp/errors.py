"""One JSON error shape for the API, friendly pages elsewhere, and no tracebacks anywhere.

Shape: {"error": {"code": "...", "message": "...", "fields": {...}}}. Domain errors
from `jobs` map to 4xx/503 here, at the edge; Werkzeug's HTTP errors keep their
status. The Exception handler is a last-resort safety net: it logs and answers 500,
and records the event in `app.extensions["webapp_unhandled"]` so tests can prove
malformed requests never reach it.
"""

from __future__ import annotations

import redis
from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import jobs
from jobs.connection import unavailable

#: Each domain error's HTTP status.
STATUS = {
    jobs.InvalidParams: 422,
    jobs.UnknownTaskType: 422,
    jobs.TaskNotFound: 404,
    jobs.InvalidTransition: 409,
    jobs.FileTooLarge: 413,
    jobs.FileExpired: 410,
    jobs.RedisUnavailable: 503,
}

#: Codes for Werkzeug's errors, by status.
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
              413: "request_too_large", 415: "unsupported_media_type"}


class BadRequest(Exception):
    """A malformed API request (bad JSON, wrong content type, non-object body)."""

    def __init__(self, message: str, fields: dict | None = None):
        super().__init__(message)
        self.fields = fields or {}


def wants_json() -> bool:
    """API and health endpoints answer in JSON; pages answer in HTML."""
    return request.path == "/api" or request.path.startswith(("/api/", "/healthz"))


def error_response(status: int, code: str, message: str, fields: dict | None = None, **extra):
    """The API's one error shape."""
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    body.update(extra)
    response = jsonify(error=body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(status: int, title: str, message: str):
    return render_template("error.html", title=title, message=message), status


def _domain(exc: jobs.JobsError):
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
    if status == 503:
        current_app.logger.warning("Redis unavailable: %s", exc)
    if wants_json():
        extra = {"expired": bool(getattr(exc, "expired", False))} if isinstance(exc, jobs.TaskNotFound) else {}
        return error_response(status, exc.code, str(exc), getattr(exc, "fields", None), **extra)
    titles = {404: "Not found", 409: "Not possible now", 410: "Gone", 413: "Too large",
              422: "Check the form", 503: "Service unavailable"}
    return _page(status, titles.get(status, "Error"), str(exc))


def _redis_down(exc: Exception):
    return _domain(unavailable(current_app.extensions["jobs_redis"], exc))


def _bad_request(exc: BadRequest):
    return error_response(400, "bad_request", str(exc), exc.fields)


def _http(exc: HTTPException):
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge) and exc.description == RequestEntityTooLarge.description:
        limit = current_app.config["MAX_UPLOAD_BYTES"]
        message = (f"The request is larger than this server accepts (files up to {limit} bytes); "
                   "send a smaller file or raise JOBS_MAX_UPLOAD_BYTES.")
    elif isinstance(exc, CSRFError):
        message = "The form expired or was not sent from this site; reload the page and submit it again."
    elif status == 405 and wants_json():
        allowed = ", ".join(sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"}))
        message = (f"{request.method} is not allowed on {request.path}; use {allowed}. "
                   "See /api/openapi.json for the endpoints and their methods.")
    elif status == 404 and request.url_rule is None and wants_json():
        message = (f"No endpoint answers {request.method} {request.path}; "
                   "see /api/openapi.json for the endpoints and their methods.")
    else:
        message = exc.description or exc.name
    if wants_json():
        response = error_response(status, HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message)
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response
    if request.blueprint == "rq_dashboard" or request.path.startswith("/rq/"):
        response = exc.get_response()
        return response
    return _page(status, exc.name, message)


def _unhandled(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http(exc)
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    current_app.extensions.setdefault("webapp_unhandled", []).append(repr(exc))
    message = "Something went wrong on our side; try again, and tell the operator if it keeps happening."
    if wants_json():
        return error_response(500, "internal_error", message)
    return _page(500, "Server error", message)


def register(app: Flask) -> None:
    """Install the handlers on `app`."""
    app.extensions["webapp_unhandled"] = []
    app.register_error_handler(jobs.JobsError, _domain)
    app.register_error_handler(redis.exceptions.ConnectionError, _redis_down)
    app.register_error_handler(redis.exceptions.TimeoutError, _redis_down)
    app.register_error_handler(BadRequest, _bad_request)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unhandled)
