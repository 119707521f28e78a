"""Turn a submitted form (HTML page or multipart API call) into a task type's params.

Values stay strings: the job core's validation is lax, so "5" becomes 5 and
"on"/"true"/"1" become True. Only what a form cannot say is translated here: an
empty input means "not given" (the default, or null for nullable fields), a
checkbox sends a hidden "false" before its "true" (the last value wins), and a
select's string is mapped back to the choice it stands for. File parts are stored
with `jobs.files.store_file` and passed on as their InputFile dicts.

Field names the form itself uses (API: type, start, delay; page: csrf_token,
idempotency_key) cannot carry a parameter of that name; such a task type takes
that parameter through the JSON API.
"""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import FileStorage, MultiDict

import jobs
from jobs import FileTooLarge
from jobs.files import delete_file, store_file
from jobs.registry import ParamSpec, TaskType


_MISSING = object()


def _value(spec: ParamSpec, raw: str) -> Any:
    if raw == "" and spec.required:
        return _MISSING
    if raw == "" and spec.kind != "str":
        return None if spec.nullable else _MISSING
    if raw == "" and spec.nullable:
        return None
    if spec.kind == "choice":
        return next((choice for choice in spec.choices if str(choice) == raw), raw)
    return raw


def form_params(ttype: TaskType, form: MultiDict, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """The non-file params present in `form` (unknown fields are passed on, so validation names them)."""
    params: dict[str, Any] = {}
    specs = {spec.name: spec for spec in ttype.params}
    for name in form:
        if name in reserved:
            continue
        spec = specs.get(name)
        if spec is None:
            params[name] = form.get(name)
            continue
        if spec.kind == "file":
            if any(form.getlist(name)):
                raise jobs.InvalidParams(f"{name} must be sent as a file part (multipart/form-data), not text.",
                                         {name: "must be a file upload"})
            continue
        value = _value(spec, form.getlist(name)[-1])
        if value is not _MISSING:
            params[name] = value
    return params


def store_uploads(conn, ttype: TaskType, files: MultiDict, max_bytes: int) -> dict[str, dict]:
    """Store each file part of a file parameter; return name → InputFile dict.

    On any failure the files already stored are removed before the error goes on.
    """
    file_params = [spec.name for spec in ttype.params if spec.kind == "file"]
    unknown = sorted(name for name in files if name not in file_params)
    if unknown:
        takes = f"takes files only as {', '.join(file_params)}" if file_params else "takes no files"
        raise jobs.InvalidParams(f"File part(s) {', '.join(unknown)} are not parameters of {ttype.name}, which "
                                 f"{takes}.", {name: "is not a file parameter" for name in unknown})
    stored: dict[str, dict] = {}
    try:
        for spec in ttype.params:
            uploads = [part for part in files.getlist(spec.name) if part.filename]
            if len(uploads) > 1:
                raise jobs.InvalidParams(f"{spec.name} takes one file; {len(uploads)} were sent.",
                                         {spec.name: "takes one file"})
            upload: FileStorage | None = uploads[0] if uploads else None
            if upload is None:
                continue
            try:
                ref = store_file(conn, upload.stream, upload.filename, ttl=ttype.files_ttl,
                                 content_type=upload.mimetype or None, max_bytes=max_bytes)
            except FileTooLarge as exc:
                exc.field = spec.name  # lets the form show the message next to its input
                raise
            stored[spec.name] = ref.model_dump()
    except BaseException:
        discard(conn, stored)
        raise
    return stored


def submit_with_uploads(conn, ttype: TaskType, params: dict, stored: dict[str, dict], **options) -> dict:
    """jobs.submit with freshly stored uploads: they are removed unless the task uses them.

    A failed submit leaves nothing behind, and so does a resend with the same
    idempotency key, which returns the first task (with the first upload).
    """
    try:
        view = jobs.submit(conn, ttype.name, {**params, **stored}, **options)
    except BaseException:
        discard(conn, stored)
        raise
    used = {value.get("id") for value in view["params"].values() if isinstance(value, dict)}
    discard(conn, {name: ref for name, ref in stored.items() if ref["id"] not in used})
    return view


def discard(conn, stored: dict[str, dict]) -> None:
    """Remove uploads whose submission failed, so nothing is left behind."""
    for ref in stored.values():
        delete_file(conn, ref["id"])
