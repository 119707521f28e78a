"""The web app: JSON API, HTML pages and rq-dashboard over the job core.

`create_app(config)` is the only way in: defaults, then the environment, then
`config`. It builds one Redis client (no I/O until the first request) and keeps
it in `app.extensions["jobs_redis"]`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

import jobs
from jobs.files import check_store
from jobs.settings import SettingsError

from . import config as settings
from .config import ConfigError
from .requests import AppRequest
from .slowbody import BodyDeadline

__all__ = ["ConfigError", "create_app"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; raises ConfigError naming the setting to fix."""
    from . import api, dashboard, errors, health, pages, security

    app = Flask(__name__)
    app.request_class = AppRequest
    app.json.sort_keys = False  # views keep their documented field order, and sorting costs time per response
    app.config.update(settings.load(config))
    try:
        jobs.task_types()  # import JOBS_TASK_MODULES now: a typo stops the start, not every submit
        check_store()  # likewise a JOBS_FILE_STORE folder that cannot hold files
    except (ImportError, SettingsError) as exc:
        raise ConfigError(str(exc)) from None
    app.extensions["jobs_redis"] = jobs.connect(app.config["REDIS_URL"])
    errors.register(app)
    security.init(app)
    app.register_blueprint(api.bp)
    security.csrf.exempt(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    dashboard.mount(app)
    app.wsgi_app = BodyDeadline(app.wsgi_app, app.config["BODY_TIMEOUT"], app.config["BODY_IDLE_TIMEOUT"])
    return app
