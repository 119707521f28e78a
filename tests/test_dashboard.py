"""rq-dashboard at /rq: auth, per-app mounting, every page with tasks in every state, and consistency."""

from __future__ import annotations

import base64
import io
import json
import re
import socket

import pytest
from rq.registry import FailedJobRegistry

import jobs
from jobs import files, keys
from jobs.connection import SERIALIZER
from jobs.rqjob import TaskJob
from tests.browser_helpers import CHROMIUM, CHROMIUM_MISSING, WebServer, launch_chromium
from tests.conftest import wait_for, wait_status
from tests.web_helpers import make_app, run_queued
from tests.web_task_fixtures import WEB_WORKER_ENV

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}
XHR = {**AUTH, "X-Requested-With": "XMLHttpRequest"}
REGISTRIES = ("queued", "failed", "deferred", "started", "finished", "scheduled", "canceled")


@pytest.fixture
def app(redis_url, conn):
    return make_app(redis_url, RQ_DASHBOARD_USERNAME="ops", RQ_DASHBOARD_PASSWORD="s3cret")


@pytest.fixture
def client(app):
    return app.test_client()


def test_off_without_credentials_outside_dev_mode(redis_url, conn):
    client = make_app(redis_url).test_client()
    assert client.get("/rq/", headers=AUTH).status_code == 404
    assert 'href="/rq/"' not in client.get("/").get_data(as_text=True)


def test_dev_mode_without_credentials_uses_the_documented_default(redis_url, conn):
    client = make_app(redis_url, DEV=True).test_client()
    assert client.get("/rq/").status_code == 401
    dev = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
    assert client.get("/rq/", headers=dev).status_code == 200


def test_basic_auth_is_required(client):
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"ops:wrong").decode()},
                    {"Authorization": "Basic " + base64.b64encode(b"other:s3cret").decode()},
                    {"Authorization": "Bearer s3cret"}):
        response = client.get("/rq/", headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/rq/static/js/jquery-3.5.1.min.js").status_code == 401
    response = client.get("/rq/", headers=AUTH)
    assert response.status_code == 200 and 'href="/rq/"' in client.get("/").get_data(as_text=True)


def test_a_second_app_leaves_the_first_intact(app, client, redis_url):
    other = make_app(redis_url, RQ_DASHBOARD_USERNAME="x", RQ_DASHBOARD_PASSWORD="y").test_client()
    closed = make_app(redis_url).test_client()
    assert client.get("/rq/", headers=AUTH).status_code == 200
    assert other.get("/rq/", headers=AUTH).status_code == 401
    assert closed.get("/rq/", headers=AUTH).status_code == 404
    import rq_dashboard.web as web

    # the shared blueprint is untouched: no hooks, error handlers or template changes of ours on it
    assert web.blueprint.before_request_funcs[None] == [web.push_rq_connection]
    assert dict(web.blueprint.error_handler_spec) == {}
    assert "<%=" in web.blueprint.jinja_loader.get_source(None, "rq_dashboard/job.html")[0]


def test_dashboard_pages_allow_its_inline_scripts_only_under_rq(client):
    csp = client.get("/rq/", headers=AUTH).headers["Content-Security-Policy"]
    assert "'unsafe-inline'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in client.get("/").headers["Content-Security-Policy"]


def _expire(conn, task_id: str) -> None:
    """What Redis does when a task's retention passes: the job hash goes, references stay."""
    conn.delete(f"rq:job:{task_id}")


@pytest.fixture
def every_state(conn, workers):
    """Tasks in every state, on a real worker; returns {state: task id}."""
    workers.start(1, env=WEB_WORKER_ENV)
    ids = {}
    ids["completed"] = jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})["id"]
    ids["failed"] = jobs.submit(conn, "demo", {"steps": 1, "fail_at_step": 1, "failure_message": "boom"})["id"]
    ids["expired_failed"] = jobs.submit(conn, "demo", {"steps": 1, "fail_at_step": 1})["id"]
    ids["files"] = jobs.submit(conn, "web_files", {})["id"]
    for name in ("completed", "files"):
        wait_status(conn, ids[name], "completed")
    for name in ("failed", "expired_failed"):
        wait_status(conn, ids[name], "failed")
    ids["processing"] = jobs.submit(conn, "demo", {"steps": 200, "step_seconds": 0.1})["id"]
    wait_for(lambda: (jobs.get(conn, ids["processing"])["progress"] or {}).get("percent"), message="progress")
    ids["queued"] = jobs.submit(conn, "demo", {})["id"]
    ids["expired_queued"] = jobs.submit(conn, "demo", {})["id"]
    ids["pending"] = jobs.submit(conn, "demo", {}, start=False)["id"]
    ids["scheduled"] = jobs.submit(conn, "demo", {}, delay=3600)["id"]
    ids["canceled"] = jobs.submit(conn, "demo", {})["id"]
    jobs.cancel(conn, ids["canceled"])
    _expire(conn, ids["expired_failed"])
    _expire(conn, ids["expired_queued"])
    expected = {"completed": "completed", "failed": "failed", "files": "completed", "processing": "processing",
                "queued": "queued", "pending": "pending", "scheduled": "scheduled", "canceled": "canceled"}
    assert {k: jobs.get(conn, ids[k])["status"] for k in expected} == expected
    yield ids
    jobs.cancel(conn, ids["processing"])


def dashboard_urls(ids: dict) -> list[str]:
    """Every page and data URL of rq_dashboard/web.py, for instance 0 and our queue."""
    urls = ["/rq/", "/rq/0/", "/rq/0/view", "/rq/0/view/queues", "/rq/0/view/workers", "/rq/0/view/jobs",
            "/rq/0/data/queues.json", "/rq/0/data/workers.json", "/rq/favicon.ico",
            "/rq/static/css/main.css", "/rq/static/js/jquery-3.5.1.min.js"]
    for registry in REGISTRIES:
        for order in ("asc", "dsc"):
            urls.append(f"/rq/0/view/jobs/default/{registry}/8/{order}/1")
            urls.append(f"/rq/0/data/jobs/default/{registry}/8/{order}/1.json")
        urls.append(f"/rq/0/data/jobs/default/{registry}/2/asc/2.json")
    for name, task_id in ids.items():
        if not name.startswith("expired"):
            urls += [f"/rq/0/view/job/{task_id}", f"/rq/0/data/job/{task_id}.json"]
    return urls


@pytest.mark.integration
def test_every_page_and_data_url_answers_200_in_every_state(app, client, conn, every_state):
    urls = dashboard_urls(every_state)
    covered = {re.sub(r"<(?:\w+:)?(\w+)>", "*", rule.rule) for rule in app.url_map.iter_rules()
               if rule.endpoint.startswith("rq_dashboard.") and "GET" in rule.methods}
    for rule in covered - {"/rq/requeue/*"}:  # requeue-all is a POST action, tested below
        assert any(re.fullmatch(re.escape(rule).replace(r"\*", ".+"), url) for url in urls), rule
    for url in urls:
        response = client.get(url, headers=AUTH, follow_redirects=True)
        response.close()
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
    assert app.extensions["webapp_unhandled"] == []


@pytest.mark.integration
def test_our_tasks_show_with_progress_and_results(client, conn, every_state):
    data = client.get(f"/rq/0/data/job/{every_state['processing']}.json", headers=AUTH).json
    assert data["status"] == "started" and data["description"].startswith("demo: Demo")
    assert json.loads(data["metadata"])["progress"]["percent"] > 0
    done = client.get(f"/rq/0/data/job/{every_state['completed']}.json", headers=AUTH).json
    assert done["result"] == {"steps": 1, "seconds": done["result"]["seconds"]}
    failed = client.get(f"/rq/0/data/job/{every_state['failed']}.json", headers=AUTH).json
    assert "boom" in failed["exc_info"] and json.loads(failed["metadata"])["error"]["message"] == "boom"
    workers = client.get("/rq/0/data/workers.json", headers=AUTH).json["workers"]
    assert [w["current_job"]["job_id"] for w in workers] == [every_state["processing"]]
    started = client.get("/rq/0/data/jobs/default/started/8/asc/1.json", headers=AUTH).json
    assert [j["id"] for j in started["jobs"]] == [every_state["processing"]]
    queued = client.get("/rq/0/data/jobs/default/queued/8/asc/1.json", headers=AUTH).json
    assert every_state["queued"] in [j["id"] for j in queued["jobs"]]
    assert every_state["expired_queued"] not in [j["id"] for j in queued["jobs"]]


@pytest.mark.integration
def test_expired_and_unknown_ids_are_404_not_500(client, every_state):
    for task_id in (every_state["expired_failed"], "no-such-job"):
        for url in (f"/rq/0/view/job/{task_id}", f"/rq/0/data/job/{task_id}.json"):
            assert client.get(url, headers=AUTH).status_code == 404
    assert client.get("/rq/1/view/workers", headers=AUTH).status_code == 404
    assert client.get("/rq/3/data/queues.json", headers=AUTH).status_code == 404


def test_requeue_from_the_dashboard_reads_queued_then_runs(client, conn):
    view = jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0, "fail_at_step": 1})
    run_queued(conn)
    assert jobs.get(conn, view["id"])["status"] == "failed"
    assert client.post(f"/rq/job/{view['id']}/requeue", headers=AUTH).status_code == 403  # not from its page
    response = client.post(f"/rq/job/{view['id']}/requeue", headers=XHR)
    assert response.status_code == 200 and response.json == {"status": "OK"}
    requeued = jobs.get(conn, view["id"])
    assert requeued["status"] == "queued" and requeued["params"]["fail_at_step"] == 1
    assert FailedJobRegistry("default", connection=conn, serializer=SERIALIZER).count == 0
    run_queued(conn)
    again = jobs.get(conn, view["id"])
    assert again["status"] == "failed" and again["error"]["message"] == "Demo failure requested"
    ok = jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})
    run_queued(conn)
    assert client.post(f"/rq/job/{ok['id']}/requeue", headers=XHR).status_code == 409
    assert client.post("/rq/job/nope/requeue", headers=XHR).status_code == 404


def test_requeue_all_goes_through_retry_and_is_post_only(client, conn):
    view = jobs.submit(conn, "demo", {"steps": 2, "step_seconds": 0, "fail_at_step": 2})
    run_queued(conn)
    failed = jobs.get(conn, view["id"])
    assert failed["status"] == "failed" and failed["error"] and failed["progress"]["done"] == 1
    assert client.get("/rq/requeue/default", headers=AUTH).status_code == 405
    response = client.post("/rq/requeue/default", headers=XHR)
    assert response.status_code == 200 and response.json["count"] == 1 and response.json["skipped"] == []
    requeued = jobs.get(conn, view["id"])
    assert requeued["status"] == "queued" and requeued["error"] is None and requeued["progress"] is None


def test_delete_from_the_dashboard_removes_the_task(client, conn):
    view = jobs.submit(conn, "web_files", {})
    run_queued(conn)
    assert client.post(f"/rq/job/{view['id']}/delete", headers=XHR).json == {"status": "OK"}
    with pytest.raises(jobs.TaskNotFound):
        jobs.get(conn, view["id"])
    assert view["id"] not in [t["id"] for t in jobs.list_tasks(conn)["tasks"]]
    assert not list(conn.scan_iter("jobs:file:*")) and not list(conn.scan_iter("jobs:outputs:*"))
    assert client.post(f"/rq/job/{view['id']}/delete", headers=XHR).status_code == 404


@pytest.mark.integration
def test_delete_of_a_running_task_is_refused(client, conn, workers):
    workers.start(1, env=WEB_WORKER_ENV)
    view = jobs.submit(conn, "demo", {"steps": 100, "step_seconds": 0.1})
    wait_status(conn, view["id"], "processing")
    assert client.post(f"/rq/job/{view['id']}/delete", headers=XHR).status_code == 409
    assert jobs.get(conn, view["id"])["status"] == "processing"
    jobs.cancel(conn, view["id"])
    wait_status(conn, view["id"], "canceled")


def test_empty_goes_through_delete_so_files_and_index_entries_go_too(client, conn):
    upload = files.store_file(conn, io.BytesIO(b""), "empty.csv", ttl=600).model_dump()
    failed = jobs.submit(conn, "csv_profile", {"file": upload})["id"]
    expired = jobs.submit(conn, "demo", {"steps": 1, "fail_at_step": 1})["id"]
    run_queued(conn)
    assert jobs.get(conn, failed)["status"] == "failed" and conn.exists(f"jobs:file:{upload['id']}")
    _expire(conn, expired)  # leaves its id in the failed registry
    queued = jobs.submit(conn, "demo", {})["id"]

    response = client.post("/rq/queue/default/failed/empty", headers=XHR)
    assert response.status_code == 200 and response.json == {"status": "OK", "deleted": 1, "skipped": []}
    assert not list(conn.scan_iter("jobs:file:*"))
    assert conn.zscore(keys.task_index(), failed) is None
    assert conn.zcard(FailedJobRegistry("default", connection=conn).key) == 0
    assert client.post("/rq/queue/default/queued/empty", headers=XHR).json["deleted"] == 1
    assert conn.zscore(keys.task_index(), queued) is None
    assert jobs.list_tasks(conn)["tasks"] == []


@pytest.mark.integration
def test_empty_started_skips_the_running_task_and_says_so(client, conn, workers):
    workers.start(1, env=WEB_WORKER_ENV)
    view = jobs.submit(conn, "demo", {"steps": 100, "step_seconds": 0.1})
    wait_status(conn, view["id"], "processing")
    response = client.post("/rq/queue/default/started/empty", headers=XHR)
    assert response.status_code == 200 and response.json["deleted"] == 0
    assert [s["id"] for s in response.json["skipped"]] == [view["id"]]
    assert "running" in response.json["skipped"][0]["message"]
    assert jobs.get(conn, view["id"])["status"] == "processing"
    jobs.cancel(conn, view["id"])
    wait_status(conn, view["id"], "canceled")


# --- malformed URLs and Redis outages: 400/404/503, never a 500 ---------------------------------

MALFORMED = [
    ("get", "/rq/0/data/jobs/default/failed/abc/asc/1.json", 400),
    ("get", "/rq/0/data/jobs/default/failed/8/asc/abc.json", 400),
    ("get", "/rq/0/data/jobs/default/failed/0/asc/1.json", 400),
    ("get", "/rq/0/data/jobs/default/failed/8/asc/0.json", 400),
    ("get", "/rq/0/data/jobs/default/failed/8/sideways/1.json", 400),
    ("get", "/rq/0/data/jobs/default/failed/99999999999999999999/asc/99999999999999999999.json", 400),
    ("get", "/rq/0/data/jobs/default/queued/8/dsc/99999999999999999999.json", 400),
    ("get", "/rq/0/data/jobs/default/nope/8/asc/1.json", 404),
    ("get", "/rq/0/data/jobs/nope/failed/8/asc/1.json", 404),
    ("get", "/rq/0/view/jobs/default/nope/8/asc/1", 404),
    ("get", "/rq/0/view/jobs/default/failed/0/asc/1", 400),
    ("get", "/rq/0/view/jobs/x'+alert(1)+'/queued/8/asc/1", 404),  # was reflected into a script unescaped
    ("get", "/rq/0/data/job/%FF.json", 404),
    ("get", "/rq/0/data/job/%00.json", 404),
    ("get", "/rq/0/view/job/%00", 404),
    ("get", "/rq/0/view/job/%FF", 404),
    ("post", "/rq/queue/nope/compact", 404),
    ("post", "/rq/queue/default/nope/empty", 404),
    ("post", "/rq/requeue/nope", 404),
    ("post", "/rq/job/%FF/delete", 404),
    ("post", "/rq/job/%00/requeue", 404),
]


def test_malformed_dashboard_urls_are_400_or_404_with_a_message(app, client, conn):
    jobs.submit(conn, "demo", {})
    for method, url, status in MALFORMED:
        response = getattr(client, method)(url, headers=XHR)
        assert response.status_code == status, (url, response.data[:300])
        if method == "post" or url.endswith(".json"):
            assert response.mimetype == "application/json" and response.json["error"]["message"], url
        else:
            assert response.mimetype == "text/html", url
    assert app.extensions["webapp_unhandled"] == []


def test_compact_of_a_queue_without_jobs_and_with_expired_ones(app, client, conn):
    assert client.post("/rq/queue/default/compact", headers=XHR).status_code == 200  # no list in Redis yet
    kept, gone = jobs.submit(conn, "demo", {})["id"], jobs.submit(conn, "demo", {})["id"]
    _expire(conn, gone)
    assert client.post("/rq/queue/default/compact", headers=XHR).json == {"status": "OK", "removed": 1}
    assert [i.decode() for i in conn.lrange("rq:queue:default", 0, -1)] == [kept]
    assert app.extensions["webapp_unhandled"] == []


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_down_is_a_503_page_or_our_json_503(conn):
    app = make_app(f"redis://127.0.0.1:{_dead_port()}/0", RQ_DASHBOARD_USERNAME="ops", RQ_DASHBOARD_PASSWORD="s3cret")
    client = app.test_client()
    for url in ("/rq/", "/rq/0/view/workers", "/rq/0/view/jobs/default/failed/8/asc/1", "/rq/0/view/job/abc"):
        page = client.get(url, headers=AUTH)
        assert page.status_code == 503 and page.mimetype == "text/html", url
        assert "Cannot reach Redis" in page.get_data(as_text=True), url
    for method, url in [("get", "/rq/0/data/queues.json"), ("get", "/rq/0/data/workers.json"),
                        ("get", "/rq/0/data/jobs/default/failed/8/asc/1.json"), ("get", "/rq/0/data/job/abc.json"),
                        ("post", "/rq/job/abc/delete"), ("post", "/rq/job/abc/requeue"),
                        ("post", "/rq/requeue/default"), ("post", "/rq/queue/default/failed/empty"),
                        ("post", "/rq/queue/default/compact")]:
        response = getattr(client, method)(url, headers=XHR)
        assert response.status_code == 503 and response.mimetype == "application/json", url
        assert response.json["error"]["code"] == "redis_unavailable" and "REDIS_URL" in response.json["error"]["message"]
    assert app.extensions["webapp_unhandled"] == []


# --- HTML in task data is shown as text ------------------------------------------------------------

IMG = "<img src=x onerror=alert(1)>"


@pytest.fixture
def planted(conn):
    """Tasks carrying HTML in their failure message, params, progress message and results; {what: id}."""
    ids = {"failed": jobs.submit(conn, "demo", {"steps": 2, "step_seconds": 0, "fail_at_step": 1,
                                                "failure_message": IMG})["id"],
           "result": jobs.submit(conn, "web_kinds", {"label": IMG})["id"]}
    csv = files.store_file(conn, io.BytesIO(f"{IMG},b\n1,2\n3,4\n".encode()), "x.csv", ttl=600).model_dump()
    ids["csv"] = jobs.submit(conn, "csv_profile", {"file": csv, "header": "yes"})["id"]
    run_queued(conn)
    # No built-in task puts its input into a progress message, but a task type may: write one as it would.
    ids["progress"] = jobs.submit(conn, "demo", {"failure_message": IMG}, start=False)["id"]
    job = TaskJob.fetch(ids["progress"], connection=conn, serializer=SERIALIZER)
    job.meta["progress"] = {"percent": 50.0, "done": None, "total": None, "message": IMG}
    job.save_meta()
    return ids


def test_job_data_keeps_the_text_and_every_template_escapes_it(client, conn, planted):
    data = {name: client.get(f"/rq/0/data/job/{task_id}.json", headers=AUTH).json for name, task_id in planted.items()}
    # The data URLs carry the text as sent (escaping it there would show &lt; where the list escapes again) ...
    assert IMG in data["failed"]["exc_info"] and json.loads(data["failed"]["metadata"])["error"]["message"] == IMG
    assert data["result"]["result"]["label"] == IMG and IMG in json.dumps(data["csv"]["result"])
    assert json.loads(data["progress"]["metadata"])["progress"]["message"] == IMG
    # ... and every underscore template of every page escapes what it inserts: <%- %>, never <%= %> or print().
    for url in ("/rq/0/view/queues", "/rq/0/view/workers", "/rq/0/view/jobs/default/failed/8/asc/1",
                f"/rq/0/view/job/{planted['failed']}"):
        page = client.get(url, headers=AUTH, follow_redirects=True).get_data(as_text=True)
        templates = re.findall(r'<script name="[^"]+" type="text/template">(.*?)</script>', page, re.S)
        assert templates, url
        for template in templates:
            assert "<%=" not in template and "print(" not in template, (url, template)
            assert not re.search(r"<%-[^%]*\.text\(", template), (url, template)  # escaped once, not twice


@pytest.fixture(scope="module")
def dashboard_server(redis_url, tmp_path_factory):
    """The Procfile's web process with the dashboard on; started only by the browser test."""
    web = WebServer(redis_url, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log",
                    env={"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "s3cret"})
    web.start()
    yield web
    web.stop()


@pytest.mark.browser
@pytest.mark.integration
def test_html_in_task_data_shows_as_text_in_a_browser(request, conn, planted):
    if not CHROMIUM.exists():
        pytest.skip(CHROMIUM_MISSING)
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    server = request.getfixturevalue("dashboard_server")
    expect = sync_api.expect
    dialogs = []
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(base_url=server.url, http_credentials={"username": "ops", "password": "s3cret"})
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        for name, task_id in planted.items():
            page.goto(f"/rq/0/view/job/{task_id}")
            expect(page.locator("#job-data")).to_contain_text(IMG, timeout=10_000)  # as typed, not &lt;img
            assert page.locator("#job-data img").count() == 0, name
        page.goto("/rq/0/view/jobs/default/failed/8/asc/1")
        row = page.locator(f'tr[data-job-id="{planted["failed"]}"]')
        expect(row.locator("pre.exc_info")).to_contain_text(IMG, timeout=10_000)  # escaped once, not twice
        assert page.locator("table img").count() == 0
        page.wait_for_timeout(300)  # time for an onerror to fire, had an image been made
        browser.close()
    assert dialogs == []
