"""The periodic jobs of ``tawqi worker``: the registry, wired from domain functions.

Each job is a domain function called with a session, the clock and plain values from the
settings; :class:`core.scheduler.Scheduler` runs it once per period however many workers
tick (a lease on its ``scheduler_job`` row). Every job decides from the database what is
due, so an extra run (by hand, or after a lost lease) does no harm.

- ``crl-republish`` (``TAWQI_JOB_CRL_REPUBLISH_SECONDS``): a new CRL once the latest is past
  half its validity;
- ``ocsp-resign`` (``TAWQI_JOB_OCSP_RESIGN_SECONDS``): renew the OCSP responder certificate
  at two thirds of its life, re-sign the answers past half theirs (all after a renewal),
  and rewrite the static export in ``TAWQI_OCSP_EXPORT_DIR`` when set;
- ``expiry-warnings`` (``TAWQI_JOB_EXPIRY_WARNINGS_SECONDS``): warn holder and contact at
  ``TAWQI_EXPIRY_WARNING_DAYS`` before ``notAfter``;
- ``handover-reminders`` (``TAWQI_JOB_HANDOVER_REMINDERS_SECONDS``): remind contacts of the
  tokens overdue for hand-over;
- ``envelope-purge`` (``TAWQI_JOB_ENVELOPE_PURGE_SECONDS``): erase undeliverable PIN and code
  envelopes after ``TAWQI_ENVELOPE_RETENTION_DAYS``;
- ``audit-anchor`` (``TAWQI_AUDIT_ANCHOR_SECONDS``): time-stamp the audit head into the
  anchor store;
- ``idempotency-purge`` (``TAWQI_JOB_IDEMPOTENCY_PURGE_SECONDS``): delete the idempotency
  records older than ``TAWQI_IDEMPOTENCY_TTL_HOURS``;
- ``rate-counter-purge`` (``TAWQI_JOB_RATE_COUNTER_PURGE_SECONDS``): delete the rate-limit
  counters older than ``TAWQI_RATE_COUNTER_RETENTION_HOURS``.

Jobs that sign with the service token (CRL, OCSP, anchoring) are skipped with a warning
when ``TAWQI_SERVICE_PIN`` is not set. To add a job, add a :class:`JobDefinition` to
:data:`JOBS` (and its period setting to ``core/config.py`` and the README).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from api.runtime import Runtime
from core.scheduler import JobSkipped, JobSpec, Scheduler, job_states

if TYPE_CHECKING:
    from api.metrics import Metrics
    from pki.authority import Authority

log = logging.getLogger("tawqi.jobs")

ACTOR = "system:scheduler"


@dataclass(frozen=True)
class JobDefinition:
    name: str
    period_setting: str  # the Settings field holding the period, in seconds
    description: str
    run: Callable[[Runtime], str]


def _service_pin(runtime: Runtime) -> str:
    pin = runtime.settings.service_pin
    if not pin:
        raise JobSkipped("TAWQI_SERVICE_PIN is not set: the service token cannot sign")
    return pin


@contextmanager
def _authority(runtime: Runtime) -> Iterator[tuple[Session, Authority]]:
    from api.wiring.root import read_authority

    _service_pin(runtime)
    # Loaded afresh each run (PIN checked before any transaction): a run may renew the
    # OCSP responder certificate.
    authority = read_authority(runtime)
    with runtime.unit_of_work() as session:
        yield session, authority


def crl_republish(runtime: Runtime) -> str:
    from pki import crl

    with _authority(runtime) as (session, authority):
        published = crl.publish_due(session, runtime.clock, authority, actor=ACTOR)
        if published is None:
            return "CRL not due"
        return f"CRL #{published.number} published, next update " \
               f"{published.next_update:%Y-%m-%d %H:%M}"


def ocsp_resign(runtime: Runtime) -> str:
    from pki import ca, ocsp

    with _authority(runtime) as (session, authority):
        authority, renewed = ca.renew_responder_due(
            session, runtime.clock, authority, runtime.tokens(),
            pin=_service_pin(runtime), actor=ACTOR)
        signed = ocsp.presign_due(session, runtime.clock, authority,
                                  force=renewed is not None)
        exported = ""
        if runtime.settings.ocsp_export_dir:
            # Every run, not only when this run signed: a revocation re-signed its answer
            # in the database at once, and the static copy must follow.
            report = ocsp.export_static(session, runtime.clock,
                                        Path(runtime.settings.ocsp_export_dir))
            exported = f"; {report.files} exported"
    renewal = f"; responder certificate renewed ({renewed})" if renewed else ""
    return f"{signed} OCSP answer(s) signed{renewal}{exported}"


def expiry_warnings(runtime: Runtime) -> str:
    from delivery import reminders

    with runtime.unit_of_work() as session:
        report = reminders.send_expiry_warnings(
            session, runtime.clock, thresholds=runtime.settings.expiry_warning_thresholds,
            actor=ACTOR)
    return f"{report.certificates} certificate(s) warned, {report.messages} message(s) queued"


def handover_reminders(runtime: Runtime) -> str:
    from delivery import reminders

    with runtime.unit_of_work() as session:
        reminded = reminders.send_handover_reminders(
            session, runtime.clock, overdue_days=runtime.settings.handover_overdue_days,
            actor=ACTOR)
    return f"{reminded} contact(s) reminded"


def envelope_purge(runtime: Runtime) -> str:
    from delivery import envelopes

    with runtime.unit_of_work() as session:
        erased = envelopes.purge_dead(session, runtime.clock,
                                      retention_days=runtime.settings.envelope_retention_days,
                                      actor=ACTOR)
    return f"{erased} undeliverable envelope(s) erased"


def campaign_notices(runtime: Runtime) -> str:
    from delivery import campaigns

    with runtime.unit_of_work() as session:
        queued = campaigns.send_campaign_notices(session, runtime.clock, actor=ACTOR)
    return f"{queued} campaign notice(s) queued"


def idempotency_purge(runtime: Runtime) -> str:
    from api import idempotency

    with runtime.unit_of_work() as session:
        erased = idempotency.purge(
            session, runtime.clock, timedelta(hours=runtime.settings.idempotency_ttl_hours),
            actor=ACTOR)
    return f"{erased} expired idempotency record(s) deleted"


def rate_counter_purge(runtime: Runtime) -> str:
    from api import ratelimit

    with runtime.unit_of_work() as session:
        erased = ratelimit.purge(session, runtime.clock,
                                 ratelimit.purge_retention(runtime.settings), actor=ACTOR)
    return f"{erased} old rate-limit counter(s) deleted"


def audit_anchor(runtime: Runtime) -> str:
    from api.audit_anchor import anchor_now

    _service_pin(runtime)
    result = anchor_now(runtime, actor=ACTOR)
    if result.checkpoint is None:
        return "audit log unchanged since the last checkpoint"
    return f"checkpoint {result.checkpoint.number} at seq {result.checkpoint.seq}"


JOBS: tuple[JobDefinition, ...] = (
    JobDefinition("crl-republish", "job_crl_republish_seconds",
                  "Publish a new CRL well before the current one's nextUpdate.", crl_republish),
    JobDefinition("ocsp-resign", "job_ocsp_resign_seconds",
                  "Re-sign OCSP answers before they expire; renew the responder certificate.",
                  ocsp_resign),
    JobDefinition("expiry-warnings", "job_expiry_warnings_seconds",
                  "Warn holders and contacts before certificates expire.", expiry_warnings),
    JobDefinition("handover-reminders", "job_handover_reminders_seconds",
                  "Remind contacts of tokens overdue for hand-over.", handover_reminders),
    JobDefinition("envelope-purge", "job_envelope_purge_seconds",
                  "Erase PIN and code envelopes nobody will send any more.", envelope_purge),
    JobDefinition("audit-anchor", "audit_anchor_seconds",
                  "Time-stamp the audit log's head into the anchor store.", audit_anchor),
    JobDefinition("campaign-notices", "job_campaign_notices_seconds",
                  "Email each province's contact the list of a campaign under way.",
                  campaign_notices),
    JobDefinition("idempotency-purge", "job_idempotency_purge_seconds",
                  "Delete idempotency records past TAWQI_IDEMPOTENCY_TTL_HOURS.",
                  idempotency_purge),
    JobDefinition("rate-counter-purge", "job_rate_counter_purge_seconds",
                  "Delete rate-limit counters past TAWQI_RATE_COUNTER_RETENTION_HOURS.",
                  rate_counter_purge),
)


def job_specs(runtime: Runtime, definitions: tuple[JobDefinition, ...] = JOBS
              ) -> list[JobSpec]:
    settings = runtime.settings

    def bind(definition: JobDefinition) -> Callable[[], str]:
        return lambda: definition.run(runtime)

    return [JobSpec(d.name, timedelta(seconds=getattr(settings, d.period_setting)), bind(d),
                    d.description) for d in definitions]


def make_scheduler(runtime: Runtime, *, owner: str | None = None,
                   definitions: tuple[JobDefinition, ...] = JOBS) -> Scheduler:
    settings = runtime.settings
    return Scheduler(runtime.sessions, runtime.clock, job_specs(runtime, definitions),
                     lease=timedelta(seconds=settings.job_lease_seconds),
                     retry=timedelta(seconds=settings.job_retry_seconds), owner=owner)


def run_scheduler(runtime: Runtime, stop: threading.Event,
                  scheduler: Scheduler | None = None) -> None:
    """Tick every TAWQI_JOB_TICK_SECONDS until ``stop`` is set (a tick that fails, e.g.
    the database is down, is logged and the next one tries again)."""
    scheduler = scheduler or make_scheduler(runtime)
    if not runtime.settings.service_pin:
        log.warning("TAWQI_SERVICE_PIN is not set: the CRL, OCSP and audit-anchor jobs will "
                    "be skipped")
    while not stop.is_set():
        try:
            scheduler.tick()
        except Exception:
            log.exception("the scheduler's tick failed; trying again at the next one")
        stop.wait(runtime.settings.job_tick_seconds)


def start_scheduler(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    """:func:`run_scheduler` in a daemon thread of ``tawqi worker`` (token calls are
    serialised by the module lock, so a job may sign while the outbox worker unseals)."""
    thread = threading.Thread(target=run_scheduler, args=(runtime, stop),
                              name="scheduler", daemon=True)
    thread.start()
    return thread


def run_export_follower(runtime: Runtime, stop: threading.Event) -> None:
    """With TAWQI_OCSP_EXPORT_DIR: rewrite the static OCSP export whenever a pre-signed
    answer changed (a revocation, a suspension, a re-signing), checked every
    TAWQI_OCSP_SYNC_SECONDS, so nginx or a CDN serves a change within about a second.
    Every worker runs it; the files are replaced atomically, so two at once do no harm."""
    from pki import ocsp

    directory = Path(runtime.settings.ocsp_export_dir)
    seen = None
    while True:
        try:
            with runtime.unit_of_work() as session:
                changed = ocsp.last_change(session)
                if changed is not None and changed != seen:
                    report = ocsp.export_static(session, runtime.clock, directory)
                    log.info("OCSP export rewritten: %d answers", report.files)
                    seen = changed
        except Exception:  # the database may be away: try again next time
            log.warning("OCSP export not rewritten this time", exc_info=True)
        if stop.wait(runtime.settings.ocsp_sync_seconds):
            return


def start_export_follower(runtime: Runtime, stop: threading.Event) -> threading.Thread | None:
    if not runtime.settings.ocsp_export_dir:
        return None
    thread = threading.Thread(target=run_export_follower, args=(runtime, stop),
                              name="ocsp-export", daemon=True)
    thread.start()
    return thread


def register_metrics(metrics: Metrics) -> None:
    """Each job's last success and failures on /metrics (read from the database)."""

    def last_success(session: Session) -> dict[tuple[str, ...], float]:
        return {(name, ): state.last_succeeded_at.timestamp()
                for name, state in job_states(session).items()
                if state.last_succeeded_at is not None}

    def failures(session: Session) -> dict[tuple[str, ...], float]:
        return {(name, ): float(state.failures) for name, state in job_states(session).items()}

    def next_due(session: Session) -> dict[tuple[str, ...], float]:
        return {(name, ): state.next_due_at.timestamp()
                for name, state in job_states(session).items()
                if state.next_due_at is not None}

    metrics.add_gauge_source("tawqi_job_last_success_timestamp_seconds",
                             "When each periodic job last succeeded (Unix time)", ("job",),
                             last_success)
    metrics.add_gauge_source("tawqi_job_failures", "Failed runs of each periodic job",
                             ("job",), failures)
    metrics.add_gauge_source("tawqi_job_next_due_timestamp_seconds",
                             "When each periodic job is next due (Unix time)", ("job",),
                             next_due)
