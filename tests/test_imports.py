"""The dependency rule: `jobs` never pulls in Flask or the web app."""

import subprocess
import sys

from tests.conftest import ROOT


def test_import_jobs_loads_neither_flask_nor_webapp():
    code = ("import sys, jobs, jobs.worker, jobs.processor, jobs.tasks; "
            "bad = [m for m in sys.modules if m == 'flask' or m.startswith(('flask.', 'webapp'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_jobs_opens_no_connection():
    code = ("import socket; real = socket.socket.connect\n"
            "def refuse(*a, **k): raise SystemExit('connected at import')\n"
            "socket.socket.connect = refuse\n"
            "import jobs, jobs.worker, jobs.tasks\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workers_preload_heavy_engines_and_the_web_app_does_not(redis_url):
    code = ("import sys, jobs, redis; from jobs.worker import TaskWorker\n"
            f"TaskWorker(['default'], connection=redis.Redis.from_url({redis_url!r}))\n"
            "assert 'pyarrow' in sys.modules, 'worker did not preload the csv engine'\n"
            "from webapp import create_app\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    web = ("import sys; from webapp import create_app; import jobs; jobs.task_types()\n"
           "create_app({'SECRET_KEY': 'x', 'TESTING': True})\n"
           "assert 'pyarrow' not in sys.modules, 'the web process loaded pyarrow'\n")
    result = subprocess.run([sys.executable, "-c", web], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
