"""Task-type declarations: schema derived from the signature, validation before enqueue."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Optional

import pytest
from pydantic import Field

import jobs
from jobs.registry import task_type


def test_demo_schema_comes_from_the_signature():
    schema = jobs.get_task_type("demo").schema()
    steps = schema["properties"]["steps"]
    assert steps["type"] == "integer" and steps["minimum"] == 1 and steps["maximum"] == 1000
    assert steps["default"] == 5 and steps["x-kind"] == "int"
    assert schema["properties"]["step_seconds"]["x-kind"] == "float"
    assert schema["additionalProperties"] is False


def test_every_param_kind_maps_to_a_form_input():
    @task_type("kinds_probe", title="Kinds")
    def probe(ctx, *, text: str = "a", pick: Literal["x", "y"] = "x",
              count: Annotated[int, Field(ge=0, le=9)] = 1, ratio: float = 0.5, flag: bool = False,
              day: dt.date = dt.date(2026, 1, 2), moment: dt.datetime | None = None,
              upload: jobs.InputFile | None = None):
        return None

    specs = {p.name: p for p in jobs.get_task_type("kinds_probe").params}
    assert [specs[n].kind for n in specs] == ["str", "choice", "int", "float", "bool", "date", "datetime", "file"]
    assert specs["pick"].choices == ("x", "y")
    assert (specs["count"].minimum, specs["count"].maximum) == (0, 9)
    assert specs["day"].default == "2026-01-02"
    assert specs["moment"].nullable
    schema = jobs.get_task_type("kinds_probe").schema()
    assert schema["properties"]["pick"]["enum"] == ["x", "y"]
    assert schema["properties"]["day"]["format"] == "date"


def test_declaration_errors_are_caught_at_import():
    with pytest.raises(TypeError, match="keyword-only"):
        task_type("bad1", title="x")(lambda ctx, steps=1: None)
    with pytest.raises(TypeError, match="type annotation"):
        def untyped(ctx, *, steps=1):
            return None
        task_type("bad2", title="x")(untyped)
    with pytest.raises(TypeError, match="use str"):
        def weird(ctx, *, thing: list = None):
            return None
        task_type("bad3", title="x")(weird)


@pytest.mark.parametrize("params, field, fragment", [
    ({"steps": "many"}, "steps", "valid integer"),
    ({"steps": 0}, "steps", "greater than or equal to 1"),
    ({"step_seconds": 61}, "step_seconds", "less than or equal to 60"),
    ({"colour": "red"}, "colour", "not a parameter"),
])
def test_invalid_params_name_the_field(params, field, fragment):
    with pytest.raises(jobs.InvalidParams) as info:
        jobs.get_task_type("demo").validate(params)
    assert fragment in info.value.fields[field]
    assert field in str(info.value)


def test_missing_required_param_is_named():
    @task_type("needs_name", title="Needs a name")
    def needs_name(ctx, *, name: str):
        return name

    with pytest.raises(jobs.InvalidParams) as info:
        jobs.get_task_type("needs_name").validate({})
    assert info.value.fields == {"name": "is required"}


def test_validated_params_are_json_and_load_back_typed():
    @task_type("dates_probe", title="Dates")
    def dates_probe(ctx, *, day: dt.date, at: dt.datetime):
        return None

    ttype = jobs.get_task_type("dates_probe")
    stored = ttype.validate({"day": "2026-03-04", "at": "2026-03-04T05:06:07Z"})
    assert stored == {"day": "2026-03-04", "at": "2026-03-04T05:06:07Z"}
    loaded = ttype.load(stored)
    assert loaded["day"] == dt.date(2026, 3, 4) and loaded["at"].hour == 5


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(jobs.UnknownTaskType, match="Known types: .*demo"):
        jobs.get_task_type("nope")


def test_optional_annotated_params_with_a_none_default_are_nullable_on_every_python():
    # Python 3.10's get_type_hints turns `Annotated[int | None, ...] = None` into
    # Optional[Annotated[Optional[int], ...]]: the declaration must not depend on that
    @jobs.task_type("optional_probe", title="Optional probe")
    def optional_probe(ctx: jobs.TaskContext, *,
                       limit: Annotated[int | None, Field(ge=1, title="Limit")] = None,
                       when: Optional[dt.date] = None) -> None:
        return None

    specs = {spec.name: spec for spec in jobs.get_task_type("optional_probe").params}
    assert specs["limit"].kind == "int" and specs["limit"].nullable and specs["limit"].minimum == 1
    assert specs["limit"].title == "Limit"
    assert specs["when"].kind == "date" and specs["when"].nullable
