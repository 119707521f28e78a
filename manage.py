#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.10+.

    python3 manage.py start   # install into .venv, then run embedded Redis + worker + web
    python3 manage.py test    # install into .venv, then run the test suite

Only the standard library is used here: this script makes the virtualenv that
everything else runs in. It reinstalls requirements only when requirements.txt changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("JOBS_VENV", ROOT / ".venv"))
REQUIREMENTS = ROOT / "requirements.txt"


def venv_python() -> Path:
    """The virtualenv's interpreter (POSIX or Windows layout)."""
    posix = VENV / "bin" / "python"
    return posix if posix.exists() or os.name != "nt" else VENV / "Scripts" / "python.exe"


def ensure_venv() -> Path:
    """Create .venv and install requirements.txt into it, unless already up to date."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python 3.10 or newer is needed (this is {sys.version.split()[0]}).")
    if not venv_python().exists():
        print(f"Creating a virtualenv in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if not stamp.exists() or stamp.read_text().strip() != digest:
        print("Installing requirements (first run takes a minute) ...", flush=True)
        python = str(venv_python())
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(digest)
    return venv_python()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "start":
        python = ensure_venv()
        os.chdir(ROOT)
        os.execv(str(python), [str(python), "-m", "webapp.dev", *argv[1:]])
    if command == "test":
        python = ensure_venv()
        os.chdir(ROOT)
        return subprocess.call([str(python), "-m", "pytest", *argv[1:]])
    print(__doc__.strip())
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
