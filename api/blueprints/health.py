"""Liveness, readiness and metrics: what a load balancer and Prometheus ask."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from flask import Response, current_app
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


@bp.operation("GET", "/readyz", action=None, response=Readiness,
              summary="Readiness: the database answers and the PKCS#11 module loads",
              errors=(503,))
def readyz(call: Call) -> Response | Readiness:
    checks = []
    for name, probe in (("database", _database), ("pkcs11", _token_module)):
        started = time.perf_counter()
        try:
            detail = probe(call.runtime)
        except Exception as exc:  # any failure means not ready; say which, not why inside
            detail = f"{type(exc).__name__}: unavailable"
        checks.append(Check(name, not detail, detail, round(time.perf_counter() - started, 4)))
    ready = all(c.ok for c in checks)
    result = Readiness("ready" if ready else "not-ready", checks)
    if ready:
        return result
    failed = ", ".join(c.name for c in checks if not c.ok)
    return problem(503, "not-ready", "Not ready", f"failing checks: {failed}",
                   headers={"Retry-After": "5"}, extras={"checks": dump(checks)})


@bp.operation("GET", "/metrics", action=None, summary="Prometheus metrics",
              produces={"text/plain": {"type": "string"}})
def metrics(call: Call) -> Response:
    found: Metrics = current_app.extensions["tawqi.metrics"]
    return found.exposition()
