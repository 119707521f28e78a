"""rq-dashboard at /rq: auth, per-app mounting, every page with tasks in every state, and consistency."""

from __future__ import annotations

import base64
import json
import re

import pytest
from rq.registry import FailedJobRegistry

import jobs
from jobs.connection import SERIALIZER
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

    assert web.blueprint.before_request_funcs[None] == [web.push_rq_connection]  # the shared blueprint is untouched


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


def test_requeue_all_is_post_only(client, conn):
    view = jobs.submit(conn, "demo", {"steps": 1, "fail_at_step": 1})
    run_queued(conn)
    assert client.get("/rq/requeue/default", headers=AUTH).status_code == 405
    response = client.post("/rq/requeue/default", headers=XHR)
    assert response.status_code == 200 and response.json["count"] == 1
    assert jobs.get(conn, view["id"])["status"] == "queued"


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
