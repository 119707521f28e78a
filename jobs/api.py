"""Submit, start, read, list, cancel, retry and delete tasks.

Every function takes the Redis client first (built by `jobs.connection.connect`)
and returns plain JSON-ready dicts. Redis failures surface as RedisUnavailable.
Round trips are counted in tests: reading a view costs 1, submitting at most 2.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import redis
from rq import Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from . import files, keys, settings
from .connection import SERIALIZER, queue, unavailable
from .errors import IdempotencyConflict, InvalidParams, InvalidTransition, JobsError, TaskNotFound
from .registry import TaskType, get_task_type, task_types
from .rqjob import TaskJob
from .views import READS_PER_TASK, STATUSES, build_view, not_found, queue_reads

#: The function every task runs as; users never choose a function path.
PROCESSOR = "jobs.processor.run_task"

#: Listing examines at most this many tasks per page when filtering by status,
#: so a page costs the same however many tasks Redis holds.
MAX_SCAN = 500
MAX_LIMIT = 100

#: How often a change to one task is rerun after concurrent writes before giving up.
MAX_CHANGE_ATTEMPTS = 50


def _redis_errors(func):
    """Turn connection failures into one clear RedisUnavailable line."""

    @functools.wraps(func)
    def wrapper(conn, *args, **kwargs):
        try:
            return func(conn, *args, **kwargs)
        except JobsError:
            raise
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise unavailable(conn, exc) from None

    return wrapper


_id_lock = threading.Lock()
_id_clock = {"ms": 0, "seq": 0}


def new_task_id() -> str:
    """A time-ordered id: 12 hex digits of milliseconds, a 4-digit sequence, 8 random hex digits.

    Ids sort by creation time, which the listing index relies on; the sequence keeps
    ids made by one process in the same millisecond in order.
    """
    with _id_lock:
        ms = int(time.time() * 1000)
        if ms <= _id_clock["ms"]:
            ms, seq = _id_clock["ms"], _id_clock["seq"] + 1
            if seq > 0xFFFF:
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _id_clock.update(ms=ms, seq=seq)
    return f"{ms:012x}{seq:04x}{secrets.token_hex(4)}"


def valid_task_id(task_id: Any) -> bool:
    """True for strings shaped like the ids rq accepts (letters, digits, - and _)."""
    return isinstance(task_id, str) and 0 < len(task_id) <= 64 and all(
        ch.isascii() and (ch.isalnum() or ch in "-_") for ch in task_id)


def _file_refs(params: dict) -> dict[str, dict]:
    """The file references among validated params, by parameter name."""
    return {k: v for k, v in params.items() if isinstance(v, dict) and set(v) >= {"id", "name", "size"}}


def _retry(ttype: TaskType) -> Retry | None:
    if ttype.retry.max_attempts <= 1:
        return None
    # One interval per retry: rq aligns a shorter list to the *last* retries, so the
    # first value would repeat instead of the last.
    waits = ttype.retry.waits()
    return Retry(max=len(waits), interval=waits if any(waits) else 0)


def _create_job(conn, ttype: TaskType, params: dict, task_id: str, status: JobStatus,
                idempotency_key: str | None = None) -> TaskJob:
    q = queue(conn, ttype.queue)
    return q.create_job(
        PROCESSOR,
        kwargs={"task_type": ttype.name, "params": params},
        timeout=ttype.time_limit + settings.TIME_LIMIT_GRACE + 5,
        result_ttl=ttype.result_ttl,
        failure_ttl=ttype.failure_ttl,
        description=f"{ttype.name}: {ttype.title}",
        job_id=task_id,
        status=status,
        retry=_retry(ttype),
        # the key is kept so that deleting the task frees it for a new one at once
        meta={"progress": None, **({"idempotency_key": idempotency_key} if idempotency_key else {})},
    )


def _index(pipe, task_id: str, type_name: str) -> None:
    cutoff = f"{int((time.time() - 400 * 86400) * 1000):012x}"
    for key in (keys.task_index(), keys.type_index(type_name)):
        pipe.zadd(key, {task_id: 0})
        pipe.zremrangebylex(key, "-", f"({cutoff}")


@_redis_errors
def submit(conn: redis.Redis, type_name: str, params: dict | None = None, *, start: bool = True,
           idempotency_key: str | None = None, delay: float | None = None) -> dict[str, Any]:
    """Validate and enqueue a task (or create it pending with start=False); return its view.

    With an idempotency key, a second submit within JOBS_IDEMPOTENCY_TTL returns the
    first task instead of making another. `delay` seconds schedules it for later.
    """
    ttype = get_task_type(type_name)
    clean = ttype.validate(params)
    if delay is not None and not (0 <= delay <= 366 * 86400):
        raise InvalidParams("delay must be between 0 and 31,622,400 seconds.", {"delay": "out of range"})
    return _submit(conn, ttype, clean, new_task_id(), start=start, idempotency_key=idempotency_key, delay=delay)


def _submit(conn, ttype: TaskType, clean: dict, task_id: str, *, start: bool, idempotency_key: str | None,
            delay: float | None) -> dict[str, Any]:
    refs = _file_refs(clean)
    if idempotency_key is not None or refs:
        existing = _precheck(conn, task_id, idempotency_key, refs)
        if existing is not None:
            view = _idempotent_owner(conn, existing, idempotency_key)
            if view is not None:
                if not _same_request(view, ttype.name, clean):
                    raise IdempotencyConflict(
                        f"Idempotency-Key {idempotency_key!r} already made task {view['id']} from a different "
                        "request (another type or other params); use a new key for a new task.", view["id"])
                return view
            # the key was freed: claim it again for the same, still unwritten, task
            return _submit(conn, ttype, clean, task_id, start=start, idempotency_key=idempotency_key, delay=delay)

    job = _create_job(conn, ttype, clean, task_id, JobStatus.QUEUED if start else JobStatus.CREATED,
                      idempotency_key)
    q = queue(conn, ttype.queue)
    with conn.pipeline() as pipe:
        if not start:
            job.save(pipeline=pipe)
            job.cleanup(ttl=settings.PENDING_TTL, pipeline=pipe)
        elif delay:
            q.schedule_job(job, datetime.now(timezone.utc) + timedelta(seconds=delay), pipeline=pipe)
        else:
            q.enqueue_job(job, pipeline=pipe)
        _index(pipe, task_id, ttype.name)
        queue_reads(pipe, task_id)
        replies = pipe.execute()
    return build_view(conn, task_id, replies[-READS_PER_TASK:])


def _same_request(view: dict, type_name: str, clean: dict) -> bool:
    """True if a resend matches the task its key made; uploads compare by name and size (a resend stores a copy)."""

    def same(name: str, before: Any, now: Any) -> bool:
        if name in refs and isinstance(before, dict):
            return before.get("id") == now["id"] or (before.get("name"), before.get("size")) == (now["name"], now["size"])
        return before == now

    refs = _file_refs(clean)
    before = view["params"]
    return (view["type"] == type_name and before.keys() == clean.keys()
            and all(same(name, before[name], value) for name, value in clean.items()))


#: How long a submit that lost an idempotency-key race waits for the winner's task to appear.
IDEMPOTENCY_WAIT = 5.0


def _idempotent_owner(conn, owner: str, idempotency_key: str) -> dict[str, Any] | None:
    """The view of the task that owns the key, or None once the key was freed for a new task.

    The winner of the key writes its task right after claiming it, so a missing task
    with a young id is still being written: wait for it. An old missing task expired
    or was deleted: free the key (only if it still names that task) for a new one.
    """
    deadline = time.monotonic() + IDEMPOTENCY_WAIT
    while True:
        try:
            return get(conn, owner)
        except TaskNotFound:
            if time.monotonic() >= deadline or task_age(owner) > IDEMPOTENCY_WAIT:
                break
            time.sleep(0.01)
    _release_key(conn, idempotency_key, owner)  # unless another submit freed or re-claimed it meanwhile
    return None


def task_age(task_id: str) -> float:
    """Seconds since a task id was made (ids begin with their creation time in ms)."""
    try:
        return time.time() - int(task_id[:12], 16) / 1000
    except ValueError:
        return float("inf")


def _precheck(conn, task_id: str, idempotency_key: str | None, refs: dict[str, dict]) -> str | None:
    """One round trip: claim the file params for this task and the idempotency key.

    Returns the task that already owns the key, if another does; raises
    InvalidParams (and frees the key again) when a file cannot be claimed.
    """
    with conn.pipeline(transaction=False) as pipe:
        if idempotency_key is not None:
            pipe.set(keys.idempotency(idempotency_key), task_id, nx=True, ex=settings.IDEMPOTENCY_TTL)
            pipe.get(keys.idempotency(idempotency_key))
        files.queue_claims(pipe, refs, task_id)
        replies = pipe.execute()
    if idempotency_key is not None:
        owner = replies[1].decode() if replies[1] else task_id
        if owner != task_id:
            return owner
        replies = replies[2:]
    try:
        files.check_claims(refs, replies, task_id)
    except InvalidParams:
        if idempotency_key is not None:
            _release_key(conn, idempotency_key, task_id)
        raise
    return None


def _claim_files(conn, task_id: str, refs: dict[str, dict]) -> None:
    """Claim newly named file params for a task (one round trip, none without files)."""
    if not refs:
        return
    with conn.pipeline(transaction=False) as pipe:
        files.queue_claims(pipe, refs, task_id)
        replies = pipe.execute()
    files.check_claims(refs, replies, task_id)


#: Deletes an idempotency key only while it still names the given task.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _release_key(conn, idempotency_key: str, task_id: str) -> None:
    conn.eval(_RELEASE, 1, keys.idempotency(idempotency_key), task_id)


@_redis_errors
def get(conn: redis.Redis, task_id: str) -> dict[str, Any]:
    """The task's view (one round trip); TaskNotFound says whether it expired or never was."""
    if not valid_task_id(task_id):
        raise not_found(str(task_id), False)
    with conn.pipeline(transaction=False) as pipe:
        queue_reads(pipe, task_id)
        replies = pipe.execute()
    return build_view(conn, task_id, replies)


def _fetch(conn, task_id: str) -> TaskJob:
    if not valid_task_id(task_id):
        raise not_found(str(task_id), False)
    try:
        return TaskJob.fetch(task_id, connection=conn, serializer=SERIALIZER)
    except NoSuchJobError:
        raise not_found(task_id, conn.zscore(keys.task_index(), task_id) is not None) from None


def _change(conn, task_id: str, body) -> Any:
    """Run `body(pipe, job)` as one transaction on the task; rerun it if the task changed meanwhile.

    The body reads the job (fetched after WATCH), raises to refuse, and queues its
    writes after `pipe.multi()`; its return value is returned once they are applied.
    """
    attempts = iter(range(MAX_CHANGE_ATTEMPTS))

    def attempt(pipe):
        if next(attempts, None) is None:
            raise InvalidTransition(f"Task {task_id} kept changing while being updated; try again.")
        job = _fetch(conn, task_id)
        try:
            return body(pipe, job)
        except InvalidJobOperation:
            # rq re-read the job for its own check and found it changed since our WATCH:
            # the transaction would fail anyway, so run the body again on the new state
            pipe.reset()  # leaves MULTI, so the rerun can WATCH again
            raise redis.WatchError(task_id) from None

    return conn.transaction(attempt, TaskJob.key_for(task_id), value_from_callable=True)


@_redis_errors
def start(conn: redis.Redis, task_id: str, params: dict | None = None) -> dict[str, Any]:
    """Enqueue a pending task, optionally replacing some of its params first."""
    if params is not None and not isinstance(params, dict):
        raise InvalidParams("params must be an object of name → value.", {"params": "must be an object"})

    def enqueue(pipe, job: TaskJob) -> None:
        if job.get_status(refresh=False) != JobStatus.CREATED:
            raise InvalidTransition(f"Task {task_id} is not pending, so it cannot be started; "
                                    "only tasks created with start=false can be.")
        if params:
            kwargs = dict(job.kwargs)
            merged = get_task_type(kwargs["task_type"]).validate({**kwargs["params"], **params})
            _claim_files(conn, task_id, {name: ref for name, ref in _file_refs(merged).items()
                                         if ref != kwargs["params"].get(name)})
            kwargs["params"] = merged
            job.kwargs = kwargs
        pipe.multi()
        pipe.persist(job.key)
        queue(conn, job.origin).enqueue_job(job, pipeline=pipe)

    _change(conn, task_id, enqueue)
    return get(conn, task_id)


@_redis_errors
def list_tasks(conn: redis.Redis, *, status: str | None = None, type_name: str | None = None,
               limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
    """Tasks newest first: {"tasks": [...], "next_cursor": str | None}.

    Pages walk a time-ordered index by id, so a page costs O(log N + page). With a
    status filter a page examines at most MAX_SCAN tasks; it may then hold fewer
    than `limit` tasks while `next_cursor` still points further back.
    """
    if status is not None and status not in STATUSES:
        raise InvalidParams(f"Unknown status {status!r}; use one of: {', '.join(STATUSES)}.",
                            {"status": "unknown status"})
    if type_name is not None:
        get_task_type(type_name)
    if cursor is not None and not valid_task_id(cursor):
        raise InvalidParams("The cursor is not valid; use the next_cursor of a previous page.",
                            {"cursor": "invalid"})
    limit = max(1, min(int(limit), MAX_LIMIT))
    index = keys.type_index(type_name) if type_name else keys.task_index()
    upper = f"({cursor}" if cursor else "+"
    found: list[dict] = []
    scanned = 0
    last_id: str | None = None
    exhausted = False
    while len(found) < limit and scanned < (MAX_SCAN if status else limit):
        batch_size = limit - len(found) if not status else min(max(limit * 2, 50), MAX_SCAN - scanned)
        ids = [i.decode() for i in conn.zrevrangebylex(index, upper, "-", start=0, num=batch_size)]
        if not ids:
            exhausted = True
            break
        with conn.pipeline(transaction=False) as pipe:
            for task_id in ids:
                queue_reads(pipe, task_id)
            replies = pipe.execute()
        gone = []
        for n, task_id in enumerate(ids):
            scanned += 1
            last_id = task_id
            try:
                view = build_view(conn, task_id, replies[n * READS_PER_TASK:(n + 1) * READS_PER_TASK])
            except TaskNotFound:
                gone.append(task_id)
                continue
            if status is None or view["status"] == status:
                found.append(view)
                if len(found) == limit:
                    break
        if gone:
            _unindex(conn, gone)
        upper = f"({last_id}"
    next_cursor = None
    if not exhausted and last_id is not None:
        more = conn.zrevrangebylex(index, f"({last_id}", "-", start=0, num=1)
        next_cursor = last_id if more else None
    return {"tasks": found, "next_cursor": next_cursor}


def _unindex(conn, task_ids: list[str]) -> None:
    """Drop expired tasks from the listing indexes: the main one and each registered type's.

    Only registered types can be listed, so only their indexes need it; this costs one
    round trip however many keys Redis holds (a SCAN for index keys did not).
    """
    with conn.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.task_index(), *task_ids)
        for ttype in task_types():
            pipe.zrem(keys.type_index(ttype.name), *task_ids)
        pipe.execute()


@_redis_errors
def cancel(conn: redis.Redis, task_id: str) -> dict[str, Any]:
    """Cancel a task: not yet running → canceled now; running → stopped (reads canceled)."""

    def request_cancel(pipe, job: TaskJob) -> bool:
        state = job.get_status(refresh=False)
        if state in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
            raise InvalidTransition(f"Task {task_id} has already ended ({get(conn, task_id)['status']}); "
                                    "there is nothing to cancel.")
        pipe.multi()
        pipe.set(keys.cancel_request(task_id), 1, ex=max(job.timeout or 0, 60) + 3600)
        if state == JobStatus.STARTED:
            return True  # stopped by its worker once the request is written
        job.cancel(pipeline=pipe)
        # rq keeps a job canceled before it ran forever: keep it as long as a failure
        ttl = job.failure_ttl or settings.DEFAULT_FAILURE_TTL
        pipe.expire(job.key, ttl)
        CanceledJobRegistry(job.origin, connection=conn).add(job, ttl=ttl, pipeline=pipe)
        return False

    if _change(conn, task_id, request_cancel):
        try:
            send_stop_job_command(conn, task_id, serializer=SERIALIZER)
        except InvalidJobOperation:
            pass  # it just ended; the cancel key covers a retry attempt
    return get(conn, task_id)


@_redis_errors
def retry(conn: redis.Redis, task_id: str) -> dict[str, Any]:
    """Run a failed or canceled task again under the same id, with its attempts counted afresh."""

    def requeue(pipe, job: TaskJob) -> None:
        status = get(conn, task_id)["status"]
        if status not in ("failed", "canceled"):
            raise InvalidTransition(f"Task {task_id} is {status}; only failed or canceled tasks can be retried.")
        ttype = get_task_type(job.kwargs["task_type"])
        job.retries_left = ttype.retry.max_attempts - 1 if ttype.retry.max_attempts > 1 else None
        job.started_at = job.ended_at = None
        job._exc_info = ""
        pipe.multi()
        pipe.zrem(FailedJobRegistry(job.origin, connection=conn).key, task_id)
        pipe.zrem(CanceledJobRegistry(job.origin, connection=conn).key, task_id)
        pipe.delete(keys.cancel_request(task_id), keys.crash_count(task_id), keys.outputs(task_id))
        pipe.hset(job.key, "meta", SERIALIZER.dumps({"progress": None}))
        pipe.hdel(job.key, "retries_left")
        pipe.persist(job.key)
        queue(conn, job.origin).enqueue_job(job, pipeline=pipe)

    _change(conn, task_id, requeue)
    return get(conn, task_id)


@_redis_errors
def delete(conn: redis.Redis, task_id: str) -> None:
    """Remove a task that is not running, with its result, files and index entries."""

    def remove(pipe, job: TaskJob) -> tuple[list[bytes], dict]:
        if job.get_status(refresh=False) == JobStatus.STARTED:
            raise InvalidTransition(f"Task {task_id} is running; cancel it first, then delete it.")
        outputs = list(conn.hgetall(keys.outputs(task_id)).values())
        params = (job.kwargs or {}).get("params") or {}
        pipe.multi()
        job.delete(pipeline=pipe)
        pipe.delete(keys.outputs(task_id), keys.cancel_request(task_id), keys.crash_count(task_id))
        pipe.zrem(keys.task_index(), task_id)
        pipe.zrem(keys.type_index(job.kwargs.get("task_type", "")), task_id)
        if job.meta.get("idempotency_key"):
            pipe.eval(_RELEASE, 1, keys.idempotency(job.meta["idempotency_key"]), task_id)
        return outputs, params

    outputs, params = _change(conn, task_id, remove)
    for raw in outputs:
        files.delete_file(conn, json.loads(raw)["id"])
    for ref in _file_refs(params).values():
        files.delete_file(conn, ref["id"])
