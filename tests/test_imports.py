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
