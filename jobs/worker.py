"""The rq worker class the Procfile runs: `rq worker -w jobs.worker.TaskWorker`.

It is rq's HerokuWorker (a SIGTERM lets the running task finish or fail cleanly
within the platform's grace period) with the job core's choices built in, so a
command line that forgets `-j`/`-S` still gets them right:
- jobs are TaskJob and JSON-serialized;
- a task's lease is refreshed every JOBS_HEARTBEAT_INTERVAL seconds and every
  worker, idle or busy, reaps lost tasks every JOBS_REAP_INTERVAL seconds (rq:
  minutes, and only between jobs);
- every process a worker forks (task processes, rq's scheduler) dies with it (no orphan keeps running
  unseen while the task is requeued elsewhere).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import redis
from rq import Queue, worker_registration
from rq.utils import now
from rq.worker import HerokuWorker

from . import settings
from .connection import SERIALIZER
from .embedded import parent_death_signal
from .files import check_store
from .processor import TIME_LIMIT_EXIT_CODE
from .reaper import lost_message, reap_lost_tasks, should_requeue, trim_canceled
from .registry import preload_modules
from .rqjob import TaskJob

HORSE_DIED = "Work-horse terminated unexpectedly"
SHUT_DOWN = "ShutDownImminentException"
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _after(seconds: float, func, *args) -> None:
    """Call func(*args) in `seconds` from a daemon thread (signal timers belong to the task's time limit)."""
    timer = threading.Timer(seconds, func, args)
    timer.daemon = True
    timer.start()


#: Longest Redis outage a task process waits out when its run ends, to record the outcome.
OUTAGE_WAIT = 60.0


def _waiting_out_outages(call, *args):
    """call(*args), retried with back-off while Redis is unreachable (up to OUTAGE_WAIT seconds).

    A run that ends during a short outage still gets its outcome recorded; whoever
    settles the task first (this run, or the reaper once the lease passed) wins.
    """
    deadline = time.monotonic() + OUTAGE_WAIT
    delay = 0.2
    while True:
        try:
            return call(*args)
        except REDIS_ERRORS:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


_children_die_with_worker = False


def _make_children_die_with_worker() -> None:
    """Every process a worker forks (task processes, rq's scheduler) dies with it: no orphan runs on unseen."""
    global _children_die_with_worker
    if not _children_die_with_worker:
        os.register_at_fork(after_in_child=lambda: parent_death_signal(signal.SIGKILL))
        _children_die_with_worker = True


class TaskWorker(HerokuWorker):
    """HerokuWorker with JSON jobs, short leases and a fast lost-task reaper."""

    #: Seconds a running task gets after SIGTERM before it is stopped (Heroku kills at 30).
    imminent_shutdown_delay = settings.SHUTDOWN_GRACE

    #: An idle worker retries an unreachable Redis at most this many seconds apart (rq: 60),
    #: so tasks submitted once Redis is back start within seconds.
    max_connection_wait_time = 5.0

    def __init__(self, queues, *args, **kwargs):
        kwargs["job_class"] = TaskJob
        kwargs["serializer"] = SERIALIZER
        kwargs["job_monitoring_interval"] = settings.HEARTBEAT_INTERVAL
        connection = kwargs.get("connection")
        names = [q.name if isinstance(q, Queue) else q for q in ([queues] if isinstance(queues, (str, Queue)) else queues)]
        queues = [Queue(name, connection=connection, job_class=TaskJob, serializer=SERIALIZER) for name in names]
        super().__init__(queues, *args, **kwargs)
        self._last_reaped = None
        self._horse_status: int | None = None
        _make_children_die_with_worker()
        check_store()
        preload_modules()

    @property
    def dequeue_timeout(self) -> int:
        return settings.REAP_INTERVAL

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return settings.HEARTBEAT_INTERVAL + settings.LOST_AFTER

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return self._reap_due() or super().should_run_maintenance_tasks

    def _reap_due(self) -> bool:
        return self._last_reaped is None or now() - self._last_reaped > timedelta(seconds=settings.REAP_INTERVAL)

    def _reap(self) -> None:
        reap_lost_tasks(self.connection, self.queue_names())
        trim_canceled(self.connection, self.queue_names())
        self._restart_dead_scheduler()
        self._register_again_if_forgotten()
        self._last_reaped = now()

    def _register_again_if_forgotten(self) -> None:
        """Redis restarted without its data: register again, or health checks and the dashboard see no worker."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.sismember(worker_registration.REDIS_WORKER_KEYS, self.key)
            pipe.hexists(self.key, "birth")
            if all(pipe.execute()):
                return
        self.log.warning("Worker %s: Redis lost this worker's registration (restarted without its data?); "
                         "registering again", self.name)
        self.connection.delete(self.key)  # only the heartbeat's partial hash is left
        self.register_birth()

    def run_maintenance_tasks(self):
        try:
            if self._reap_due():
                self._reap()
            if super().should_run_maintenance_tasks:
                super().run_maintenance_tasks()
        except REDIS_ERRORS as exc:
            self.log.warning("Worker %s: maintenance skipped, Redis unavailable (%s)", self.name, exc)

    def _restart_dead_scheduler(self) -> None:
        """rq's scheduler process dies on a Redis error; rq restarts it only every 10 minutes."""
        if self._stop_requested:
            return
        if self.scheduler and (not self.scheduler._process or not self.scheduler._process.is_alive()):
            self.scheduler.acquire_locks(auto_start=True)

    def maintain_heartbeats(self, job, execution):
        """Runs every JOBS_HEARTBEAT_INTERVAL while a task runs.

        A missed heartbeat during a Redis outage must not end the worker: the task
        keeps running. A busy worker also reaps, so a lost task is settled even
        when every other worker is busy with long tasks.
        """
        try:
            super().maintain_heartbeats(job, execution)
            if self._reap_due():
                self._reap()
        except REDIS_ERRORS as exc:
            self.log.warning("Worker %s: heartbeat for task %s missed, Redis unavailable (%s)", self.name, job.id, exc)

    def execute_job(self, job, queue):
        """Survive a Redis outage around a task: wait for Redis; the reaper settles the task's record."""
        try:
            super().execute_job(job, queue)
        except REDIS_ERRORS as exc:
            self.log.error("Worker %s: Redis failed around task %s (%s); waiting for it", self.name, job.id, exc)
            if self._horse_pid:
                self.kill_horse()
                self.wait_for_horse()
                self._horse_pid = 0
            self._wait_for_redis()

    def _wait_for_redis(self) -> None:
        delay = 0.5
        while not self._stop_requested:
            try:
                self.connection.ping()
                return
            except REDIS_ERRORS:
                time.sleep(delay)
                delay = min(delay * 2, self.max_connection_wait_time)

    def _owns(self, job) -> bool:
        """True while the task's record still says this worker runs it.

        A worker frozen past its lease (VM pause, swap storm) finds its task settled
        by the reaper, or running elsewhere: it must not overwrite that outcome. A
        task deleted just as this worker took it off the queue left only the few
        fields rq wrote when the run started: those are removed, so it stays deleted.
        """
        created, status, worker = _waiting_out_outages(self.connection.hmget, job.key, "created_at", "status",
                                                       "worker_name")
        if created is None:
            self.connection.delete(job.key)
            return False
        return status == b"started" and (worker or b"").decode() == self.name

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        """The run ended (rq's first write then): wait out a short Redis outage, so its outcome is recorded."""
        _waiting_out_outages(super().handle_execution_ended, job, queue, heartbeat_ttl)

    def handle_job_success(self, job, queue, started_job_registry, execution):
        if not self._owns(job):
            self.log.warning("Worker %s: task %s was settled elsewhere; dropping this run's result", self.name, job.id)
            return
        super().handle_job_success(job, queue, started_job_registry, execution)

    def request_stop_sigrtmin(self, signum, frame):
        """In the task process, after its worker's SIGTERM: stop the task JOBS_SHUTDOWN_GRACE seconds later.

        rq's HerokuWorker times the grace with SIGALRM, which replaces the task's own
        time limit (a task past its limit would then run on through the grace). Here a
        thread times it, so both hold; a task that swallows the shutdown exception is
        killed JOBS_TIME_LIMIT_GRACE seconds after it.
        """
        if self.imminent_shutdown_delay == 0:
            return self.request_force_stop_sigrtmin(signum, frame)
        self.log.warning("Imminent shutdown: stopping the task in %d seconds", self.imminent_shutdown_delay)
        signal.signal(signal.SIGRTMIN, self.request_force_stop_sigrtmin)
        _after(self.imminent_shutdown_delay, os.kill, os.getpid(), signal.SIGRTMIN)

    def request_force_stop_sigrtmin(self, signum, frame):
        _after(settings.TIME_LIMIT_GRACE, os._exit, 1)  # the worker then settles it as worker_lost
        super().request_force_stop_sigrtmin(signum, frame)

    def _handle_stopped_job(self, job, queue, execution):
        """rq leaves a stopped job without an end time; a canceled task has one."""
        job.ended_at = now()
        super()._handle_stopped_job(job, queue, execution)

    def _settle_lost(self, job) -> None:
        """Requeue a rerun-safe task (a crash re-run is not a new attempt); fail any other."""
        if should_requeue(self.connection, job):
            job.retries_left = (job.retries_left or 0) + 1
        else:
            job.retries_left = 0

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        self._horse_status = ret_val
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        """A task process that died under a live worker is settled like a lost worker's task."""
        status, self._horse_status = self._horse_status, None
        if not self._owns(job):
            self.log.warning("Worker %s: task %s was settled elsewhere; dropping this run's failure", self.name, job.id)
            return
        killed_for_time = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == TIME_LIMIT_EXIT_CODE
        if killed_for_time:
            exc_string = "TimeLimitExceeded: the task ignored its time limit and was killed"
        elif exc_string.startswith(HORSE_DIED) and self._stopped_job_id != job.id:
            self._settle_lost(job)
            exc_string = lost_message(f"the process running it died ({exc_string.strip().rstrip(';')})")
        elif SHUT_DOWN in exc_string:
            self._settle_lost(job)
            exc_string = lost_message("its worker was shut down (a deploy or restart) while it ran")
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                   exc_string=exc_string, execution=execution)
