"""The HTML pages: forms from the registry, the task page, the list, CSRF, escaping, headers."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

import markupsafe
import pytest

import jobs
from tests.conftest import wait_for, wait_status
from tests.web_helpers import csrf_token, idempotency_key, make_app, run_queued
from tests.web_task_fixtures import WEB_WORKER_ENV

STATIC = Path(__file__).resolve().parent.parent / "webapp" / "static"
TEMPLATES = STATIC.parent / "templates"
XSS = ['<script>alert(1)</script>', '"onerror=alert(1) x="', "<img src=x onerror=alert(1)>"]


@pytest.fixture
def app(redis_url, conn):
    return make_app(redis_url)  # CSRF is on, as in production


@pytest.fixture
def client(app):
    return app.test_client()


def post_form(client, type_name: str, fields: dict, **kwargs):
    page = client.get(f"/tasks/new/{type_name}").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "idempotency_key": idempotency_key(page), **fields}
    return client.post(f"/tasks/new/{type_name}", data=data, **kwargs)


def created_id(response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    match = re.fullmatch(r"/tasks/([0-9a-f]+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def test_home_shows_type_cards_and_latest_tasks(client, conn):
    view = jobs.submit(conn, "demo", {})
    page = client.get("/").get_data(as_text=True)
    for ttype in jobs.task_types():
        assert f'data-task-type="{ttype.name}"' in page
        assert f'href="/tasks/new/{ttype.name}"' in page
    assert html.escape(jobs.get_task_type("demo").description, quote=False) in page
    assert f'data-task-id="{view["id"]}"' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_form_has_one_input_per_param_kind(client):
    page = client.get("/tasks/new/web_kinds").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page
    assert re.search(r'<input type="number" id="field-count" name="count"\s+value="2"\s+step="1"\s+min="1"\s+max="10"', page)
    assert re.search(r'<input type="number" id="field-ratio" name="ratio"\s+value="0.5"\s+step="any"', page)
    assert re.search(r'<select id="field-mode" name="mode"', page) and '<option value="slow" >slow</option>' in page
    assert '<option value="1" selected>1</option>' in page
    assert '<input type="hidden" name="loud" value="false">' in page
    assert re.search(r'<input type="checkbox" id="field-loud" name="loud" value="true"', page)
    assert re.search(r'<input type="date" id="field-day" name="day"', page)
    assert re.search(r'<input type="datetime-local" id="field-at" name="at"', page)
    assert re.search(r'<input type="file" id="field-upload" name="upload"', page)
    assert re.search(r'<input type="text" id="field-label" name="label"\s+value=""\s+required', page)
    assert '<small class="help" id="help-count">How many rows.</small>' in page
    assert len(idempotency_key(page)) == 32
    assert idempotency_key(client.get("/tasks/new/web_kinds").get_data(as_text=True)) != idempotency_key(page)
    assert 'id="submit-button"' in page and "data-once" in page
    assert client.get("/tasks/new/demo").get_data(as_text=True).count("multipart") == 0


def test_unknown_type_form_is_a_404_page(client):
    response = client.get("/tasks/new/nope")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Known types" in response.get_data(as_text=True)


def test_submit_redirects_to_the_task_page(client, conn):
    task_id = created_id(post_form(client, "demo", {"steps": "3", "step_seconds": "0", "fail_at_step": "",
                                                   "failure_message": "x"}))
    view = jobs.get(conn, task_id)
    assert view["params"] == {"steps": 3, "step_seconds": 0.0, "fail_at_step": None, "failure_message": "x"}
    page = client.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'id="status"' in text and 'data-status="queued"' in text
    assert f'data-api-url="/api/tasks/{task_id}"' in text
    assert 'id="cancel-button"' in text and 'id="retry-button"' not in text
    assert re.search(r"Fail at step</th>\s*<td>—</td>", text)  # a parameter not given says so


def test_upload_through_the_form(client, conn):
    response = post_form(client, "web_kinds", {"label": "with file", "loud": ["false", "true"],
                                               "upload": (io.BytesIO(b"1,2\n"), "in.csv", "text/csv")},
                         content_type="multipart/form-data")
    view = jobs.get(conn, created_id(response))
    assert view["params"]["upload"]["name"] == "in.csv" and view["params"]["loud"] is True


def test_invalid_input_rerenders_with_messages_and_values(client, conn):
    response = post_form(client, "web_kinds", {"label": "", "count": "42", "ratio": "abc", "mode": "slow",
                                               "loud": ["false", "true"], "day": "2024-13-45"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for field in ("label", "count", "ratio", "day"):
        assert re.search(rf'<p class="field-error" id="error-{field}" role="alert">[^<]+</p>', page), field
    assert 'id="error-mode"' not in page
    assert re.search(r'name="count"\s+value="42"', page) and re.search(r'name="ratio"\s+value="abc"', page)
    assert '<option value="slow" selected>slow</option>' in page
    assert re.search(r'name="loud" value="true"\s+checked', page)
    assert 'aria-describedby="help-count error-count"' in page
    assert jobs.list_tasks(conn)["tasks"] == []


def test_double_submit_makes_one_task(client, conn):
    page = client.get("/tasks/new/demo").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "idempotency_key": idempotency_key(page), "steps": "2"}
    first = created_id(client.post("/tasks/new/demo", data=data))
    second = created_id(client.post("/tasks/new/demo", data=data))
    assert first == second
    assert len(jobs.list_tasks(conn)["tasks"]) == 1
    js = (STATIC / "app.js").read_text()
    assert "form[data-once]" in js and "disabled = true" in js


def test_a_resent_form_with_other_values_says_so_and_offers_a_new_task(client, conn):
    page = client.get("/tasks/new/demo").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "idempotency_key": idempotency_key(page), "steps": "2"}
    first = created_id(client.post("/tasks/new/demo", data=data))
    # back in the browser, another value, the same form (and key) sent again
    again = client.post("/tasks/new/demo", data={**data, "steps": "3"})
    text = again.get_data(as_text=True)
    assert again.status_code == 422 and f"made task {first} with other values" in text
    assert idempotency_key(text) != data["idempotency_key"]  # sending it once more makes the new task
    second = created_id(client.post("/tasks/new/demo", data={**data, "idempotency_key": idempotency_key(text),
                                                             "steps": "3"}))
    assert second != first and len(jobs.list_tasks(conn)["tasks"]) == 2
    # the form's keys live apart from API clients' keys
    api = client.post("/api/tasks", json={"type": "demo", "params": {"steps": 2}},
                      headers={"Idempotency-Key": data["idempotency_key"]})
    assert api.status_code == 202 and api.json["id"] not in (first, second)


def test_csrf_is_required_on_forms_but_not_on_the_api(client, conn):
    response = client.post("/tasks/new/demo", data={"steps": "2"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "reload the page" in response.get_data(as_text=True)
    view = jobs.submit(conn, "demo", {})
    assert client.post(f"/tasks/{view['id']}/cancel").status_code == 400
    assert jobs.get(conn, view["id"])["status"] == "queued"
    assert client.post("/api/tasks", json={"type": "demo"}).status_code == 202


def test_cancel_and_retry_buttons(client, conn):
    view = jobs.submit(conn, "demo", {})
    page = client.get(f"/tasks/{view['id']}").get_data(as_text=True)
    response = client.post(f"/tasks/{view['id']}/cancel", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303 and response.headers["Location"] == f"/tasks/{view['id']}"
    page = client.get(f"/tasks/{view['id']}").get_data(as_text=True)
    assert 'data-status="canceled"' in page and "Cancel requested." in page
    assert 'id="retry-button"' in page and re.search(r'id="cancel-form"\s+hidden', page)
    client.post(f"/tasks/{view['id']}/retry", data={"csrf_token": csrf_token(page)})
    assert jobs.get(conn, view["id"])["status"] == "queued"
    client.post(f"/tasks/{view['id']}/retry", data={"csrf_token": csrf_token(page)})
    page = client.get(f"/tasks/{view['id']}").get_data(as_text=True)
    assert "only failed or canceled" in page  # the refusal is shown, not an error page


def test_completed_task_renders_tables_and_downloads(client, conn):
    with_rows = jobs.submit(conn, "web_kinds", {"label": "L", "count": 3})
    listing = jobs.submit(conn, "web_files", {"name": "out put.csv"})
    plain = jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})
    run_queued(conn)
    page = client.get(f"/tasks/{with_rows['id']}").get_data(as_text=True)
    assert 'data-status="completed"' in page and 'value="100"' in page
    assert "<h3>rows</h3>" in page and "<th>nested</th>" in page
    assert "<td>{&#34;n&#34;: 2}</td>" in page
    assert re.search(r"<tr><th>label</th><td>L</td></tr>", page)
    page = client.get(f"/tasks/{listing['id']}").get_data(as_text=True)
    assert "<th>file</th><th>bytes</th>" in page
    assert f'href="/api/tasks/{listing["id"]}/files/out%20put.csv" download' in page
    page = client.get(f"/tasks/{plain['id']}").get_data(as_text=True)
    assert '<pre id="result-json">{\n  &#34;steps&#34;: 1,' in page
    assert re.search(r'id="cancel-form"\s+hidden', page)


def test_failed_task_shows_message_and_collapsed_traceback(client, conn):
    view = jobs.submit(conn, "demo", {"steps": 1, "fail_at_step": 1, "failure_message": "Disk is full"})
    run_queued(conn)
    page = client.get(f"/tasks/{view['id']}").get_data(as_text=True)
    assert '<p id="error-message">Disk is full</p>' in page
    assert re.search(r'<details id="traceback"><summary>[^<]+</summary><pre>Traceback', page)
    assert 'id="retry-button"' in page


@pytest.mark.parametrize("payload", XSS)
def test_user_input_is_escaped_in_pages(client, conn, payload):
    failing = jobs.submit(conn, "demo", {"steps": 1, "fail_at_step": 1, "failure_message": payload})
    echoed = jobs.submit(conn, "web_kinds", {"label": payload})
    run_queued(conn)
    for task_id in (failing["id"], echoed["id"]):
        for url in (f"/tasks/{task_id}", "/", "/tasks"):
            page = client.get(url).get_data(as_text=True)
            assert payload not in page
            assert "<script>alert" not in page and "<img src=x" not in page
        escaped = str(markupsafe.escape(payload))  # Jinja's autoescape
        assert escaped in client.get(f"/tasks/{task_id}").get_data(as_text=True)
    response = post_form(client, "web_kinds", {"label": payload, "count": payload})
    assert response.status_code == 422 and payload not in response.get_data(as_text=True)
    # live updates: the API sends it as JSON data, and the script only ever sets text
    api = client.get(f"/api/tasks/{failing['id']}")
    assert api.mimetype == "application/json" and api.json["error"]["message"] == payload


def test_scripts_never_write_html():
    for path in STATIC.glob("*.js"):
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{path.name} uses {sink}"
    for template in TEMPLATES.glob("*.html"):
        for tag in re.findall(r"<script[^>]*>", template.read_text()):
            assert "src=" in tag, f"inline script in {template.name}"
        assert "|safe" not in template.read_text(), template.name


@pytest.mark.parametrize("url", ["/", "/tasks", "/tasks/new/demo", "/tasks/nope", "/api/tasks", "/healthz",
                                 "/static/app.js", "/api/nope"])
def test_security_headers_on_every_response(client, url):
    response = client.get(url)
    response.close()
    csp = response.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    assert script_src.strip() == "'self'"
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_unknown_and_expired_tasks_get_a_friendly_404(client, conn):
    response = client.get("/tasks/0123456789abcdef01234567")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "No task has id" in response.get_data(as_text=True)
    view = jobs.submit(conn, "demo", {})
    conn.delete(f"rq:job:{view['id']}")
    response = client.get(f"/tasks/{view['id']}")
    assert response.status_code == 404 and "has expired" in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_task_list_filters_and_pages(client, conn):
    ids = [jobs.submit(conn, "demo", {})["id"] for _ in range(23)]
    pending = jobs.submit(conn, "flaky", {}, start=False)["id"]
    page = client.get("/tasks").get_data(as_text=True)
    assert page.count("data-task-id=") == 20 and f'data-task-id="{pending}"' in page
    cursor = re.search(r'href="/tasks\?cursor=([0-9a-f]+)" id="next-page"', page).group(1)
    older = client.get(f"/tasks?cursor={cursor}").get_data(as_text=True)
    assert older.count("data-task-id=") == 4 and f'data-task-id="{ids[0]}"' in older
    assert 'id="next-page"' not in older and 'id="newest-page"' in older
    only = client.get("/tasks?status=pending").get_data(as_text=True)
    assert only.count("data-task-id=") == 1 and '<option value="pending" selected>' in only
    assert client.get("/tasks?type=flaky").get_data(as_text=True).count("data-task-id=") == 1
    bad = client.get("/tasks?status=%3Cb%3E")
    assert bad.status_code == 422 and "Unknown status" in bad.get_data(as_text=True)
    assert "<b>" not in bad.get_data(as_text=True)


@pytest.mark.integration
def test_processing_task_page_shows_live_progress(client, conn, workers):
    workers.start(1, env=WEB_WORKER_ENV)
    view = jobs.submit(conn, "demo", {"steps": 40, "step_seconds": 0.25})
    wait_for(lambda: (jobs.get(conn, view["id"])["progress"] or {}).get("percent", 0) >= 5, message="progress")
    page = client.get(f"/tasks/{view['id']}").get_data(as_text=True)
    assert 'data-status="processing"' in page
    now = jobs.get(conn, view["id"])["progress"]["percent"]
    value = float(re.search(r'<progress id="progress-bar" max="100" value="([\d.]+)" aria-valuenow="([\d.]+)"', page).group(1))
    assert 0 < value <= now
    assert re.search(r'<p id="progress-message" class="progress-message">Step \d+ of 40 done</p>', page)
    assert re.search(r'<dd id="elapsed">\d+ s</dd>', page)
    assert re.search(r'<dd id="time-left">\d+ s</dd>', page)
    jobs.cancel(conn, view["id"])
    wait_status(conn, view["id"], "canceled")


def test_every_registered_type_has_a_working_form(client):
    for ttype in jobs.task_types():
        page = client.get(f"/tasks/new/{ttype.name}")
        assert page.status_code == 200, ttype.name
        text = page.get_data(as_text=True)
        for spec in ttype.params:
            assert f'id="field-{spec.name}"' in text, (ttype.name, spec.name)
        has_file = any(spec.kind == "file" for spec in ttype.params)
        assert ('enctype="multipart/form-data"' in text) == has_file, ttype.name
