"""How the composition root meets Flask: :func:`init_app` is the one entry that attaches
the wiring, the runtime, the password hasher, metrics (with the domains' gauges) to an
application. Views reach the wiring through :func:`wiring` and the Runtime through
:func:`runtime` (defined here only).
"""

from __future__ import annotations

from flask import Flask, Response, after_this_request, current_app
from sqlalchemy.orm import Session

from api import jobs
from api.accounts import Passwords
from api.metrics import Metrics
from api.runtime import Runtime
from api.wiring.root import Wiring

KEY = "tawqi.wiring"


def init_app(app: Flask, found: Wiring) -> None:
    """Attach ``found`` and the Flask extensions built from it (once per application)."""
    rt = found.runtime
    settings = rt.settings
    app.extensions[KEY] = found
    app.extensions["tawqi.passwords"] = Passwords(settings.argon2_time_cost,
                                                  settings.argon2_memory_kib)
    metrics = Metrics(rt)
    app.extensions["tawqi.metrics"] = metrics
    jobs.register_metrics(metrics)
    metrics.install(app)
    register_gauges(metrics, rt)


def wiring(app: Flask | None = None) -> Wiring:
    """The composition root of the current (or given) application."""
    found: Wiring = (app or current_app).extensions[KEY]
    return found


def runtime(app: Flask | None = None) -> Runtime:
    """The Runtime of the current app (for views only; services never see it)."""
    return wiring(app).runtime


def load_authority_first() -> None:
    """``prepare=`` hook of operations that sign with the CA: load its keys before the
    request's transaction opens, and anchor the audit log once the operation committed."""
    wiring().authority()
    after_this_request(_anchor_after_ca_operation)


def _anchor_after_ca_operation(response: Response) -> Response:
    """Runs after the request's unit of work committed (never on a failed operation)."""
    if response.status_code < 400:
        from api.audit_anchor import anchor_quietly

        found = wiring()
        anchor_quietly(found.runtime, authority=found.authority())
    return response


def register_gauges(metrics: Metrics, rt: Runtime) -> None:
    """The domains' figures published at each scrape (a new gauge goes here)."""
    from delivery import outbox
    from pki import queries

    def depth(session: Session) -> dict[tuple[str, ...], float]:
        s = outbox.stats(session)
        return {("pending",): s.pending, ("sending",): s.sending, ("dead",): s.dead}

    metrics.add_gauge_source("tawqi_outbox_messages", "Notifications in the outbox by status "
                             "(pending + sending = depth)", ("status",), depth)

    def by_purpose(session: Session) -> dict[tuple[str, ...], float]:
        figures: dict[tuple[str, ...], float] = {}
        for f in outbox.stats_by_purpose(session):
            figures[("pending", f.purpose)] = f.pending
            figures[("dead", f.purpose)] = f.dead
        return figures

    metrics.add_gauge_source("tawqi_outbox_purpose_messages", "Notifications waiting (pending "
                             "or being sent) and dead, by purpose (template)",
                             ("status", "purpose"), by_purpose)

    def oldest(session: Session) -> dict[tuple[str, ...], float]:
        alarm = outbox.alert(session, rt.clock,
                             threshold_minutes=rt.settings.outbox_alert_age_minutes)
        return {(): alarm.oldest_pending_minutes * 60}

    metrics.add_gauge_source("tawqi_outbox_oldest_pending_age_seconds", "Age of the oldest "
                             "notification not yet sent (0 when none waits)", (), oldest)

    def alerting(session: Session) -> dict[tuple[str, ...], float]:
        alarm = outbox.alert(session, rt.clock,
                             threshold_minutes=rt.settings.outbox_alert_age_minutes)
        return {(): 1.0 if alarm.raised else 0.0}

    metrics.add_gauge_source("tawqi_outbox_alert", "1 when a notification waits longer than "
                             "TAWQI_OUTBOX_ALERT_AGE_MINUTES or some are dead", (), alerting)

    def by_status(session: Session) -> dict[tuple[str, ...], float]:
        return {key: float(n)
                for key, n in queries.counts_by_profile_and_status(session).items()}

    metrics.add_gauge_source("tawqi_certificates", "Certificates in the registry",
                             ("profile", "status"), by_status)

    # The operations gauges of issue 15 (each job's last success is api/jobs.py's).
    from delivery import pins

    def crl_next_update(session: Session) -> dict[tuple[str, ...], float]:
        return {(str(authority),): at.timestamp()
                for authority, at in queries.crl_next_updates(session).items()}

    def expiring(session: Session) -> dict[tuple[str, ...], float]:
        now = rt.clock.now()
        return {(str(days),): float(queries.count_expiring(session, now, days))
                for days in rt.settings.expiry_warning_thresholds}

    def lockouts(session: Session) -> dict[tuple[str, ...], float]:
        return {(): float(pins.count_locked_tokens(session, rt.settings.pin_max_attempts))}

    metrics.add_gauge_source("tawqi_crl_next_update_timestamp_seconds", "nextUpdate of each "
                             "CA's newest CRL (Unix time)", ("authority",), crl_next_update)
    metrics.add_gauge_source("tawqi_certificates_expiring", "Issued certificates whose "
                             "notAfter is within the given days", ("days",), expiring)
    metrics.add_gauge_source("tawqi_token_lockouts", "Tokens locked after "
                             "TAWQI_PIN_MAX_ATTEMPTS wrong PINs", (), lockouts)


__all__ = ["KEY", "init_app", "load_authority_first", "register_gauges", "runtime", "wiring"]
