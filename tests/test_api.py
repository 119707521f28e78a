"""The public API of `jobs` against a real Redis, without workers."""

from __future__ import annotations

import time

import pytest
from rq import Queue
from rq.registry import CanceledJobRegistry

import jobs
from jobs import keys
from jobs.connection import SERIALIZER
from jobs.reaper import trim_canceled
from jobs.rqjob import TaskJob


def queue_len(conn, name="default") -> int:
    return Queue(name, connection=conn, serializer=SERIALIZER).count


def test_submit_enqueues_and_returns_the_view(conn):
    view = jobs.submit(conn, "demo", {"steps": 2})
    assert view["status"] == "queued" and view["type"] == "demo"
    assert view["params"]["steps"] == 2 and view["params"]["step_seconds"] == 1.0
    assert view["attempt"] == {"number": 1, "of": 1}
    assert view["created_at"] and view["enqueued_at"] and view["started_at"] is None
    assert queue_len(conn) == 1
    stored = TaskJob.fetch(view["id"], connection=conn, serializer=SERIALIZER)
    assert stored.func_name == "jobs.processor.run_task"
    assert stored.kwargs == {"task_type": "demo", "params": view["params"]}
    assert stored.args == []


@pytest.mark.parametrize("type_name, params", [
    ("nope", {}), ("demo", {"steps": -1}), ("demo", {"steps": "x"}), ("demo", {"extra": 1}), ("demo", [1, 2]),
])
def test_invalid_submissions_reach_nothing(conn, type_name, params):
    with pytest.raises((jobs.InvalidParams, jobs.UnknownTaskType)):
        jobs.submit(conn, type_name, params)
    assert conn.dbsize() == 0


def test_rq_looking_param_names_stay_params(conn):
    view = jobs.submit(conn, "echo_options", {"timeout": 1, "description": "d", "result_ttl": 9})
    job = TaskJob.fetch(view["id"], connection=conn, serializer=SERIALIZER)
    assert job.timeout == 30 + 5 + 5  # time limit + grace + margin, not the param
    assert job.description == "echo_options: Echoes rq-looking parameter names"
    assert job.result_ttl != 9


def test_pending_then_start_with_params(conn):
    view = jobs.submit(conn, "demo", {"steps": 2}, start=False)
    assert view["status"] == "pending" and queue_len(conn) == 0
    assert conn.ttl(TaskJob.key_for(view["id"])) > 0
    started = jobs.start(conn, view["id"], {"steps": 4})
    assert started["status"] == "queued" and started["params"]["steps"] == 4
    assert queue_len(conn) == 1
    assert conn.ttl(TaskJob.key_for(view["id"])) == -1
    with pytest.raises(jobs.InvalidTransition):
        jobs.start(conn, view["id"])
    with pytest.raises(jobs.InvalidParams):
        jobs.start(conn, jobs.submit(conn, "demo", {}, start=False)["id"], {"steps": 0})


def test_idempotency_key_returns_the_same_task(conn):
    first = jobs.submit(conn, "demo", {"steps": 1}, idempotency_key="abc")
    second = jobs.submit(conn, "demo", {"steps": 1}, idempotency_key="abc")
    other = jobs.submit(conn, "demo", {"steps": 1}, idempotency_key="xyz")
    assert first["id"] == second["id"] != other["id"]
    assert queue_len(conn) == 2


def test_idempotency_key_of_a_deleted_task_makes_a_new_one(conn):
    first = jobs.submit(conn, "demo", {}, idempotency_key="k")
    jobs.cancel(conn, first["id"])
    jobs.delete(conn, first["id"])
    assert conn.get(keys.idempotency("k")) is None  # freed with the task: a resend need not wait to find it gone
    again = jobs.submit(conn, "demo", {}, idempotency_key="k")
    assert again["id"] != first["id"] and again["status"] == "queued"


def test_cancel_queued_and_pending(conn):
    queued = jobs.submit(conn, "demo", {})
    pending = jobs.submit(conn, "demo", {}, start=False)
    assert jobs.cancel(conn, queued["id"])["status"] == "canceled"
    assert jobs.cancel(conn, pending["id"])["status"] == "canceled"
    assert queue_len(conn) == 0
    with pytest.raises(jobs.InvalidTransition, match="already ended"):
        jobs.cancel(conn, queued["id"])
    view = jobs.get(conn, queued["id"])
    assert view["error"]["kind"] == "canceled"
    # kept for the type's failure retention, like a failed task, then it expires
    failure_ttl = jobs.get_task_type("demo").failure_ttl
    canceled = CanceledJobRegistry("default", connection=conn)
    for task_id in (queued["id"], pending["id"]):
        assert failure_ttl - 5 <= conn.ttl(TaskJob.key_for(task_id)) <= failure_ttl
        assert conn.zscore(canceled.key, task_id) > time.time() + failure_ttl - 5
    # workers drop registry entries past that retention (rq never cleans this registry)
    conn.zadd(canceled.key, {"long-gone": time.time() - 1})
    trim_canceled(conn, ["default"])
    assert conn.zscore(canceled.key, "long-gone") is None and conn.zscore(canceled.key, queued["id"])


def test_retry_rules(conn):
    view = jobs.submit(conn, "demo", {})
    with pytest.raises(jobs.InvalidTransition, match="only failed or canceled"):
        jobs.retry(conn, view["id"])
    jobs.cancel(conn, view["id"])
    again = jobs.retry(conn, view["id"])
    assert again["id"] == view["id"] and again["status"] == "queued" and again["error"] is None
    assert queue_len(conn) == 1
    assert conn.ttl(TaskJob.key_for(view["id"])) == -1



def test_backoff_waits_follow_the_declaration_with_the_last_value_repeating(conn):
    @jobs.task_type("backoff_probe", title="Backoff", max_attempts=5, backoff=[1, 7])
    def backoff_probe(ctx: jobs.TaskContext) -> None:
        return None

    view = jobs.submit(conn, "backoff_probe", {})
    job = TaskJob.fetch(view["id"], connection=conn, serializer=SERIALIZER)
    waits = []
    while job.retries_left:  # rq's own choice of interval, retry after retry
        waits.append(job.get_retry_interval())
        job.retries_left -= 1
    assert waits == [1, 7, 7, 7]
    assert view["attempt"] == {"number": 1, "of": 5}

def test_delete_removes_everything(conn):
    view = jobs.submit(conn, "demo", {})
    jobs.cancel(conn, view["id"])
    jobs.delete(conn, view["id"])
    with pytest.raises(jobs.TaskNotFound):
        jobs.get(conn, view["id"])
    assert not conn.exists(TaskJob.key_for(view["id"]))
    assert conn.zcard(keys.task_index()) == 0


def test_expired_and_unknown_ids_read_clearly(conn):
    view = jobs.submit(conn, "demo", {})
    conn.delete(TaskJob.key_for(view["id"]))  # what Redis does when retention passes
    with pytest.raises(jobs.TaskNotFound, match="has expired") as info:
        jobs.get(conn, view["id"])
    assert info.value.expired
    with pytest.raises(jobs.TaskNotFound, match="No task has id") as info:
        jobs.get(conn, "0123456789ab0123456789ab")
    assert not info.value.expired
    with pytest.raises(jobs.TaskNotFound):
        jobs.get(conn, "../../etc/passwd")
    assert jobs.list_tasks(conn)["tasks"] == []  # expired ids drop out of listings


def test_list_newest_first_with_cursor_pagination(conn):
    ids = [jobs.submit(conn, "demo", {"steps": n})["id"] for n in range(1, 8)]
    page1 = jobs.list_tasks(conn, limit=3)
    assert [t["id"] for t in page1["tasks"]] == ids[::-1][:3]
    page2 = jobs.list_tasks(conn, limit=3, cursor=page1["next_cursor"])
    assert [t["id"] for t in page2["tasks"]] == ids[::-1][3:6]
    page3 = jobs.list_tasks(conn, limit=3, cursor=page2["next_cursor"])
    assert [t["id"] for t in page3["tasks"]] == ids[:1] and page3["next_cursor"] is None


def test_list_filters_by_status_and_type(conn):
    demo_ids = [jobs.submit(conn, "demo", {})["id"] for _ in range(4)]
    sleeper = jobs.submit(conn, "sleeper", {})["id"]
    jobs.cancel(conn, demo_ids[1])
    jobs.cancel(conn, demo_ids[3])
    canceled = jobs.list_tasks(conn, status="canceled")
    assert [t["id"] for t in canceled["tasks"]] == [demo_ids[3], demo_ids[1]]
    by_type = jobs.list_tasks(conn, type_name="sleeper")
    assert [t["id"] for t in by_type["tasks"]] == [sleeper]
    both = jobs.list_tasks(conn, type_name="demo", status="queued", limit=1)
    assert [t["id"] for t in both["tasks"]] == [demo_ids[2]] and both["next_cursor"] == demo_ids[2]
    rest = jobs.list_tasks(conn, type_name="demo", status="queued", limit=1, cursor=both["next_cursor"])
    assert [t["id"] for t in rest["tasks"]] == [demo_ids[0]]
    with pytest.raises(jobs.InvalidParams):
        jobs.list_tasks(conn, status="bogus")
    with pytest.raises(jobs.UnknownTaskType):
        jobs.list_tasks(conn, type_name="bogus")
    with pytest.raises(jobs.InvalidParams):
        jobs.list_tasks(conn, cursor="not a cursor!")


def test_list_page_cost_does_not_grow_with_total(conn, counting_conn):
    client, Counter = counting_conn
    for n in range(300):
        jobs.submit(conn, "demo", {})
    jobs.list_tasks(client, limit=1)  # warm-up: connection handshake
    counter = Counter()
    jobs.list_tasks(client, limit=20)
    small = counter.count
    for n in range(700):
        jobs.submit(conn, "demo", {})
    counter.reset()
    jobs.list_tasks(client, limit=20)
    assert counter.count == small <= 3


def test_round_trips(conn, counting_conn):
    client, Counter = counting_conn
    jobs.submit(client, "demo", {})  # warm-up: rq asks the server version once per client
    counter = Counter()
    view = jobs.submit(client, "demo", {"steps": 2})
    assert counter.count == 1
    counter.reset()
    jobs.submit(client, "demo", {}, idempotency_key="once")
    assert counter.count == 2
    counter.reset()
    jobs.submit(client, "demo", {}, idempotency_key="once")
    assert counter.count == 2
    counter.reset()
    jobs.get(client, view["id"])
    assert counter.count == 1


def test_unreachable_redis_is_one_clear_error():
    dead = jobs.connect("redis://127.0.0.1:1/0")
    with pytest.raises(jobs.RedisUnavailable, match=r"Cannot reach Redis at 127\.0\.0\.1:1 .*REDIS_URL"):
        jobs.submit(dead, "demo", {})
    with pytest.raises(jobs.RedisUnavailable):
        jobs.check(dead)
    with pytest.raises(jobs.RedisUnavailable, match="not a Redis URL"):
        jobs.connect("http://example.invalid")


def test_a_page_meeting_expired_tasks_costs_the_same_however_many_keys_redis_holds(conn, counting_conn):
    client, Counter = counting_conn
    views = [jobs.submit(conn, "demo", {}) for _ in range(5)]
    with conn.pipeline(transaction=False) as pipe:
        for n in range(5000):  # unrelated keys: the clean-up of expired ids must not walk them
            pipe.set(f"unrelated:{n}", 1)
        for view in views[:3]:
            pipe.delete(TaskJob.key_for(view["id"]))  # their retention passed
        pipe.execute()
    jobs.list_tasks(client, limit=1)  # warm-up: connection handshake
    counter = Counter()
    page = jobs.list_tasks(client, limit=20)
    assert [t["id"] for t in page["tasks"]] == [v["id"] for v in reversed(views[3:])]
    assert counter.count <= 4
    assert conn.zscore(keys.task_index(), views[0]["id"]) is None
    assert conn.zscore(keys.type_index("demo"), views[0]["id"]) is None


def test_an_identical_resend_naming_a_stored_file_returns_the_first_task(conn):
    import io

    import tests.web_task_fixtures  # noqa: F401 - registers web_kinds (a file parameter)

    ref = jobs.files.store_file(conn, io.BytesIO(b"12345"), "mine.txt", ttl=3600)
    params = lambda: {"label": "x", "upload": {"id": ref.id, "name": "MINE.TXT", "size": 1}}  # noqa: E731
    first = jobs.submit(conn, "web_kinds", params(), idempotency_key="resend-file")
    assert first["params"]["upload"]["name"] == "mine.txt"  # the stored name, not the claimed one
    again = jobs.submit(conn, "web_kinds", params(), idempotency_key="resend-file")
    assert again["id"] == first["id"]
