"""Liveness, readiness and metrics: what a load balancer and Prometheus ask."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Literal

from flask import Response, current_app, request
from sqlalchemy import text

from api.metrics import Metrics
from api.problems import problem
from api.routing import ApiBlueprint, Call
from api.runtime import Runtime
from api.schema import dump, rule

bp = ApiBlueprint("health", __name__, tag="Health",
                  description="Liveness, readiness and Prometheus metrics.")

PROBE_LABEL = "tawqi-readyz-probe"


@dataclass(frozen=True)
class Liveness:
    status: Literal["ok"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = field(metadata=rule(description="Why the check failed; empty when ok."))
    seconds: float


@dataclass(frozen=True)
class Readiness:
    status: Literal["ready", "not-ready"]
    checks: list[Check]


@bp.operation("GET", "/healthz", action=None, response=Liveness,
              summary="Liveness: the process answers")
def healthz(call: Call) -> Liveness:
    return Liveness("ok")


def _database(rt: Runtime) -> str:
    with rt.unit_of_work() as session:
        session.execute(text("SELECT 1"))
    return ""


def _token_module(rt: Runtime) -> str:
    # Loads the PKCS#11 module (first time in this process) and lists its tokens.
    rt.tokens().token_exists(PROBE_LABEL)
    return ""


def _ca_token(rt: Runtime) -> str:
    """The CA's keys are loaded and their token logged in (loaded again, with a login, when
    the login was lost: a token server that restarted). Skipped without a service PIN."""
    if not rt.settings.service_pin:
        return ""
    from api.wiring.flaskapp import wiring

    if wiring().load_authority() is None or \
            not rt.tokens().logged_in(rt.settings.ca_token_label):
        return "the CA token is not logged in"
    return ""


def _revocation_data(rt: Runtime) -> str:
    from pki import queries

    with rt.unit_of_work() as session:
        return "; ".join(queries.stale_revocation_data(session, rt.clock.now()))


def _outbox(rt: Runtime) -> str:
    from delivery import outbox

    with rt.unit_of_work() as session:
        alarm = outbox.alert(session, rt.clock,
                             threshold_minutes=rt.settings.outbox_alert_age_minutes)
    if alarm.oldest_pending_minutes > rt.settings.outbox_alert_age_minutes:
        return f"a notification waits for {alarm.oldest_pending_minutes:.0f} minutes"
    return ""


PROBES = (("database", _database), ("pkcs11", _token_module), ("ca-token", _ca_token),
          ("crl-ocsp", _revocation_data), ("outbox", _outbox))


@bp.operation("GET", "/readyz", action=None, response=Readiness,
              summary="Readiness: the database, the token module, a login on the CA "
                      "token, CRL and OCSP freshness, the outbox's age",
              errors=(503,))
def readyz(call: Call) -> Response | Readiness:
    checks: list[Check] = []
    for name, probe in PROBES:
        started = time.perf_counter()
        try:
            detail = probe(call.runtime)
        except Exception as exc:  # any failure means not ready; say which, not why inside
            detail = f"{type(exc).__name__}: unavailable"
        if detail and name in ("crl-ocsp", "outbox") and not checks[0].ok:
            detail = "unknown: the database is unavailable"
        checks.append(Check(name, not detail, detail, round(time.perf_counter() - started, 4)))
    ready = all(c.ok for c in checks)
    result = Readiness("ready" if ready else "not-ready", checks)
    if ready:
        return result
    failed = ", ".join(c.name for c in checks if not c.ok)
    return problem(503, "not-ready", "Not ready", f"failing checks: {failed}",
                   headers={"Retry-After": "5"}, extras={"checks": dump(checks)})


@bp.operation("GET", "/metrics", action=None, summary="Prometheus metrics",
              produces={"text/plain": {"type": "string"}}, errors=(401,))
def metrics(call: Call) -> Response:
    """With TAWQI_METRICS_TOKEN set, only ``Authorization: Bearer <that token>``."""
    expected = call.settings.metrics_token
    if expected:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return problem(401, "metrics-token", "Metrics token required",
                           "GET /metrics needs the bearer token of TAWQI_METRICS_TOKEN",
                           headers={"WWW-Authenticate": "Bearer"})
    found: Metrics = current_app.extensions["tawqi.metrics"]
    return found.exposition()
