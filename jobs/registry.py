"""Task-type declaration and lookup.

A task type is one function with typed keyword parameters, declared once with
`@task_type(...)`. From that declaration come the parameter schema (JSON Schema),
the validation run before enqueue and again on the worker, the web form and the
API documentation.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from . import settings
from .errors import InvalidParams, UnknownTaskType
from .files import InputFile

#: The kinds of parameter a task may take; each maps to one form input.
PARAM_KINDS = ("str", "choice", "int", "float", "bool", "date", "datetime", "file")

_REGISTRY: dict[str, "TaskType"] = {}


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing task is tried, and how long to wait between tries."""

    max_attempts: int = 1
    backoff: tuple[int, ...] = ()  # seconds before the 2nd, 3rd, ... attempt; the last repeats

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be 1 or more")
        if any(b < 0 for b in self.backoff):
            raise ValueError("backoff seconds must not be negative")

    def waits(self) -> list[int]:
        """Seconds to wait before attempts 2..max_attempts, the last backoff value repeating."""
        backoff = self.backoff or (0,)
        return [backoff[min(i, len(backoff) - 1)] for i in range(self.max_attempts - 1)]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as a form or a document describes it."""

    name: str
    kind: str
    title: str
    description: str
    required: bool
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False


@dataclass(frozen=True)
class TaskType:
    """A registered kind of work and everything derived from its declaration."""

    name: str
    title: str
    description: str
    func: Callable[..., Any]
    model: type[BaseModel]
    params: tuple[ParamSpec, ...]
    time_limit: int
    retry: RetryPolicy
    queue: str
    rerun_safe: bool
    result_ttl: int
    failure_ttl: int
    preload: tuple[str, ...] = ()

    @property
    def files_ttl(self) -> int:
        """Seconds an uploaded input must live: pending + every attempt + retention afterwards."""
        return (settings.PENDING_TTL + self.time_limit * self.retry.max_attempts + sum(self.retry.waits())
                + max(self.result_ttl, self.failure_ttl))

    def schema(self) -> dict:
        """The JSON Schema of this type's parameters (with `x-kind` per property)."""
        schema = self.model.model_json_schema()
        schema["title"] = self.title
        for spec in self.params:
            schema["properties"][spec.name]["x-kind"] = spec.kind
        return schema

    def validate(self, raw: Any) -> dict:
        """Check raw input and return the JSON-safe params that get stored."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidParams(f"Parameters for {self.name!r} must be an object of name → value.",
                                {"params": "must be an object"})
        try:
            model = self.model.model_validate(raw)
        except ValidationError as exc:
            fields = _field_messages(exc)
            summary = "; ".join(f"{name}: {msg}" for name, msg in fields.items())
            raise InvalidParams(f"Invalid parameters for {self.name!r}: {summary}", fields) from None
        return model.model_dump(mode="json")

    def load(self, stored: dict) -> dict:
        """Turn stored JSON params back into the typed values the function takes."""
        model = self.model.model_validate(stored)
        return {name: getattr(model, name) for name in type(model).model_fields}


def _field_messages(exc: ValidationError) -> dict[str, str]:
    """One readable message per field from pydantic's error list."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "params"
        if err["type"] == "missing":
            message = "is required"
        elif err["type"] == "extra_forbidden":
            message = "is not a parameter of this task type"
        else:
            message = err["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
        fields.setdefault(name, message)
    return fields


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _kind_of(annotation: Any, name: str) -> tuple[str, tuple[Any, ...]]:
    if typing.get_origin(annotation) is Literal:
        return "choice", tuple(typing.get_args(annotation))
    kinds = {str: "str", int: "int", float: "float", bool: "bool",
             dt.date: "date", dt.datetime: "datetime", InputFile: "file"}
    if annotation in kinds:
        return kinds[annotation], ()
    raise TypeError(
        f"parameter {name!r} has type {annotation!r}; use str, Literal[...], int, float, bool, "
        "date, datetime or InputFile (Optional[...] of those is fine too)"
    )


def _param_spec(name: str, info) -> ParamSpec:
    annotation, nullable = _unwrap_optional(info.annotation)
    kind, choices = _kind_of(annotation, name)
    minimum = maximum = None
    for meta in info.metadata:
        if isinstance(meta, (annotated_types.Ge, annotated_types.Gt)):
            minimum = getattr(meta, "ge", getattr(meta, "gt", None))
        if isinstance(meta, (annotated_types.Le, annotated_types.Lt)):
            maximum = getattr(meta, "le", getattr(meta, "lt", None))
    required = info.is_required()
    default = None if required else info.default
    if isinstance(default, (dt.date, dt.datetime)):
        default = default.isoformat()
    return ParamSpec(
        name=name, kind=kind, title=info.title or name.replace("_", " ").capitalize(),
        description=info.description or "", required=required, default=default,
        choices=choices, minimum=minimum, maximum=maximum, nullable=nullable,
    )


def _build_model(func: Callable, type_name: str) -> tuple[type[BaseModel], tuple[ParamSpec, ...]]:
    # the annotations as written (strings evaluated): typing.get_type_hints on Python 3.10
    # wraps a parameter defaulting to None in an extra Optional[...], around Annotated too
    signature = inspect.signature(func, eval_str=True)
    hints = {name: p.annotation for name, p in signature.parameters.items() if p.annotation is not p.empty}
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                    inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise TypeError(f"task type {type_name!r}: the first parameter must take the task context "
                        "(e.g. `def my_task(ctx, *, ...)`)")
    fields: dict[str, Any] = {}
    for param in parameters[1:]:
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"task type {type_name!r}: parameter {param.name!r} must be keyword-only "
                            "(put `*` after the context parameter)")
        if param.name not in hints:
            raise TypeError(f"task type {type_name!r}: parameter {param.name!r} needs a type annotation")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model = create_model(
        f"{type_name}_params", __config__=ConfigDict(extra="forbid", str_strip_whitespace=True), **fields
    )
    specs = tuple(_param_spec(name, info) for name, info in model.model_fields.items())
    return model, specs


def task_type(
    name: str,
    *,
    title: str,
    description: str = "",
    time_limit: int = 600,
    max_attempts: int = 1,
    backoff: tuple[int, ...] | list[int] = (),
    queue: str = "default",
    rerun_safe: bool = False,
    result_ttl: int | None = None,
    failure_ttl: int | None = None,
    preload: tuple[str, ...] | list[str] = (),
) -> Callable[[Callable], Callable]:
    """Declare a function as a task type.

    time_limit: seconds a run may take before it fails with kind `timeout`.
    max_attempts/backoff: a raising run is tried again up to max_attempts in all,
      waiting backoff[i] seconds before attempt i+2.
    rerun_safe: after a crashed worker the task is requeued (else it fails `worker_lost`).
    result_ttl/failure_ttl: seconds a finished or failed task (and its files) is kept.
    preload: heavy modules a worker imports once at start, so each task's forked
      process does not (the web process never imports them).
    """
    if time_limit < 1:
        raise ValueError("time_limit must be at least 1 second")

    def register(func: Callable) -> Callable:
        model, specs = _build_model(func, name)
        _REGISTRY[name] = TaskType(
            name=name, title=title, description=description or (inspect.getdoc(func) or ""), func=func,
            model=model, params=specs, time_limit=int(time_limit),
            retry=RetryPolicy(max_attempts=max_attempts, backoff=tuple(backoff)), queue=queue,
            rerun_safe=rerun_safe, result_ttl=result_ttl or settings.DEFAULT_RESULT_TTL,
            failure_ttl=failure_ttl or settings.DEFAULT_FAILURE_TTL, preload=tuple(preload),
        )
        func.task_type_name = name
        return func

    return register


def load_task_modules() -> None:
    """Import the built-in task types and those listed in JOBS_TASK_MODULES."""
    importlib.import_module("jobs.tasks")
    for module in settings.TASK_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"JOBS_TASK_MODULES lists {module!r}, which cannot be imported: {exc}") from exc


def preload_modules() -> None:
    """Import every registered type's `preload` modules (called once by each worker)."""
    for ttype in task_types():
        for module in ttype.preload:
            importlib.import_module(module)


def get_task_type(name: Any) -> TaskType:
    """Return the registered type `name`, or raise UnknownTaskType naming the known ones."""
    load_task_modules()
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    known = ", ".join(sorted(_REGISTRY)) or "none"
    if not isinstance(name, str):
        got = {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object",
               type(None): "null"}.get(type(name), type(name).__name__)
        raise UnknownTaskType(f"The task type must be a string naming a registered type; got {got}. "
                              f"Known types: {known}.")
    raise UnknownTaskType(f"Unknown task type {name!r}. Known types: {known}.")


def task_types() -> list[TaskType]:
    """All registered task types, in declaration order."""
    load_task_modules()
    return list(_REGISTRY.values())
