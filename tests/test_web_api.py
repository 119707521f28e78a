"""The JSON API under /api and /healthz, through the Flask test client on the real Redis."""

from __future__ import annotations

import io
import json
import re
import socket

import pytest

import jobs
from jobs import keys
from tests.conftest import wait_status
from tests.web_helpers import make_app, run_queued
from tests.web_task_fixtures import WEB_WORKER_ENV


@pytest.fixture
def app(redis_url, conn):
    return make_app(redis_url)


@pytest.fixture
def client(app):
    return app.test_client()


def submit(client, **body):
    response = client.post("/api/tasks", json={"type": "demo", **body})
    assert response.status_code == 202, response.json
    return response.json


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    error = response.json["error"]
    assert error["code"] == code and error["message"]
    return error


# --- task types and the OpenAPI document -------------------------------------------------

def test_task_types_describe_every_registered_type(client):
    response = client.get("/api/task-types")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    listed = {t["name"]: t for t in response.json["task_types"]}
    assert set(listed) == {t.name for t in jobs.task_types()}
    demo = listed["demo"]
    assert demo["title"] == "Demo" and demo["queue"] == "default"
    assert demo["time_limit"] == 600 and demo["max_attempts"] == 1
    assert demo["params"] == jobs.get_task_type("demo").schema()
    assert listed["flaky"]["max_attempts"] == 3


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_is_generated_from_the_registry(client, app):
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    body = doc["paths"]["/api/tasks"]["post"]["requestBody"]["content"]
    mapping = body["application/json"]["schema"]["discriminator"]["mapping"]
    assert set(mapping) == {t.name for t in jobs.task_types()}
    for ttype in jobs.task_types():
        params = schemas[f"params.{ttype.name}"]
        assert set(params["properties"]) == {spec.name for spec in ttype.params}
        assert params.get("required", []) == ttype.schema().get("required", [])
        submission = schemas[f"submit.{ttype.name}"]
        assert submission["properties"]["type"] == {"const": ttype.name}
    # the demo's limits come from its declaration, not a copy
    assert schemas["params.demo"]["properties"]["steps"]["maximum"] == 1000
    # file params: a hoisted InputFile component in JSON, a binary part in multipart
    assert "InputFile" in schemas
    form = next(v for v in body["multipart/form-data"]["schema"]["oneOf"]
                if v["properties"]["type"]["const"] == "web_kinds")
    assert form["properties"]["upload"]["contentMediaType"] == "application/octet-stream"
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops if method != "parameters"}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api") or rule.rule == "/healthz":
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method.lower()) in documented, (path, method)


# --- submit --------------------------------------------------------------------------------

def test_submit_json_answers_202_with_location(client, conn):
    response = client.post("/api/tasks", json={"type": "demo", "params": {"steps": 2}})
    assert response.status_code == 202
    view = response.json
    assert response.headers["Location"] == f"/api/tasks/{view['id']}"
    assert response.headers["Cache-Control"] == "no-store"
    assert view["status"] == "queued" and view["params"]["steps"] == 2
    assert jobs.get(conn, view["id"])["status"] == "queued"


def test_submit_pending_then_start_with_params(client):
    view = submit(client, params={"steps": 2}, start=False)
    assert view["status"] == "pending"
    started = client.post(f"/api/tasks/{view['id']}/start", json={"params": {"steps": 4}})
    assert started.status_code == 200 and started.json["status"] == "queued"
    assert started.json["params"]["steps"] == 4
    assert_error(client.post(f"/api/tasks/{view['id']}/start"), 409, "invalid_state")
    other = submit(client, start=False)
    assert client.post(f"/api/tasks/{other['id']}/start").json["status"] == "queued"  # no body is fine
    third = submit(client, start=False)
    error = assert_error(client.post(f"/api/tasks/{third['id']}/start", json={"params": {"steps": 0}}),
                         422, "invalid_params")
    assert "steps" in error["fields"]


def test_submit_with_delay_is_scheduled(client):
    assert submit(client, delay=60)["status"] == "scheduled"
    assert_error(client.post("/api/tasks", json={"type": "demo", "delay": "soon"}), 422, "invalid_params")
    assert_error(client.post("/api/tasks", json={"type": "demo", "delay": -1}), 422, "invalid_params")


def test_idempotency_key_makes_one_task(client, conn):
    first = client.post("/api/tasks", json={"type": "demo"}, headers={"Idempotency-Key": "k-1"})
    again = client.post("/api/tasks", json={"type": "demo"}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json["id"] == again.json["id"]
    assert len(jobs.list_tasks(conn)["tasks"]) == 1
    assert_error(client.post("/api/tasks", json={"type": "demo"}, headers={"Idempotency-Key": "x" * 201}),
                 400, "bad_request")


def test_multipart_submit_coerces_strings_and_stores_files(client, conn):
    data = {"type": "web_kinds", "label": "form", "count": "3", "ratio": "0.25", "mode": "slow", "level": "2",
            "loud": ["false", "on"], "day": "2024-02-29", "at": "2024-02-29T10:30", "limit": "",
            "upload": (io.BytesIO(b"a,b\n1,2\n"), "données.csv", "text/csv")}
    response = client.post("/api/tasks", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    params = response.json["params"]
    assert params["count"] == 3 and params["ratio"] == 0.25 and params["level"] == 2
    assert params["loud"] is True and params["limit"] is None and params["mode"] == "slow"
    assert params["day"] == "2024-02-29" and params["at"].startswith("2024-02-29T10:30")
    upload = params["upload"]
    assert upload["name"] == "données.csv" and upload["size"] == 8 and upload["content_type"] == "text/csv"
    assert conn.exists(f"jobs:file:{upload['id']}")
    run_queued(conn)
    view = client.get(f"/api/tasks/{response.json['id']}").json
    assert view["status"] == "completed" and view["result"]["upload"] == "données.csv"
    assert view["files"] == [{"name": "données.csv", "size": 8, "content_type": "text/csv"}]


def test_multipart_without_a_checkbox_uses_the_default_and_start_false(client):
    response = client.post("/api/tasks", data={"type": "web_kinds", "label": "x", "start": "false"})
    assert response.status_code == 202
    assert response.json["params"]["loud"] is False and response.json["status"] == "pending"


def test_invalid_form_submission_leaves_no_file_behind(client, conn):
    data = {"type": "web_kinds", "count": "99", "upload": (io.BytesIO(b"x"), "a.txt")}
    error = assert_error(client.post("/api/tasks", data=data, content_type="multipart/form-data"),
                         422, "invalid_params")
    assert set(error["fields"]) == {"label", "count"}
    assert not list(conn.scan_iter("jobs:file:*"))


def test_file_over_the_limit_is_413_and_not_stored(redis_url, conn):
    client = make_app(redis_url, MAX_UPLOAD_BYTES=10).test_client()
    data = {"type": "web_kinds", "label": "x", "upload": (io.BytesIO(b"x" * 11), "big.bin")}
    error = assert_error(client.post("/api/tasks", data=data, content_type="multipart/form-data"),
                         413, "file_too_large")
    assert "JOBS_MAX_UPLOAD_BYTES" in error["message"]
    assert not list(conn.scan_iter("jobs:file:*"))


def test_request_over_max_content_length_is_413(redis_url, conn):
    client = make_app(redis_url, MAX_CONTENT_LENGTH=100).test_client()
    response = client.post("/api/tasks", data=json.dumps({"type": "demo", "params": {"failure_message": "x" * 200}}),
                           content_type="application/json")
    assert_error(response, 413, "request_too_large")


# --- read, list, cancel, retry, delete -----------------------------------------------------

def test_get_task_and_404s(client, conn):
    view = submit(client)
    response = client.get(f"/api/tasks/{view['id']}")
    assert response.status_code == 200 and response.json["id"] == view["id"]
    assert response.headers["Cache-Control"] == "no-store"
    error = assert_error(client.get("/api/tasks/0123456789abcdef01234567"), 404, "not_found")
    assert error["expired"] is False
    conn.delete(f"rq:job:{view['id']}")  # Redis dropped it: the index still knows it
    error = assert_error(client.get(f"/api/tasks/{view['id']}"), 404, "not_found")
    assert error["expired"] is True and "expired" in error["message"]


def test_list_filters_and_pages(client):
    ids = [submit(client)["id"] for _ in range(3)]
    pending = submit(client, start=False)["id"]
    page = client.get("/api/tasks?limit=2").json
    assert [t["id"] for t in page["tasks"]] == [pending, ids[2]]
    rest = client.get(f"/api/tasks?limit=2&cursor={page['next_cursor']}").json
    assert [t["id"] for t in rest["tasks"]] == [ids[1], ids[0]] and rest["next_cursor"] is None
    assert [t["id"] for t in client.get("/api/tasks?status=pending").json["tasks"]] == [pending]
    assert len(client.get("/api/tasks?type=demo").json["tasks"]) == 4
    assert client.get("/api/tasks?type=flaky").json["tasks"] == []
    assert_error(client.get("/api/tasks?status=bogus"), 422, "invalid_params")
    assert_error(client.get("/api/tasks?type=bogus"), 422, "unknown_task_type")
    assert_error(client.get("/api/tasks?limit=ten"), 422, "invalid_params")
    assert_error(client.get("/api/tasks?cursor=%3Cx%3E"), 422, "invalid_params")


def test_cancel_retry_delete(client, conn):
    view = submit(client)
    canceled = client.post(f"/api/tasks/{view['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled"
    assert_error(client.post(f"/api/tasks/{view['id']}/cancel"), 409, "invalid_state")
    retried = client.post(f"/api/tasks/{view['id']}/retry")
    assert retried.status_code == 200 and retried.json["status"] == "queued"
    assert_error(client.post(f"/api/tasks/{view['id']}/retry"), 409, "invalid_state")
    client.post(f"/api/tasks/{view['id']}/cancel")
    deleted = client.delete(f"/api/tasks/{view['id']}")
    assert deleted.status_code == 204 and deleted.data == b""
    assert_error(client.get(f"/api/tasks/{view['id']}"), 404, "not_found")
    assert_error(client.delete(f"/api/tasks/{view['id']}"), 404, "not_found")
    for action in ("cancel", "retry", "start"):
        assert_error(client.post(f"/api/tasks/nope/{action}"), 404, "not_found")


@pytest.mark.integration
def test_delete_of_a_running_task_is_409(client, conn, workers):
    workers.start(1)
    view = submit(client, params={"steps": 20, "step_seconds": 0.5})
    wait_status(conn, view["id"], "processing")
    assert_error(client.delete(f"/api/tasks/{view['id']}"), 409, "invalid_state")
    client.post(f"/api/tasks/{view['id']}/cancel")
    wait_status(conn, view["id"], "canceled")


def test_failed_task_shows_its_error(client, conn):
    view = submit(client, params={"steps": 2, "step_seconds": 0, "fail_at_step": 1, "failure_message": "nope"})
    run_queued(conn)
    failed = client.get(f"/api/tasks/{view['id']}").json
    assert failed["status"] == "failed" and failed["error"]["message"] == "nope"
    assert "DemoFailure" in failed["error"]["traceback"]


# --- output files --------------------------------------------------------------------------

@pytest.mark.parametrize("name, ascii_part, encoded", [
    ("report.csv", 'filename="report.csv"', None),
    ("Überblick 2024.csv", 'filename="Uberblick 2024.csv"', "filename*=UTF-8''%C3%9Cberblick%202024.csv"),
    ('bad"name;\r\nSet-Cookie: x=1.csv', None, None),
    ("日本語.txt", 'filename="txt"', "filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt"),
])
def test_download_headers_are_safe_for_any_name(client, conn, name, ascii_part, encoded):
    view = submit(client, type="web_files", params={"name": name, "content": "a,b\n1,2"})
    run_queued(conn)
    stored = client.get(f"/api/tasks/{view['id']}").json["files"][0]["name"]
    response = client.get(f"/api/tasks/{view['id']}/files/{stored}")
    assert response.status_code == 200 and response.data == b"a,b\n1,2"
    assert response.headers["Content-Type"] == "text/csv"
    assert response.headers["Content-Length"] == "7"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=\"")
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition.count('"') == 2 and disposition.isascii()
    if ascii_part:
        assert ascii_part in disposition
    if encoded:
        assert encoded in disposition


def test_download_of_unknown_and_expired_files(client, conn):
    view = submit(client, type="web_files")
    run_queued(conn)
    assert_error(client.get(f"/api/tasks/{view['id']}/files/other.csv"), 404, "not_found")
    assert_error(client.get("/api/tasks/0123456789abcdef01234567/files/report.csv"), 404, "not_found")
    file_id = json.loads(conn.hget(keys.outputs(view["id"]), "report.csv"))["id"]
    conn.delete(f"jobs:file:{file_id}", f"jobs:file:{file_id}:data")
    assert_error(client.get(f"/api/tasks/{view['id']}/files/report.csv"), 410, "file_expired")


# --- health --------------------------------------------------------------------------------

def test_ping_answers_without_redis(redis_url):
    client = make_app(f"redis://127.0.0.1:{_dead_port()}/0").test_client()
    response = client.get("/api/ping")
    assert response.status_code == 200 and response.json == {"ok": True}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_without_workers_is_503(client, conn):
    submit(client)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["redis"] is True and body["workers"] == 0 and "worker" in body["reason"]
    assert body["queues"]["default"] == 1


@pytest.mark.integration
def test_healthz_with_a_worker_is_200(client, workers):
    workers.start(1, env=WEB_WORKER_ENV)
    body = client.get("/healthz").json
    assert body["status"] == "ok" and body["workers"] == 1 and len(body["worker_names"]) == 1
    assert body["queues"] == {"default": 0}


@pytest.mark.integration
def test_healthz_does_not_count_a_killed_worker(client, conn, workers):
    from datetime import timedelta

    from rq import Worker
    from rq.utils import now, utcformat

    from jobs.health import liveness_window

    worker, = workers.start(1, env=WEB_WORKER_ENV)
    assert client.get("/healthz").json["workers"] == 1
    workers.kill(worker)
    record, = Worker.all(connection=conn)  # rq keeps a killed worker's record for minutes
    stale = now() - timedelta(seconds=liveness_window() + 1)  # as if that much time had passed
    conn.hset(record.key, "last_heartbeat", utcformat(stale))
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json["workers"] == 0
    assert f"last {liveness_window()} s" in response.json["reason"]


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_down_is_503_everywhere(conn):
    client = make_app(f"redis://127.0.0.1:{_dead_port()}/0").test_client()
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json["redis"] is False
    assert "Cannot reach Redis" in response.json["reason"]
    for method, url, kwargs in [("get", "/api/tasks", {}), ("get", "/api/tasks/abc", {}),
                                ("post", "/api/tasks", {"json": {"type": "demo"}}),
                                ("post", "/api/tasks/abc/cancel", {}), ("delete", "/api/tasks/abc", {}),
                                ("get", "/api/tasks/abc/files/x", {}),
                                ("post", "/api/tasks", {"data": {"type": "web_kinds", "label": "x",
                                                                 "upload": (io.BytesIO(b"x"), "x.txt")},
                                                        "content_type": "multipart/form-data"})]:
        error = assert_error(getattr(client, method)(url, **kwargs), 503, "redis_unavailable")
        assert "REDIS_URL" in error["message"]
    page = client.get("/")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert client.application.extensions["webapp_unhandled"] == []


# --- errors: one shape, never a 500 --------------------------------------------------------

def test_routing_errors_are_json(client):
    assert_error(client.get("/api/nothing-here"), 404, "not_found")
    error = client.put("/api/tasks")
    assert_error(error, 405, "method_not_allowed")
    assert "POST" in error.headers["Allow"]
    assert_error(client.patch("/api/tasks/abc"), 405, "method_not_allowed")


MALFORMED = [
    ("post", "/api/tasks", {"data": "{not json", "content_type": "application/json"}, 400),
    ("post", "/api/tasks", {"data": b"\xff\xfe\x00", "content_type": "application/json"}, 400),
    ("post", "/api/tasks", {"data": "[1, 2]", "content_type": "application/json"}, 400),
    ("post", "/api/tasks", {"data": "null", "content_type": "application/json"}, 400),
    ("post", "/api/tasks", {"data": "", "content_type": "application/json"}, 400),
    ("post", "/api/tasks", {"data": "type=demo", "content_type": "text/plain"}, 400),
    ("post", "/api/tasks", {"data": '{"type": "demo"}'}, 400),
    ("post", "/api/tasks", {"data": "--x\r\nbroken", "content_type": "multipart/form-data; boundary=x"}, 400),
    ("post", "/api/tasks", {"data": "--x", "content_type": "multipart/form-data"}, 400),
    ("post", "/api/tasks", {"json": {"type": "nope"}}, 422),
    ("post", "/api/tasks", {"json": {"type": ["demo"]}}, 422),
    ("post", "/api/tasks", {"json": {"type": None}}, 422),
    ("post", "/api/tasks", {"json": {}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "params": [1]}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "params": "steps=3"}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "params": {"steps": "many"}}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "params": {"steps": 1e400}}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "params": {"nope": 1}}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "start": "maybe"}}, 422),
    ("post", "/api/tasks", {"json": {"type": "demo", "extra": 1}}, 422),
    ("post", "/api/tasks", {"json": {"type": "web_kinds", "params": {"label": "x", "upload": {"id": "x"}}}}, 422),
    ("post", "/api/tasks", {"json": {"type": "web_kinds", "params": {
        "label": "x", "upload": {"id": "0" * 32, "name": "a", "size": 1}}}}, 422),
    ("post", "/api/tasks", {"data": {"type": "demo", "steps": "x" * 100}}, 422),
    ("post", "/api/tasks", {"data": {"type": "demo", "delay": "NaN"}}, 422),
    ("post", "/api/tasks", {"data": {"steps": "3"}}, 422),
    ("get", "/api/tasks/" + "x" * 300, {}, 404),
    ("get", "/api/tasks/%00%01", {}, 404),
    ("get", "/api/tasks/..%2F..%2Fetc", {}, 404),
    ("get", "/api/tasks/abc/files/..%2F..%2Fetc%2Fpasswd", {}, 404),
    ("post", "/api/tasks/abc/start", {"data": "[]", "content_type": "application/json"}, 400),
    ("post", "/api/tasks/abc/start", {"data": "xx", "content_type": "text/plain"}, 400),
    ("get", "/api/tasks?limit=-1", {}, 422),
    ("get", "/api/tasks?limit=99999999999999999999", {}, 422),
    ("get", "/api/tasks?limit=0", {}, 422),
    ("get", "/api/tasks?limit=101", {}, 422),
    ("get", "/api/tasks?cursor=" + "z" * 100, {}, 422),
    ("delete", "/api/tasks/%E2%9C%93", {}, 404),
]


@pytest.mark.parametrize("method, url, kwargs, status", MALFORMED)
def test_malformed_requests_get_4xx_json_never_500(app, client, conn, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    if status >= 400:
        assert set(response.json["error"]) >= {"code", "message"}
        assert "Traceback" not in response.get_data(as_text=True)
    assert app.extensions["webapp_unhandled"] == []


def test_the_last_resort_handler_answers_json_500(app, client):
    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = client.get("/api/boom")
    assert_error(response, 500, "internal_error")
    assert "secret detail" not in response.get_data(as_text=True)
    assert app.extensions["webapp_unhandled"] == ["RuntimeError('secret detail')"]


# --- the app factory and its configuration -------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    for name in ("SECRET_KEY", "JOBS_DEV", "RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD", "REDIS_URL",
                 "JOBS_BODY_TIMEOUT", "JOBS_BODY_IDLE_TIMEOUT", "JOBS_POLL_INTERVAL_MS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_secret_key_is_required_outside_dev_mode(clean_env, redis_url):
    from webapp import ConfigError, create_app

    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app({"REDIS_URL": redis_url})
    clean_env.setenv("SECRET_KEY", "from-env")
    assert create_app({"REDIS_URL": redis_url}).secret_key == "from-env"
    assert create_app({"REDIS_URL": redis_url, "SECRET_KEY": "override"}).secret_key == "override"


def test_dev_mode_makes_a_random_secret_key(clean_env, redis_url):
    from webapp import create_app

    clean_env.setenv("JOBS_DEV", "1")
    first, second = create_app({"REDIS_URL": redis_url}), create_app({"REDIS_URL": redis_url})
    assert first.config["DEV"] is True and len(first.secret_key) == 64
    assert first.secret_key != second.secret_key
    clean_env.delenv("JOBS_DEV")
    assert create_app({"REDIS_URL": redis_url, "DEV": True}).secret_key


@pytest.mark.parametrize("name, value", [("JOBS_DEV", "maybe"), ("JOBS_BODY_TIMEOUT", "soon"),
                                         ("JOBS_BODY_IDLE_TIMEOUT", "0"), ("JOBS_POLL_INTERVAL_MS", "10"),
                                         ("RQ_DASHBOARD_USERNAME", "ops")])
def test_invalid_environment_values_name_the_variable(clean_env, redis_url, name, value):
    from webapp import ConfigError, create_app

    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app({"REDIS_URL": redis_url, "SECRET_KEY": "k"})


def test_environment_then_overrides(clean_env, redis_url):
    from jobs import settings
    from webapp import create_app
    from webapp.config import MULTIPART_OVERHEAD

    clean_env.setenv("REDIS_URL", "redis://env-host:6390/2")
    clean_env.setenv("JOBS_POLL_INTERVAL_MS", "1500")
    app = create_app({"SECRET_KEY": "k"})  # builds a client, connects to nothing
    kwargs = app.extensions["jobs_redis"].connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("env-host", 6390, 2)
    assert app.config["POLL_INTERVAL_MS"] == 1500
    assert app.config["MAX_CONTENT_LENGTH"] == settings.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
    app = create_app({"SECRET_KEY": "k", "REDIS_URL": redis_url, "POLL_INTERVAL_MS": 700})
    assert app.extensions["jobs_redis"].connection_pool.connection_kwargs["port"] == int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert app.config["POLL_INTERVAL_MS"] == 700


def test_importing_webapp_opens_no_connection():
    from tests.conftest import ROOT
    import subprocess
    import sys

    code = ("import socket\n"
            "def refuse(*a, **k): raise SystemExit('connected at import')\n"
            "socket.socket.connect = refuse\n"
            "import webapp, webapp.api, webapp.pages, webapp.dashboard\n"
            "webapp.create_app({'SECRET_KEY': 'k', 'REDIS_URL': 'redis://127.0.0.1:1/0'})\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _gunicorn_conf(monkeypatch, **env):
    import runpy

    from tests.conftest import ROOT

    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "webapp" / "gunicorn_conf.py"))


def test_gunicorn_conf(monkeypatch):
    conf = _gunicorn_conf(monkeypatch)
    assert conf["bind"] == "0.0.0.0:8000" and conf["worker_class"] == "gthread"
    assert conf["workers"] == 2 and conf["threads"] == 8 and conf["timeout"] == 30
    assert _gunicorn_conf(monkeypatch, PORT="5123")["bind"] == "0.0.0.0:5123"
    with pytest.raises(SystemExit, match="PORT"):
        _gunicorn_conf(monkeypatch, PORT="web")


def test_every_setting_is_documented():
    from tests.conftest import ROOT

    sources = [ROOT / "jobs" / "settings.py", *sorted((ROOT / "webapp").glob("*.py"))]
    pattern = re.compile(r"""(?:environ\.get|env\.get|_int|_float|_bool|_list|_number)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
                         r"""|env\[["']([A-Z][A-Z0-9_]+)["']\]""")
    wsgi_keys = {"CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"}  # request fields in the WSGI environ, not settings
    names = {a or b for path in sources for a, b in pattern.findall(path.read_text())} - {"PATH"} - wsgi_keys
    assert {"REDIS_URL", "SECRET_KEY", "PORT", "JOBS_MAX_UPLOAD_BYTES", "RQ_DASHBOARD_USERNAME"} <= names
    doc = (ROOT / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", doc, flags=re.M))
    assert names - rows == set(), "document these in docs/configuration.md"


# --- files belong to one task; form bodies that cannot be read --------------------------------

def test_a_stored_file_belongs_to_the_task_it_was_uploaded_for(client, conn):
    first = client.post("/api/tasks", data={"type": "web_kinds", "label": "a", "start": "false",
                                            "upload": (io.BytesIO(b"12345"), "mine.txt")})
    assert first.status_code == 202
    ref = first.json["params"]["upload"]
    # another task naming that file (its id is in the first task's view) is refused, whatever it claims
    stolen = {**ref, "name": "other.txt", "size": 1}
    error = assert_error(client.post("/api/tasks", json={"type": "web_kinds", "start": False,
                                                         "params": {"label": "b", "upload": stolen}}),
                         422, "invalid_params")
    assert "another task" in error["message"] and "upload" in error["fields"]
    pending = client.post("/api/tasks", json={"type": "web_kinds", "start": False, "params": {"label": "c"}})
    error = assert_error(client.post(f"/api/tasks/{pending.json['id']}/start", json={"params": {"upload": stolen}}),
                         422, "invalid_params")
    assert "another task" in error["message"]
    assert client.get(f"/api/tasks/{pending.json['id']}").json["status"] == "pending"
    assert client.delete(f"/api/tasks/{pending.json['id']}").status_code == 204
    # the first task's input is intact and still its own
    assert jobs.files.file_info(conn, ref["id"])["name"] == "mine.txt"
    assert client.post(f"/api/tasks/{first.json['id']}/start").status_code == 200


def test_start_refuses_fields_it_does_not_know(client):
    pending = submit(client, start=False)
    error = assert_error(client.post(f"/api/tasks/{pending['id']}/start", json={"parms": {"steps": 2}}),
                         422, "invalid_params")
    assert "parms" in error["fields"]
    assert client.get(f"/api/tasks/{pending['id']}").json["status"] == "pending"


def test_a_form_with_too_many_parts_says_so(client, conn):
    fields = {"type": "demo", **{f"f{n}": "1" for n in range(1200)}}
    error = assert_error(client.post("/api/tasks", data=fields, content_type="multipart/form-data"),
                         413, "request_too_large")
    assert "more than 1000 parts" in error["message"]
    assert conn.llen("rq:queue:default") == 0


def test_an_idempotency_key_reused_for_another_request_is_refused(client, conn):
    headers = {"Idempotency-Key": "order-17"}
    first = client.post("/api/tasks", json={"type": "demo", "params": {"steps": 2}}, headers=headers)
    same = client.post("/api/tasks", json={"type": "demo", "params": {"steps": 2}}, headers=headers)
    assert first.status_code == same.status_code == 202 and first.json["id"] == same.json["id"]
    for body in ({"type": "demo", "params": {"steps": 3}}, {"type": "web_kinds", "params": {"label": "x"}}):
        error = assert_error(client.post("/api/tasks", json=body, headers=headers), 422, "idempotency_conflict")
        assert first.json["id"] in error["message"] and "idempotency_key" in error["fields"]
    assert len(jobs.list_tasks(conn)["tasks"]) == 1


def test_form_submissions_name_repeated_fields_and_unknown_file_parts(client, conn):
    error = assert_error(client.post("/api/tasks", data={"type": ["demo", "web_kinds"]}), 422, "invalid_params")
    assert "type" in error["fields"] and "more than once" in error["message"]
    error = assert_error(client.post("/api/tasks", data={"type": "demo", "report": (io.BytesIO(b"x"), "x.csv")}),
                         422, "invalid_params")
    assert error["fields"] == {"report": "is not a file parameter"} and "takes no files" in error["message"]
    error = assert_error(client.post("/api/tasks", data={"type": "web_kinds", "label": "x",
                                                         "uplaod": (io.BytesIO(b"x"), "x.csv")}),
                         422, "invalid_params")
    assert "takes files only as upload" in error["message"]
    assert conn.llen("rq:queue:default") == 0 and not list(conn.scan_iter("jobs:file:*"))


def test_bodiless_answers_carry_no_content_type_and_405_names_the_methods(client):
    options = client.options("/api/tasks")
    assert options.status_code == 204 and "Content-Type" not in options.headers
    assert {"GET", "POST"} <= set(options.headers["Allow"].split(", "))
    task = submit(client, start=False)
    deleted = client.delete(f"/api/tasks/{task['id']}")
    assert deleted.status_code == 204 and "Content-Type" not in deleted.headers
    error = assert_error(client.put("/api/tasks"), 405, "method_not_allowed")
    assert "PUT is not allowed on /api/tasks; use GET, POST" in error["message"]
    error = assert_error(client.post("/api/tasks", json={"type": 5}), 422, "unknown_task_type")
    assert "must be a string naming a registered type; got a number" in error["message"]
