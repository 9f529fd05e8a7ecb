"""Production tests of the certificate's year: two worker processes sharing one PostgreSQL
database and one HSM (SoftHSM2 behind the token server, as a network HSM), each with its own
Runtime and clock.

* A renewal and a loss report on the same credential, at once from the two processes: the
  report wins (a renewal that got in first is cancelled, one that comes second is refused),
  two reports make one replacement, and nothing is lost (reservations, audit chain).
* A moved clock over two months: expiry warnings, hand-over reminders and campaign notices,
  ticked by both processes at once (their schedulers, then the jobs' domain functions
  outside the lease), are each queued once per threshold or per day.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from api.runtime import Runtime
from core import audit
from core.audit import AuditEvent
from core.clock import FrozenClock
from delivery import campaigns, requests
from delivery.models import (
    ACTIVE,
    CANCELLED,
    KIND_REPLACEMENT,
    OPEN_STATES,
    SUBMITTED,
    CertificateRequest,
    ExpiryWarning,
    Holder,
    OutboxMessage,
)
from pki import lifecycle
from quotas.models import Commune, Reservation
from tests.api.conftest import make_settings
from tests.conftest import FROZEN_AT, _drop_postgres, _fresh_postgres, prepare_database
from tests.delivery.conftest import (
    COMMUNE_B,
    PROVINCE,
    make_contact,
    random_cin,
)
from tests.delivery.domain_workers import Worker, start_workers, together
from tests.hsm.test_token_server import token_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.hsm


@pytest.fixture
def pg_engine(postgres_server_url: str) -> Iterator[Engine]:
    """A PostgreSQL database of this test's own: the workers commit."""
    name, engine = _fresh_postgres(postgres_server_url)
    try:
        prepare_database(engine)
        yield engine
    finally:
        engine.dispose()
        _drop_postgres(postgres_server_url, name)


@dataclass
class Site:
    """The database as the test reads it (this process never loads the token module: the
    workers do all token work), and the two workers."""

    runtime: Runtime
    clock: FrozenClock
    workers: list[Worker]
    contact_id: int

    def credential(self, form: str = "hosted", until: str = ACTIVE) -> CertificateRequest:
        """A holder of a commune of their own (each has its own quota) and their request,
        taken along the real flow to ``until`` by the first worker."""
        with self.runtime.unit_of_work() as session:
            taken = set(session.scalars(select(Holder.commune_code)))
            commune = session.scalars(select(Commune.code).where(
                Commune.province_code == PROVINCE, Commune.kind != "arrondissement",
                Commune.code.not_in(taken | {COMMUNE_B})).order_by(Commune.code)).first()
        status, request_id = self.workers[0].call("credential", self.contact_id, commune,
                                                  form, until)
        assert status == "ok", request_id
        with self.runtime.unit_of_work() as session:
            return requests.get_request(session, request_id)


@pytest.fixture
def site(token_server: str, pg_engine: Engine, tmp_path: Path,  # noqa: F811
         softhsm_module_path: str) -> Iterator[Site]:
    """Two worker processes on the same database and token server; the first installs
    the service (CA, envelope key) on the server's tokens; a contact."""
    clock = FrozenClock(FROZEN_AT)
    settings = make_settings(tmp_path, pkcs11_module=softhsm_module_path,
                             pkcs11_server=token_server, holder_validity_days=65)
    runtime = Runtime(settings, clock=clock, engine=pg_engine)
    url = pg_engine.url.render_as_string(hide_password=False)
    workers = start_workers(2, settings, url, FROZEN_AT)
    try:
        assert workers[0].call("provision") == ("ok", None)
        with runtime.unit_of_work() as session:
            contact_id = make_contact(session, clock).id
        yield Site(runtime, clock, workers, contact_id)
    finally:
        for worker in workers:
            worker.stop()
        runtime.engine.dispose()


def _followers(site: Site, request_id: int) -> list[CertificateRequest]:
    with site.runtime.unit_of_work() as session:
        return list(session.scalars(select(CertificateRequest).where(
            CertificateRequest.follows_request_id == request_id)
            .order_by(CertificateRequest.id)))


def _nothing_lost(site: Site) -> None:
    """Every request's reservation is in the state its request says, and the audit chain
    holds."""
    expected = {SUBMITTED: "reserved", CANCELLED: "released", ACTIVE: "consumed"}
    with site.runtime.unit_of_work() as session:
        for request, reservation in session.execute(
                select(CertificateRequest, Reservation.status)
                .join(Reservation, Reservation.id == CertificateRequest.reservation_id)):
            if request.status in OPEN_STATES:
                assert reservation == "reserved", request.id
            elif request.status in expected:
                assert reservation == expected[request.status], request.id
        report = audit.verify(session)
        assert report.ok, report.reason


def _count(site: Site, action: str, object_id: object) -> int:
    with site.runtime.unit_of_work() as session:
        return session.scalar(select(func.count(AuditEvent.seq)).where(
            AuditEvent.action == action, AuditEvent.object_id == str(object_id))) or 0


def test_a_renewal_and_a_loss_report_racing_from_two_processes(site: Site) -> None:
    first, second = site.workers
    for round_ in range(2):
        old = site.credential()
        # the two processes alternate roles, so each order of arrival gets its chance
        calls = [("renew", (old.id,)), ("report", (old.id, "lost"))]
        if round_ % 2:
            calls.reverse()
        answers = dict(zip((name for name, _ in calls), together(site.workers, calls),
                           strict=True))
        renewed, reported = answers["renew"], answers["report"]
        assert reported[0] == "ok", reported  # the loss report always wins
        assert renewed[0] in ("ok", "IllegalTransition", "OpenRequestExists"), renewed
        followers = _followers(site, old.id)
        still_open = [r for r in followers if r.status in OPEN_STATES]
        assert [(r.id, r.kind) for r in still_open] == [(reported[1], KIND_REPLACEMENT)]
        if renewed[0] == "ok":  # it got in first: the report cancelled it
            [renewal] = [r for r in followers if r.id == renewed[1]]
            assert renewal.status == CANCELLED
        else:
            assert len(followers) == 1
        with site.runtime.unit_of_work() as session:
            assert lifecycle.certificate_status(session, old.certificate_serial or "").status \
                == "suspended"
            assert requests.get_request(session, old.id).status == ACTIVE
        assert _count(site, "delivery.token.lost", old.id) == 1
        assert _count(site, "certificate.suspended", old.certificate_serial) == 1
    # Two reports of one token at once: one replacement.
    old = site.credential()
    answers = together(site.workers, [("report", (old.id, "stolen")),
                                      ("report", (old.id, "stolen"))])
    assert sorted(status for status, _ in answers) == ["OpenRequestExists", "ok"], answers
    assert len(_followers(site, old.id)) == 1
    assert _count(site, "delivery.token.stolen", old.id) == 1
    with site.runtime.unit_of_work() as session:
        found = lifecycle.certificate_status(session, old.certificate_serial or "")
        assert (found.status, found.revocation_reason) == ("revoked", "keyCompromise")
    # Two renewals at once: one renewal.
    old = site.credential()
    answers = together(site.workers, [("renew", (old.id,)), ("renew", (old.id,))])
    assert sorted(status for status, _ in answers) == ["OpenRequestExists", "ok"], answers
    assert len(_followers(site, old.id)) == 1
    _nothing_lost(site)
    assert first.process.is_alive() and second.process.is_alive()


def test_notices_once_per_threshold_and_day_with_two_worker_processes(site: Site) -> None:
    rt, clock = site.runtime, site.clock
    warned = site.credential()  # certificate valid 65 days
    waiting = site.credential("device", until="delivered")  # never handed over
    with rt.unit_of_work() as session:
        campaign = campaigns.open_campaign(
            session, clock, name="Communales 2026", scope_kind="province",
            scope_codes=[PROVINCE], funding="quota",
            installation_date=(FROZEN_AT + timedelta(days=3)).date(), actor="dgcl")
        campaigns.import_elected(session, clock, campaign.id, "\n".join([
            ",".join(campaigns.CSV_COLUMNS),
            f"{COMMUNE_B},president,{random_cin()},Salma,Alaoui,سلمى,العلوي,Mme,"
            "0661234567,salma@example.ma"]), actor="dgcl")
    ticked: dict[int, list[str]] = {}
    for day in (0, 1, 2, 3, 5, 8, 9, 35, 58):
        at = FROZEN_AT + timedelta(days=day, hours=1)
        if day == 3:  # the councils are installed; the new president has no token yet
            clock.set(at)
            with rt.unit_of_work() as session:
                campaigns.install(session, clock, campaign.id, actor="dgcl", revoke=None)
        for hours in (0, 5):  # twice the same day
            for worker in site.workers:
                assert worker.call("set_clock", (at + timedelta(hours=hours)).isoformat()) \
                    == ("ok", None)
            answers = together(site.workers, [("tick", ()), ("tick", ())])
            assert all(status == "ok" for status, _ in answers), answers
            runs = [run for _, ran in answers for run in ran]
            assert all(outcome == "ok" for _, outcome in runs), runs
            # of the two schedulers ticking at once, one runs each due job
            assert max(Counter(name for name, _ in runs).values(), default=1) == 1, runs
            ticked.setdefault(day, []).extend(name for name, _ in runs)
    # Each job ran once per period across the two processes: the daily ones once a day,
    # the hourly expiry warnings at both ticks of a day (five hours apart).
    assert all(Counter(names) == {"expiry-warnings": 2, "handover-reminders": 1,
                                  "campaign-notices": 1} for names in ticked.values()), ticked

    with rt.unit_of_work() as session:
        messages = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        claimed = sorted(session.execute(select(ExpiryWarning.certificate_serial,
                                                ExpiryWarning.threshold_days)).all())
    serials = sorted({warned.certificate_serial or "", waiting.certificate_serial or ""})
    assert claimed == [(serial, days) for serial in serials for days in (7, 30, 60)]
    expiry = Counter((m.recipient, json.loads(m.params)["days"]) for m in messages
                     if m.template.startswith("expiry."))
    assert set(expiry.values()) <= {1, 2}  # one per recipient, threshold (and certificate)
    assert sorted({days for _, days in expiry}) == [7, 30, 60]
    reminders = sorted(m.dedupe_key.rsplit(":", 1)[1] for m in messages
                       if m.template == "handover.reminder")
    assert reminders == [f"{(FROZEN_AT + timedelta(days=d)).date()}" for d in (8, 9, 35, 58)]
    notices = sorted(m.dedupe_key.rsplit(":", 1)[1] for m in messages
                     if m.template == "campaign.status")
    # every day from the import, then while the seat is blocked, up to 30 days after the
    # installation: once a day
    assert notices == [f"{(FROZEN_AT + timedelta(days=d)).date()}"
                       for d in (0, 1, 2, 3, 5, 8, 9)]
    assert len({m.dedupe_key for m in messages}) == len(messages)
    _nothing_lost(site)
