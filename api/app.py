"""The Flask application factory.

``create_app(settings=None)`` builds one application over one :class:`~api.runtime.Runtime`
(settings, database, token layer, clock): the blueprints of ``BLUEPRINT_MODULES``, RFC 9457
problem responses for every error, security headers, CORS (off unless
``TAWQI_CORS_ORIGINS`` names origins), a body size limit, Prometheus metrics and the
OpenAPI document.
"""

from __future__ import annotations

import importlib
import logging
import secrets
from pathlib import Path
from types import ModuleType

from flask import Blueprint, Flask, Response, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix

from api import problems
from api.blueprints import BLUEPRINT_MODULES
from api.bodies import BoundedRequest
from api.problems import PROBLEM_BASE, problem
from api.ratelimit import limit_of, login_policy
from api.routing import BoundedIntConverter, IdConverter
from api.runtime import Runtime
from api.wiring import Wiring
from api.wiring.flaskapp import init_app, runtime
from core.config import Settings
from core.errors import ConfigurationError

__all__ = ["PROBLEM_BASE", "create_app", "problem", "runtime"]

log = logging.getLogger("tawqi.api")

# Strict by default: JSON needs none of these; the docs page relaxes style-src with a nonce.
CSP = ("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
CORS_EXPOSED_HEADERS = "Location, Retry-After, Idempotent-Replayed, X-Request-Id"


def check_settings(settings: Settings) -> None:
    """Refuse at start-up what the API cannot run with."""
    for kind in ("auth", "pin", "otp", "client"):
        limit_of(settings, kind)
    login_policy(settings)
    for name in ("max_json_kb", "max_upload_mb", "session_ttl_minutes",
                 "idempotency_ttl_hours", "argon2_time_cost", "argon2_memory_kib",
                 "verify_fetch_timeout_seconds", "verify_fetch_max_kb",
                 "verify_fetch_max_requests"):
        if getattr(settings, name) < 1:
            raise ConfigurationError(f"TAWQI_{name.upper()} must be at least 1")
    if settings.trusted_proxies < 0:
        raise ConfigurationError("TAWQI_TRUSTED_PROXIES cannot be negative")
    for origin in cors_origins(settings):
        if origin == "*" or not origin.startswith(("https://", "http://")):
            raise ConfigurationError("TAWQI_CORS_ORIGINS lists exact origins such as "
                                     "https://permis.example.ma; '*' is refused")


def cors_origins(settings: Settings) -> set[str]:
    return {o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()}


def create_app(settings: Settings | None = None, *, rt: Runtime | None = None,
               wiring: Wiring | None = None) -> Flask:
    """The application over ``wiring`` (the composition root; built from ``rt`` or
    ``settings`` when not given)."""
    rt = wiring.runtime if wiring is not None else rt
    settings = settings or (rt.settings if rt else Settings.from_env())
    check_settings(settings)
    if settings.log_format == "json":
        _install_json_logging(settings)
    rt = rt or Runtime(settings)
    wiring = wiring or Wiring(rt)
    app = Flask("tawqi", root_path=str(Path(__file__).resolve().parent))
    app.request_class = BoundedRequest  # chunked bodies over the limit: 413, not truncated
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        JSON_SORT_KEYS=False,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    init_app(app, wiring)
    problems.install(app)
    _install_headers(app, cors_origins(settings))
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["int"] = BoundedIntConverter
    for name in BLUEPRINT_MODULES:
        app.register_blueprint(assemble(importlib.import_module(name)))
    return app


def assemble(module: ModuleType) -> Blueprint:
    """The blueprint of one module of ``BLUEPRINT_MODULES``: its ``bp``, or, for a package
    of resource modules (``RESOURCES``), a new ``blueprint()`` to which each resource
    module's ``routes`` are added here, in order (no module registers on another's
    blueprint by being imported)."""
    resources = getattr(module, "RESOURCES", None)
    if resources is None:
        bp: Blueprint = module.bp
        return bp
    built = module.blueprint()
    for resource in resources:
        importlib.import_module(f"{module.__name__}.{resource}").routes.register(built)
    return built


class _RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record handled during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id", "")
        return True


def _install_json_logging(settings: Settings) -> None:
    """TAWQI_LOG_FORMAT=json: JSON lines on the root logger's handlers (one installed if
    there is none), each with the request id."""
    from core.logs import configure, formatter

    configure(settings.log_level, "json")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter("json"))
        if not any(isinstance(f, _RequestIdFilter) for f in handler.filters):
            handler.addFilter(_RequestIdFilter())


def _install_headers(app: Flask, origins: set[str]) -> None:
    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        if 8 <= len(incoming) <= 64 and incoming.replace("-", "").isalnum():
            g.request_id = incoming
        else:
            problems.request_id()

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", CSP)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security",
                                        "max-age=63072000; includeSubDomains")
        if "Authorization" in request.headers:
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Request-Id"] = problems.request_id()
        origin = request.headers.get("Origin", "").rstrip("/")
        if origins and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
            response.vary.add("Origin")
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = \
                    response.headers.get("Allow", "GET, POST, PUT, PATCH, DELETE")
                response.headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        return response
