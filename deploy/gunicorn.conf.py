"""Gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``.

Each worker is a separate process that builds its own app after the fork (no ``preload_app``),
so the PKCS#11 module is initialised in the worker and never shared across a fork. With
SoftHSM2 (the embedded default) the workers reach it through one token server that the master
starts (``on_starting``), never each its own copy (see docs/hsm.md). Workers
are synchronous: python-pkcs11 calls are serialised in-process (see docs/hsm.md), so the
service scales with processes, not threads. Override with GUNICORN_CMD_ARGS or with
GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_TIMEOUT (not TAWQI_*: the service refuses unknown
TAWQI_ variables at start-up).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("GUNICORN_WORKERS",
                             str(min(2 * multiprocessing.cpu_count() + 1, 9))))
worker_class = "sync"
threads = 1
preload_app = False
# A signature or a token personalisation may take a few seconds on a network HSM.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (bounded memory growth), staggered.
max_requests = 2000
max_requests_jitter = 200
# Request line and header limits (the body limit is TAWQI_MAX_UPLOAD_MB, in the app).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("TAWQI_LOG_LEVEL", "info").lower()
# No query strings in the access log: they never carry secrets, but keep the log lean.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms "%({x-request-id}o)s"'
# TAWQI_LOG_FORMAT=json: gunicorn's own lines (errors, access) as JSON too (core/logs.py).
if os.environ.get("TAWQI_LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "core.logs.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stderr"}},
        "root": {"level": loglevel.upper(), "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["console"],
                               "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"],
                                "propagate": False},
        },
    }
# Behind a reverse proxy, trust its X-Forwarded-* (also set TAWQI_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")


# The master starts the token server before the workers fork (TAWQI_PKCS11_SERVER=auto with
# SoftHSM2), so that all workers reach one token state; it ends it on exit if it started it.
_token_server_pid_file: Any = None


def on_starting(server: Any) -> None:
    global _token_server_pid_file
    from api.runtime import start_token_server
    from core.config import Settings

    _token_server_pid_file = start_token_server(Settings.from_env())


def on_exit(server: Any) -> None:
    if _token_server_pid_file is not None:
        from hsm.server import stop_server

        stop_server(_token_server_pid_file)


def post_worker_init(worker: Any) -> None:
    """The app is built: what exists now (modules, settings, the wiring) lives as long as
    the worker, so the garbage collector stops scanning it (gc.freeze); its full
    collections then walk a request's objects only, not the whole process."""
    import gc

    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """With several workers, Prometheus metrics are aggregated through the directory named
    by PROMETHEUS_MULTIPROC_DIR; a dead worker's live gauges are dropped."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
