"""The Flask application factory."""

from __future__ import annotations

import importlib
from typing import Any

from flask import Flask, Response, current_app, json

from api.blueprints import BLUEPRINT_MODULES
from api.runtime import Runtime
from core.config import Settings
from core.errors import TawqiError

PROBLEM_BASE = "https://tawqi.ma/problems/"


def problem(status: int, type_: str, title: str, detail: str, **extras: Any) -> Response:
    """An RFC 9457 problem response."""
    body = {"type": PROBLEM_BASE + type_, "title": title, "status": status,
            "detail": detail, **extras}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def runtime() -> Runtime:
    """The Runtime of the current app (for views only; services never see it)."""
    rt: Runtime = current_app.extensions["tawqi"]
    return rt


def create_app(settings: Settings | None = None, *, rt: Runtime | None = None) -> Flask:
    settings = settings or (rt.settings if rt else Settings.from_env())
    rt = rt or Runtime(settings)
    app = Flask("tawqi")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.extensions["tawqi"] = rt
    for name in BLUEPRINT_MODULES:
        app.register_blueprint(importlib.import_module(name).bp)

    @app.errorhandler(TawqiError)
    def _domain_error(exc: TawqiError) -> Response:
        return problem(exc.status, exc.type, exc.title, exc.detail, **exc.extras)

    return app
