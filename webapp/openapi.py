"""The OpenAPI 3.1 document: the endpoints written once here, the params from the registry.

Each registered task type's params schema (TaskType.schema()) becomes a component;
POST /api/tasks takes a oneOf of one submission per type, told apart by `type`.
Nothing about a type's params is written by hand, so a new task type shows up by
being registered.
"""

from __future__ import annotations

import copy
from typing import Any

from jobs import STATUSES
from jobs.registry import TaskType

REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}
TASK = _json(_ref("Task"), "The task's view.")
NOT_FOUND = _error("No task has this id, or it expired (`error.expired` says which).")
CONFLICT = _error("The task is in a state where this action does not apply.")
UNAVAILABLE = _error("Redis cannot be reached.")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["invalid_params", "not_found", "invalid_state"]},
                "message": {"type": "string", "description": "What went wrong and what to do next."},
                "fields": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "Per-field messages of a 422."},
                "expired": {"type": "boolean", "description": "On a task 404: it existed and its retention passed."},
            }}},
    },
    "Progress": {
        "type": ["object", "null"],
        "properties": {"percent": {"type": ["number", "null"]}, "done": {"type": ["integer", "null"]},
                       "total": {"type": ["integer", "null"]}, "message": {"type": "string"},
                       "updated_at": {"type": "string", "format": "date-time"}},
    },
    "TaskError": {
        "type": ["object", "null"],
        "properties": {"kind": {"enum": ["exception", "timeout", "worker_lost", "canceled"]},
                       "type": {"type": ["string", "null"]}, "message": {"type": "string"},
                       "traceback": {"type": ["string", "null"]}},
    },
    "OutputFile": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "size": {"type": "integer"}, "content_type": {"type": "string"}},
    },
    "Task": {
        "type": "object", "required": ["id", "type", "status"],
        "properties": {
            "id": {"type": "string"}, "type": {"type": "string"}, "status": {"enum": list(STATUSES)},
            "params": {"type": "object"}, "progress": _ref("Progress"), "error": _ref("TaskError"),
            "result": {"description": "The task function's return value once completed."},
            "files": {"type": "array", "items": _ref("OutputFile"),
                      "description": "Download each at /api/tasks/{id}/files/{name}."},
            "attempt": {"type": "object", "properties": {"number": {"type": "integer"}, "of": {"type": "integer"}}},
            "worker": {"type": ["string", "null"]}, "cancel_requested": {"type": "boolean"},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
            "enqueued_at": {"type": ["string", "null"], "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "queue": {"type": ["string", "null"]},
        },
    },
    "TaskPage": {
        "type": "object", "required": ["tasks", "next_cursor"],
        "properties": {"tasks": {"type": "array", "items": _ref("Task")},
                       "next_cursor": {"type": ["string", "null"], "description": "Pass as ?cursor= for older tasks."}},
    },
    "TaskType": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                       "params": {"type": "object", "description": "JSON Schema of the params."},
                       "time_limit": {"type": "integer"}, "max_attempts": {"type": "integer"},
                       "queue": {"type": "string"}},
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"enum": ["ok", "unavailable"]}, "reason": {"type": "string"},
                       "redis": {"type": "boolean"}, "workers": {"type": "integer"},
                       "worker_names": {"type": "array", "items": {"type": "string"}},
                       "queues": {"type": "object", "additionalProperties": {"type": "integer"}}},
    },
}

PATHS: dict[str, Any] = {
    "/api/ping": {"get": {
        "summary": "Liveness of the web process (touches no Redis)", "operationId": "ping",
        "responses": {"200": _json({"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
                                   "The web process answers.")}}},
    "/api/task-types": {"get": {
        "summary": "List the task types", "operationId": "listTaskTypes",
        "responses": {"200": _json({"type": "object", "properties": {
            "task_types": {"type": "array", "items": _ref("TaskType")}}}, "Every registered type.")}}},
    "/api/tasks": {
        "post": {
            "summary": "Submit a task", "operationId": "submitTask",
            "description": "JSON, or multipart/form-data with a `type` field, one field per parameter and a file "
                           "part per file parameter. `start` (default true) false creates it pending; `delay` "
                           "seconds schedules it.",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "maxLength": 200},
                            "description": "Resending the same request with the same key returns the first task "
                                           "instead of a new one; the key with another request is a 422 "
                                           "`idempotency_conflict`."}],
            "requestBody": {"required": True, "content": {}},
            "responses": {"202": {**TASK, "headers": {"Location": {"schema": {"type": "string"},
                                                                   "description": "The task's URL."}}},
                          "400": _error("Malformed: not JSON, wrong content type, not an object, or a form "
                                        "body that cannot be read."),
                          "408": _error("The request body arrived too slowly or stalled."),
                          "413": _error("A file or the request is over the upload limit, a JSON body over 1 MiB, "
                                        "or a form with too many parts."),
                          "422": _error("Unknown task type or invalid params (`fields` says which), or an "
                                        "Idempotency-Key already used for another request."),
                          "503": UNAVAILABLE}},
        "get": {
            "summary": "List tasks, newest first", "operationId": "listTasks",
            "parameters": [{"name": "status", "in": "query", "schema": {"enum": list(STATUSES)}},
                           {"name": "type", "in": "query", "schema": {"type": "string"}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                           {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("TaskPage"), "One page of tasks."),
                          "422": _error("Unknown status or type, or a bad cursor or limit.")}},
    },
    "/api/tasks/{task_id}": {
        "parameters": [TASK_ID],
        "get": {"summary": "Read a task", "operationId": "getTask",
                "responses": {"200": TASK, "404": NOT_FOUND, "503": UNAVAILABLE}},
        "delete": {"summary": "Delete a task that is not running", "operationId": "deleteTask",
                   "responses": {"204": {"description": "Deleted with its result and files."},
                                 "404": NOT_FOUND, "409": CONFLICT}},
    },
    "/api/tasks/{task_id}/start": {"parameters": [TASK_ID], "post": {
        "summary": "Start a pending task", "operationId": "startTask",
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"params": {"type": "object", "description": "Params to replace."}}}}}},
        "responses": {"200": TASK, "400": _error("The body is not a JSON object."), "404": NOT_FOUND,
                      "409": CONFLICT, "422": _error("Invalid params, or a field other than `params`.")}}},
    "/api/tasks/{task_id}/cancel": {"parameters": [TASK_ID], "post": {
        "summary": "Cancel a task", "operationId": "cancelTask",
        "responses": {"200": TASK, "404": NOT_FOUND, "409": CONFLICT}}},
    "/api/tasks/{task_id}/retry": {"parameters": [TASK_ID], "post": {
        "summary": "Retry a failed or canceled task", "operationId": "retryTask",
        "responses": {"200": TASK, "404": NOT_FOUND, "409": CONFLICT}}},
    "/api/tasks/{task_id}/files/{name}": {"parameters": [TASK_ID, {"name": "name", "in": "path", "required": True,
                                                                    "schema": {"type": "string"}}],
                                          "get": {
        "summary": "Download an output file", "operationId": "downloadFile",
        "responses": {"200": {"description": "The file, as an attachment.",
                              "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                  "contentMediaType": "application/octet-stream"}}}},
                      "404": _error("Unknown task or file name."), "410": _error("The file expired.")}}},
    "/api/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1."}}}},
    "/healthz": {"get": {"summary": "Health: Redis reachable and at least one worker alive", "operationId": "health",
                         "responses": {"200": _json(_ref("Health"), "Healthy."),
                                       "503": _json(_ref("Health"), "Redis down or no live worker; `reason` says which.")}}},
}


def _rewrite_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v, names) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = REF + names[ref[len("#/$defs/"):]]
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, names) for v in node]
    return node


def _params_component(ttype: TaskType, schemas: dict) -> str:
    """Add the type's params schema (and its $defs, hoisted) to `schemas`; return its name."""
    schema = copy.deepcopy(ttype.schema())
    defs = schema.pop("$defs", {})
    names = {}
    for def_name, definition in defs.items():
        name = def_name if schemas.get(def_name, definition) == definition else f"{ttype.name}.{def_name}"
        names[def_name] = name
    for def_name, definition in defs.items():
        schemas[names[def_name]] = _rewrite_refs(definition, names)
    component = f"params.{ttype.name}"
    schemas[component] = _rewrite_refs(schema, names)
    return component


def _form_schema(ttype: TaskType) -> dict:
    """The multipart shape: one field per param; file params are binary parts."""
    schema = ttype.schema()
    properties: dict[str, Any] = {"type": {"const": ttype.name},
                                  "start": {"type": "boolean", "default": True},
                                  "delay": {"type": "number", "minimum": 0}}
    for spec in ttype.params:
        if spec.kind == "file":
            properties[spec.name] = {"type": "string", "contentMediaType": "application/octet-stream",
                                     "description": spec.description}
        else:
            prop = {k: v for k, v in schema["properties"][spec.name].items() if k != "$ref"}
            properties[spec.name] = prop
    required = ["type"] + [spec.name for spec in ttype.params if spec.required]
    return {"type": "object", "title": ttype.title, "required": required, "properties": properties}


def document(task_types: list[TaskType]) -> dict:
    """The whole OpenAPI 3.1 document for the registered `task_types`."""
    schemas = copy.deepcopy(SCHEMAS)
    paths = copy.deepcopy(PATHS)
    json_variants, form_variants, mapping = [], [], {}
    for ttype in task_types:
        params = _params_component(ttype, schemas)
        name = f"submit.{ttype.name}"
        schemas[name] = {
            "type": "object", "title": ttype.title, "description": ttype.description,
            "required": ["type"], "additionalProperties": False,
            "properties": {"type": {"const": ttype.name}, "params": _ref(params),
                           "start": {"type": "boolean", "default": True},
                           "delay": {"type": "number", "minimum": 0, "description": "Seconds before it is queued."}},
        }
        json_variants.append(_ref(name))
        mapping[ttype.name] = REF + name
        form_variants.append(_form_schema(ttype))
    paths["/api/tasks"]["post"]["requestBody"]["content"] = {
        "application/json": {"schema": {"oneOf": json_variants,
                                        "discriminator": {"propertyName": "type", "mapping": mapping}}},
        "multipart/form-data": {"schema": {"oneOf": form_variants}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Job runner API", "version": "1.0.0",
                 "description": "Submit tasks, follow their progress, download their results. Not "
                                "cookie-authenticated, so exempt from CSRF; put it behind your own auth if needed."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
