"""The pages in a real browser: Debian's Chromium driven by Playwright (sync API).

Each test talks to the Procfile's real web process (gunicorn, one per module) and,
where tasks must run, a real rq worker from the `workers` fixture, all on the
suite's Redis. Without /usr/bin/chromium the module is skipped.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.browser_helpers import (CHROMIUM, CHROMIUM_MISSING, DASHBOARD_PASSWORD, DASHBOARD_USER, WATCH_SCRIPT,
                                   PageWatch, WebServer, launch_chromium)

if not CHROMIUM.exists():
    pytest.skip(CHROMIUM_MISSING, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

import jobs  # noqa: E402

expect = sync_api.expect
expect.set_options(timeout=10_000)  # the default 5 s is short for a loaded CI machine
pytestmark = [pytest.mark.browser, pytest.mark.integration]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TASK_URL = re.compile(r"/tasks/([0-9a-f]+)$")
FINAL_WAIT = 20_000  # ms: a task that runs for a few seconds, seen through the page


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    """One gunicorn for the module; the page polls every 200 ms so live updates are quick to see."""
    web = WebServer(redis_url, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log",
                    env={"RQ_DASHBOARD_USERNAME": DASHBOARD_USER, "RQ_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
                         "JOBS_POLL_INTERVAL_MS": "200"})
    web.start()
    yield web
    web.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, server, conn):
    """Open a page in a fresh browser context; after the test, gunicorn must have logged no traceback."""
    contexts = []
    log_start = server.log.stat().st_size

    def open_(viewport=DESKTOP, **options):
        context = browser.new_context(base_url=server.url, viewport=viewport, accept_downloads=True, **options)
        context.set_default_timeout(10_000)
        context.add_init_script(WATCH_SCRIPT)
        contexts.append(context)
        page = context.new_page()
        return page, PageWatch(page)

    yield open_
    for context in contexts:
        context.close()
    with open(server.log, "rb") as log:
        log.seek(log_start)
        new = log.read().decode(errors="replace")
    assert "Traceback" not in new, new[-4000:]


def landed_task_id(page) -> str:
    """Wait for the redirect to a task page and return the task's id."""
    page.wait_for_url(TASK_URL)
    return TASK_URL.search(page.url).group(1)


def no_horizontal_scroll(page) -> dict:
    return page.evaluate("""() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                                    fits: document.documentElement.scrollWidth <= window.innerWidth})""")


def test_demo_form_shows_live_progress_until_completed(open_page, conn, workers):
    workers.start(1)
    page, watch = open_page()
    page.goto("/tasks/new/demo")
    page.fill("#field-steps", "3")
    page.fill("#field-step_seconds", "0.7")
    page.click("#submit-button")
    task_id = landed_task_id(page)
    page.evaluate("() => { window.__landed = true; }")  # gone if the document is replaced

    # In this same document (no reload): the bar takes a value strictly between 0 and 100.
    page.wait_for_function("() => window.__landed && window.__progress.some(v => v > 0 && v < 100)",
                           timeout=FINAL_WAIT)
    seen = page.evaluate("() => ({progress: window.__progress, statuses: window.__statuses})")
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=FINAL_WAIT)
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#progress-percent")).to_have_text("100 %")
    expect(page.locator("#result")).to_contain_text('"steps": 3')

    assert seen["progress"] == sorted(seen["progress"]), seen  # it only ever rises
    assert "processing" in seen["statuses"], seen
    assert jobs.get(conn, task_id)["status"] == "completed"
    assert watch.problems == []


def test_invalid_value_shows_the_server_message_next_to_the_field(open_page, conn):
    page, watch = open_page()
    page.goto("/tasks/new/demo")
    page.locator("#field-steps").evaluate("input => input.removeAttribute('min')")  # get past the browser's check
    page.fill("#field-steps", "0")
    page.fill("#field-step_seconds", "0.7")
    page.fill("#field-failure_message", "kept as typed")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.click("#submit-button")
    assert answer.value.status == 422

    field = page.locator('[data-field="steps"]')
    expect(field.locator("#error-steps")).to_contain_text("greater than or equal to 1")
    expect(field.locator("#field-steps")).to_have_attribute("aria-describedby", re.compile(r"\berror-steps\b"))
    expect(page.locator("#form-error")).to_be_visible()
    expect(page.locator("#field-steps")).to_have_value("0")
    expect(page.locator("#field-step_seconds")).to_have_value("0.7")
    expect(page.locator("#field-failure_message")).to_have_value("kept as typed")
    expect(page.locator(".field-error")).to_have_count(1)  # only the wrong field complains
    assert jobs.list_tasks(conn)["tasks"] == []
    # Chromium logs the 422 answer itself as a failed resource; nothing else may go wrong
    assert [p for p in watch.problems if "status of 422" not in p] == []


def test_double_click_on_submit_makes_one_task(open_page, conn):
    page, watch = open_page()
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.goto("/tasks/new/demo")
    page.fill("#field-steps", "2")
    # A slow network keeps the first POST in flight when the second click lands, as on a phone.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400,
                                                  "downloadThroughput": -1, "uploadThroughput": -1})
    page.click("#submit-button", click_count=2, delay=100)  # a person's double click: ~200 ms apart
    task_id = landed_task_id(page)
    time.sleep(1)  # room for a second POST to arrive, if one was sent
    assert [t["id"] for t in jobs.list_tasks(conn)["tasks"]] == [task_id]
    assert len(posts) == 1, posts  # the page sent the form once
    assert watch.problems == []


def test_cancel_from_the_task_page_stops_a_running_task(open_page, conn, workers):
    workers.start(1)
    task_id = jobs.submit(conn, "demo", {"steps": 100, "step_seconds": 0.5})["id"]
    page, watch = open_page()
    page.goto(f"/tasks/{task_id}")
    expect(page.locator("#status")).to_have_attribute("data-status", "processing")
    page.click("#cancel-button")
    expect(page.locator("#status")).to_have_attribute("data-status", "canceled", timeout=FINAL_WAIT)
    expect(page.locator("#cancel-form")).to_be_hidden()
    expect(page.locator("#retry-button")).to_be_visible()
    view = jobs.get(conn, task_id)
    assert view["status"] == "canceled" and view["progress"]["percent"] < 100
    assert watch.problems == []


def csv_file(tmp_path: Path) -> tuple[Path, str, int]:
    """A clean CSV, one of its column names and its number of data rows."""
    fixture = FIXTURES / "csv" / "clean_orders.csv"
    if fixture.exists():
        return fixture, "unit_price", 120
    path = tmp_path / "small.csv"
    path.write_text("id,unit_price,city\n" + "".join(f"{n},{n * 1.5},Town {n}\n" for n in range(1, 31)))
    return path, "unit_price", 30


def test_csv_upload_shows_progress_then_the_profile(open_page, conn, workers, tmp_path):
    workers.start(1)
    path, column, rows = csv_file(tmp_path)
    page, watch = open_page()
    page.goto("/tasks/new/csv_profile")
    page.set_input_files("#field-file", str(path))
    page.click("#submit-button")
    landed_task_id(page)
    expect(page.locator("#progress-bar")).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=FINAL_WAIT)
    result = page.locator("#result")
    expect(result.locator("table.result-table td", has_text=re.compile(f"^{column}$"))).to_have_count(1)
    row_count = result.locator("table.pairs tr").filter(has=page.locator("th", has_text=re.compile("^row_count$")))
    expect(row_count.locator("td")).to_have_text(str(rows))
    assert watch.problems == []


def test_image_thumbnail_downloads_upright(open_page, conn, workers):
    from PIL import Image

    workers.start(1)
    page, watch = open_page()
    page.goto("/tasks/new/image_thumbnails")
    page.set_input_files("#field-image", str(FIXTURES / "images" / "photo_exif6.jpg"))
    page.fill("#field-sizes", "128")
    page.click("#submit-button")
    landed_task_id(page)
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=FINAL_WAIT)
    links = page.locator("#files a[download]")
    expect(links).to_have_count(2)  # the thumbnail and the zip of all
    with page.expect_download() as download:
        page.locator("#files a", has_text="photo_exif6-128.jpg").click()
    assert download.value.suggested_filename == "photo_exif6-128.jpg"
    with Image.open(download.value.path()) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (96, 128)  # 640x480 turned upright by EXIF 6
    assert watch.problems == []


def test_task_shows_on_the_dashboard_after_logging_in(open_page, conn):
    task_id = jobs.submit(conn, "demo", {"steps": 1})["id"]  # no worker: it waits in the queue
    anonymous, _ = open_page()
    assert anonymous.request.get("/rq/").status == 401  # (a page.goto would abort: no login dialog headless)

    page, watch = open_page(http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD})
    page.goto("/rq/0/view/jobs/default/queued/8/asc/1")
    row = page.locator(f'tr[data-job-id="{task_id}"]')  # drawn by the dashboard's own script
    expect(row).to_be_visible()
    expect(row.locator(".job_id a")).to_have_text(task_id)
    row.locator(".job_id a").click()
    page.wait_for_url(f"**/rq/0/view/job/{task_id}")
    expect(page.locator("body")).to_contain_text(task_id)
    assert [p for p in watch.problems if "uncaught" in p] == []


def test_no_console_errors_or_csp_violations(open_page, conn, workers):
    workers.start(1)
    task_id = jobs.submit(conn, "demo", {"steps": 4, "step_seconds": 0.3})["id"]
    page, watch = open_page()
    for url in ("/", "/tasks/new/demo", "/tasks/new/image_thumbnails", f"/tasks/{task_id}", "/tasks"):
        page.goto(url)
        if task_id in url:
            # the live script runs: it polls, then reloads once at the end to show the result
            expect(page.locator("#result")).to_be_visible(timeout=FINAL_WAIT)
            expect(page.locator("#status")).to_have_attribute("data-status", "completed")
        assert watch.csp_violations() == [], url
    assert watch.problems == []
    assert watch.http_errors == []


def test_phone_width_has_no_horizontal_scroll(open_page, conn, workers, tmp_path):
    workers.start(1)
    long_word = "/var/tmp/" + "averylongfoldername/" * 12  # no break opportunity in 250 characters
    failing = jobs.submit(conn, "demo", {"steps": 2, "step_seconds": 0, "fail_at_step": 2,
                                         "failure_message": f"Cannot write {long_word}"})["id"]
    running = jobs.submit(conn, "demo", {"steps": 100, "step_seconds": 0.5})["id"]
    page, watch = open_page(viewport=PHONE, is_mobile=True, has_touch=True)

    def check(what: str) -> None:
        size = no_horizontal_scroll(page)
        # Content wider than the phone scrolls sideways, or makes Chromium zoom out (innerWidth grows).
        assert size["fits"] and size["inner"] == PHONE["width"], f"{what}: {size}"

    for url in ("/", "/tasks/new/demo", "/tasks/new/csv_profile"):
        page.goto(url)
        check(url)
    page.goto(f"/tasks/{failing}")
    expect(page.locator("#status")).to_have_attribute("data-status", "failed", timeout=FINAL_WAIT)
    page.click("#traceback summary")  # the traceback opened wide
    expect(page.locator("#traceback pre")).to_be_visible()
    check("failed task with its traceback open")
    page.goto(f"/tasks/{running}")
    expect(page.locator("#status")).to_have_attribute("data-status", "processing")
    check("running task")

    path, column, _ = csv_file(tmp_path)
    page.goto("/tasks/new/csv_profile")
    jobs.cancel(conn, running)  # frees the worker (after leaving its page, which would reload on cancel)
    page.set_input_files("#field-file", str(path))
    page.click("#submit-button")
    landed_task_id(page)
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=FINAL_WAIT)
    expect(page.locator("#result")).to_contain_text(column)
    check("completed csv profile")
    wide = page.locator("#result .table-wrap", has=page.locator("table.result-table")).first
    assert wide.evaluate("box => box.scrollWidth > box.clientWidth")  # the wide table scrolls in its box
    page.goto("/tasks")
    check("/tasks")
    assert watch.problems == []
