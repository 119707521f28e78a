"""CSRF on every HTML form POST, and security headers on every response.

Our pages run no inline script: CSP `script-src 'self'`. rq-dashboard's pages are
built on inline scripts and underscore templates (compiled with `new Function`),
so under /rq only, scripts may also be inline or eval'd. That area is behind HTTP
basic auth, but it does show user-supplied text (task errors, params, progress
messages, results), so the CSP cannot stop markup in it from running: the
dashboard's templates are served with every value HTML-escaped instead (see
webapp/dashboard.py).
"""

from __future__ import annotations

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DASHBOARD_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
                 "style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                 "form-action 'self'; frame-ancestors 'none'")

csrf = CSRFProtect()


def add_headers(response):
    """Headers that make the browser refuse injected script, framing and type sniffing."""
    dashboard = request.path == "/rq" or request.path.startswith("/rq/")
    response.headers.setdefault("Content-Security-Policy", DASHBOARD_CSP if dashboard else CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return response


def init(app: Flask) -> None:
    """CSRF for forms (the JSON API and the dashboard are exempted by their blueprints)."""
    csrf.init_app(app)
    app.after_request(add_headers)
