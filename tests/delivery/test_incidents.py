"""Renewal and lost, stolen or damaged tokens over a real CA (SoftHSM2), in one rolled-back
session: the old request leaves ``active`` (``superseded`` after a renewal, ``replaced``
after a replacement, ``ended`` with its mandate), a token lost before activation can be
reported, every mandate, campaign, renewal, incident and cancellation operation writes its
audit events in its own transaction and the chain holds, and the migration moves requests
an earlier version left active."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core import audit
from core.audit import AuditEvent
from core.clock import FrozenClock
from core.migrate import downgrade, upgrade
from delivery import (
    batches,
    campaigns,
    holders,
    incidents,
    mandate_change,
    oversight,
    requests,
)
from delivery.errors import IllegalTransition
from delivery.models import (
    ACTIVE,
    CANCELLED,
    DELIVERED,
    ENDED,
    HANDED_OVER,
    PERSONALISED,
    REPLACED,
    SHIPPED,
    SUBMITTED,
    SUPERSEDED,
    CertificateRequest,
    Contact,
    Holder,
    RequestEvent,
    SecretEnvelope,
)
from delivery.personalisation import TokenPersonaliser, personalise_request
from delivery.policy import DeliveryPolicy
from delivery.validation import s10_check_digit
from hsm import generate_pin
from pki import ca, lifecycle
from pki.profiles import DOCUMENTATION_POLICY_OID, Profile
from quotas import ledger, policy, refdata
from quotas.models import Reservation
from tests.delivery.conftest import (
    COMMUNE_A,
    PROVINCE,
    ServiceTokens,
    make_contact,
    make_holder,
    random_cin,
)

POLICY = DeliveryPolicy()
T = TypeVar("T")


@dataclass
class Desk:
    session: Session
    clock: FrozenClock
    personaliser: TokenPersonaliser
    tokens: ServiceTokens
    contact: Contact

    def supersede(self, serial: str) -> None:
        self.personaliser.supersede(self.session, self.clock, serial=serial, actor="operator")

    def request(self, holder: Holder, form: str = "hosted", until: str = ACTIVE
                ) -> CertificateRequest:
        found = requests.submit_request(self.session, self.clock, contact_id=self.contact.id,
                                        holder_id=holder.id, token_form=form,
                                        actor="contact")
        return self.advance(found, until)

    def advance(self, found: CertificateRequest, until: str) -> CertificateRequest:
        """Take a request along its flow (the real steps: batch, hand-over) to ``until``."""
        s, clock = self.session, self.clock
        while found.status != until:
            if found.status == SUBMITTED:
                requests.approve_request(s, clock, found.id, actor="operator",
                                         identity_check="CIN seen")
            elif found.status == "approved":
                personalise_request(s, clock, found.id, personaliser=self.personaliser,
                                    sealer=self.tokens.sealer, actor="operator",
                                    policy=POLICY)
            elif found.status == PERSONALISED and found.token_form == "device" and \
                    found.kind != "renewal":
                batch = batches.prepare_batch(s, clock, PROVINCE, actor="operator")
                digits = f"{secrets.randbelow(10**8):08d}"
                batches.dispatch_batch(
                    s, clock, batch.id, actor="operator", policy=POLICY,
                    tracking_number=f"EE{digits}{s10_check_digit(digits)}MA")
            elif found.status == SHIPPED:
                batches.receive_batch(s, clock, found.batch_id or 0, actor="contact")
            elif found.status == DELIVERED:
                batches.record_handover(s, clock, found.id, handed_to="the holder",
                                        acknowledgement="receipt", actor="contact",
                                        policy=POLICY)
            else:
                requests.activate_request(s, clock, found.id, actor="operator",
                                          supersede=self.supersede)
            clock.advance(timedelta(minutes=5))
        return found

    def report(self, found: CertificateRequest, incident: str) -> CertificateRequest:
        return incidents.report_token_incident(
            self.session, self.clock, found.id, incident=incident, note="reported",
            actor="contact", personaliser=self.personaliser, contact_id=self.contact.id)

    def cert(self, serial: str | None) -> tuple[str, str | None]:
        found = lifecycle.certificate_status(self.session, serial or "")
        return found.status, found.revocation_reason


@pytest.fixture
def desk(session: Session, clock: FrozenClock, service_tokens: ServiceTokens) -> Desk:
    """A CA set up on this test's tokens, in the rolled-back session, and a contact."""
    tokens = service_tokens.library
    profile = Profile(public_url="http://pki.tawqi.ma", policy_oid=DOCUMENTATION_POLICY_OID)
    pin = generate_pin(8)  # random digits alone may be refused (e.g. 24452445)
    ca.init_ca(session, clock, tokens, profile, root_token="tawqi-root", ca_token="tawqi-ca",
               so_pin=service_tokens.so_pin, pin=pin, root_pin=pin, actor="installer")
    authority = ca.load_authority(session, tokens, profile, pin=pin)
    personaliser = TokenPersonaliser(tokens, so_pin=service_tokens.so_pin,
                                     authority=authority)
    return Desk(session, clock, personaliser, service_tokens, make_contact(session, clock))


def _events(session: Session, request_id: int) -> list[tuple[str | None, str]]:
    return [(e.from_status, e.to_status) for e in session.scalars(
        select(RequestEvent).where(RequestEvent.request_id == request_id)
        .order_by(RequestEvent.id))]


def _reservation(session: Session, found: CertificateRequest) -> tuple[str, bool]:
    row = session.get_one(Reservation, found.reservation_id)
    return row.status, row.free


def _active_ids(session: Session, holder: Holder) -> list[int]:
    return [r.id for r in requests.list_requests(session, holder_id=holder.id,
                                                 status=ACTIVE).items]


def _marked_active(desk: Desk, holder: Holder) -> list[int]:
    """The requests the holder's page shows with their certificate's state (the active
    ones: the marker of a credential in use)."""
    mine = oversight.holder_credentials(desk.session, desk.clock, holder.id,
                                        terms_version="2026-01")
    return [line.request_id for line in mine if line.certificate is not None]


def test_a_renewed_request_is_superseded_once_the_renewal_is_active(desk: Desk) -> None:
    s = desk.session
    holder = make_holder(s, desk.clock, COMMUNE_A, contact=desk.contact)
    old = desk.request(holder)
    renewal = requests.submit_renewal(s, desk.clock, old.id, actor="operator")
    desk.advance(renewal, PERSONALISED)
    assert old.status == ACTIVE and _active_ids(s, holder) == [old.id]  # no gap meanwhile
    desk.advance(renewal, ACTIVE)

    assert old.status == SUPERSEDED and old.token_label is None
    assert old.status_reason == f"renewed by request {renewal.id}"
    assert _events(s, old.id)[-1] == (ACTIVE, SUPERSEDED)
    assert desk.cert(old.certificate_serial) == ("revoked", "superseded")
    assert _active_ids(s, holder) == [renewal.id]
    assert requests.current_credential(s, holder.id).id == renewal.id  # type: ignore[union-attr]
    assert _marked_active(desk, holder) == [renewal.id]
    [line] = [h for h in oversight.province_holders(s, desk.clock, PROVINCE)
              if h.id == holder.id]
    assert (line.request_id, line.request_status, line.certificate) == (
        renewal.id, ACTIVE, "valid")
    overview = requests.province_overview(s, desk.clock, PROVINCE, overdue_days=7)
    assert overview.by_status.get(ACTIVE) == 1 and overview.by_status.get(SUPERSEDED) == 1
    # A superseded request cannot be renewed nor reported again.
    with pytest.raises(IllegalTransition):
        requests.submit_renewal(s, desk.clock, old.id, actor="operator")
    with pytest.raises(IllegalTransition):
        desk.report(old, "lost")


def test_an_active_token_lost_is_replaced_and_its_request_closed(desk: Desk) -> None:
    s = desk.session
    holder = make_holder(s, desk.clock, COMMUNE_A, contact=desk.contact)
    old = desk.request(holder, "device")
    replacement = desk.report(old, "lost")
    # Until the replacement is active, the old request keeps its (suspended) certificate.
    assert old.status == ACTIVE and desk.cert(old.certificate_serial) == ("suspended", None)
    with pytest.raises(IllegalTransition):  # nothing to renew: its certificate is on hold
        requests.submit_renewal(s, desk.clock, old.id, actor="operator")
    desk.advance(replacement, ACTIVE)
    assert old.status == REPLACED
    assert old.status_reason == f"token lost; replaced by request {replacement.id}"
    assert _events(s, old.id)[-1] == (ACTIVE, REPLACED)
    assert desk.cert(old.certificate_serial) == ("revoked", "superseded")
    assert _active_ids(s, holder) == [replacement.id]
    assert _marked_active(desk, holder) == [replacement.id]
    assert requests.current_credential(s, holder.id).id == replacement.id  # type: ignore[union-attr]


@pytest.mark.parametrize("state", [PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER])
def test_a_token_lost_before_activation_is_replaced(desk: Desk, state: str) -> None:
    s, clock = desk.session, desk.clock
    holder = make_holder(s, clock, COMMUNE_A, contact=desk.contact)
    old = desk.request(holder, "device", until=state)
    envelope = old.pin_envelope_id
    entity, year = ledger.Entity.parse(old.entity), old.year
    before = ledger.check(s, entity, year)
    chain_before = s.scalar(select(func.max(AuditEvent.seq))) or 0

    replacement = desk.report(old, "lost")

    assert old.status == REPLACED and _events(s, old.id)[-1] == (state, REPLACED)
    assert desk.cert(old.certificate_serial) == ("suspended", None)
    # The lost token's certificate was issued: its reservation counts as used; the
    # replacement takes one of the quota (the default policy charges replacements).
    assert _reservation(s, old) == ("consumed", False)
    assert _reservation(s, replacement) == ("reserved", False)
    after = ledger.check(s, entity, year)
    assert after.remaining == before.remaining - 1
    assert replacement.kind == "replacement" and replacement.follows_request_id == old.id
    assert replacement.status == SUBMITTED
    # A PIN not sent yet is destroyed with its token; one sent at hand-over already was.
    sealed = s.get_one(SecretEnvelope, envelope or "")
    assert sealed.ciphertext is None
    actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.seq > chain_before)
                             .order_by(AuditEvent.seq)))
    assert {"certificate.suspended", "delivery.token.lost", "delivery.request.replaced",
            "quota.consumed", "quota.reserved", "delivery.request.submitted"} <= set(actions)
    assert audit.verify(s).ok

    desk.advance(replacement, ACTIVE)
    assert old.status == REPLACED  # closed at the report, not twice
    assert desk.cert(old.certificate_serial) == ("revoked", "superseded")
    assert _active_ids(s, holder) == [replacement.id]
    assert _marked_active(desk, holder) == [replacement.id]


def test_a_stolen_token_before_activation_outside_the_quota(desk: Desk) -> None:
    s, clock = desk.session, desk.clock
    holder = make_holder(s, clock, COMMUNE_A, contact=desk.contact)
    old = desk.request(holder, "device", until=DELIVERED)
    current = policy.spec_for_year(s, old.year)
    policy.record_policy(s, clock, policy.PolicySpec(
        current.version + 1, current.census_year, old.year, current.services_count,
        current.tiers, "replacements outside the quota", replacement_consumes_quota=False),
        actor="dgcl")
    replacement = desk.report(old, "stolen")
    assert old.status == REPLACED
    assert desk.cert(old.certificate_serial) == ("revoked", "keyCompromise")
    assert _reservation(s, replacement) == ("reserved", True)
    desk.advance(replacement, ACTIVE)
    assert desk.cert(old.certificate_serial) == ("revoked", "keyCompromise")
    assert _reservation(s, replacement) == ("consumed", True)


def test_a_report_cancels_the_renewal_under_way_on_the_same_token(desk: Desk) -> None:
    s = desk.session
    holder = make_holder(s, desk.clock, COMMUNE_A, contact=desk.contact)
    old = desk.request(holder)
    renewal = requests.submit_renewal(s, desk.clock, old.id, actor="operator")
    desk.advance(renewal, PERSONALISED)
    with pytest.raises(IllegalTransition):  # the renewal has no token of its own
        desk.report(renewal, "damaged")
    replacement = desk.report(old, "damaged")
    assert renewal.status == CANCELLED
    assert desk.cert(renewal.certificate_serial) == ("revoked", "cessationOfOperation")
    assert _reservation(s, renewal)[0] == "released"
    assert desk.cert(old.certificate_serial) == ("suspended", None)
    assert replacement.status == SUBMITTED and old.status == ACTIVE
    assert audit.verify(s).ok


# ------------------------------------------------------------------ audit, per operation


def _head(session: Session) -> int:
    return session.scalar(select(func.max(AuditEvent.seq))) or 0


def _trail(session: Session, operation: Callable[[], T]) -> tuple[list[str], T]:
    """Run ``operation`` in a savepoint rolled back (its audit events must vanish with its
    changes: one transaction), then for real; return the actions it audited, in order, and
    its result. The whole chain verifies afterwards."""
    start = _head(session)
    savepoint = session.begin_nested()
    try:
        operation()
        assert _head(session) > start, "the operation wrote no audit event"
    finally:
        savepoint.rollback()
    assert _head(session) == start
    result = operation()
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.seq > start)
                                   .order_by(AuditEvent.seq)))
    report = audit.verify(session)
    assert report.ok, report.reason
    return actions, result


def test_mandate_operations_audit_in_their_transaction(desk: Desk) -> None:
    s, clock = desk.session, desk.clock
    revoke = mandate_change.lifecycle_revoker(s, clock, desk.personaliser.authority)
    seen: dict[str, list[str]] = {}
    seen["register"], holder = _trail(s, lambda: make_holder(s, clock, COMMUNE_A,
                                                             contact=desk.contact))
    first = desk.request(holder)
    seen["change"], _ = _trail(s, lambda: mandate_change.change_mandate(
        s, clock, holder.id, mandate_change.MandateChange(
            role="vice_president", started_on=clock.now().date(), commune_code=COMMUNE_A),
        actor="op", revoke=revoke, token_form="hosted"))
    seen["civility"], _ = _trail(s, lambda: holders.set_civility(s, clock, holder.id, "mrs",
                                                                 actor="op"))
    seen["address"], _ = _trail(s, lambda: holders.update_contact_details(
        s, clock, holder.id, actor="op", professional_email="vp@commune.ma"))
    seen["end"], _ = _trail(s, lambda: mandate_change.end_mandate(
        s, clock, holder.id, ended_on=clock.now().date(), reason="resigned", actor="op",
        revoke=revoke))
    assert seen == {
        "register": ["delivery.holder.registered", "delivery.mandate.opened"],
        # the old mandate's certificate revoked in one bulk operation, then the mandates
        "change": ["certificate.revoked", "crl.published", "certificate.bulk_revoked",
                   "delivery.mandate.ended", "delivery.request.ended",
                   "delivery.mandate.opened", "quota.reserved", "delivery.request.submitted"],
        "civility": ["delivery.holder.civility"],
        "address": ["delivery.holder.updated"],
        # the request the change asked for is cancelled with the mandate
        "end": ["delivery.request.cancelled", "quota.released", "delivery.mandate.ended"],
    }
    # the old mandate's credential left ``active`` with its certificate
    assert s.get_one(CertificateRequest, first.id).status == ENDED
    assert _events(s, first.id)[-1] == (ACTIVE, ENDED)
    assert _active_ids(s, holder) == []


def test_campaign_operations_audit_in_their_transaction(desk: Desk) -> None:
    s, clock = desk.session, desk.clock
    revoke = mandate_change.lifecycle_revoker(s, clock, desk.personaliser.authority)
    outgoing = make_holder(s, clock, COMMUNE_A, contact=desk.contact)
    sitting = desk.request(outgoing)
    seen: dict[str, list[str]] = {}
    seen["open"], campaign = _trail(s, lambda: campaigns.open_campaign(
        s, clock, name=f"Communales {secrets.token_hex(4)}",
        installation_date=clock.now().date() + timedelta(days=10), scope_kind="province",
        scope_codes=[PROVINCE], funding="extra", actor="dgcl"))
    text = "\n".join([",".join(campaigns.CSV_COLUMNS),
                      f"{COMMUNE_A},president,{random_cin()},Salma,Alaoui,سلمى,العلوي,Mme,"
                      "0661234567,salma@example.ma"])
    seen["import"], _ = _trail(s, lambda: campaigns.import_elected(s, clock, campaign.id,
                                                                  text, actor="dgcl"))
    seen["notify"], _ = _trail(s, lambda: campaigns.notify_contacts(s, clock, campaign.id,
                                                                   actor="dgcl"))
    clock.advance(timedelta(days=10))
    seen["install"], _ = _trail(s, lambda: campaigns.install(s, clock, campaign.id,
                                                            actor="dgcl", revoke=revoke))
    assert seen == {
        "open": ["delivery.campaign.opened"],
        "import": ["delivery.mandate.ended", "delivery.holder.registered",
                   "delivery.mandate.opened", "quota.extra.added", "quota.reserved",
                   "delivery.request.submitted", "delivery.campaign.imported"],
        "notify": ["delivery.campaign.notified"],
        "install": ["certificate.revoked", "crl.published", "certificate.bulk_revoked",
                    "delivery.request.ended", "delivery.campaign.installed"],
    }
    assert s.get_one(CertificateRequest, sitting.id).status == ENDED
    assert desk.cert(sitting.certificate_serial) == ("revoked", "affiliationChanged")


def test_renewal_incident_and_cancellation_audit_in_their_transaction(desk: Desk) -> None:
    s, clock = desk.session, desk.clock
    holder = make_holder(s, clock, COMMUNE_A, contact=desk.contact)
    old = desk.request(holder)
    seen: dict[str, list[str]] = {}
    seen["renew"], renewal = _trail(s, lambda: requests.submit_renewal(s, clock, old.id,
                                                                      actor="op"))
    seen["approve"], _ = _trail(s, lambda: requests.approve_request(
        s, clock, renewal.id, actor="op", identity_check="known"))
    seen["personalise"], _ = _trail(s, lambda: personalise_request(
        s, clock, renewal.id, personaliser=desk.personaliser, sealer=desk.tokens.sealer,
        actor="op", policy=POLICY))
    seen["activate"], _ = _trail(s, lambda: requests.activate_request(
        s, clock, renewal.id, actor="op", supersede=desk.supersede))
    seen["report"], replacement = _trail(s, lambda: desk.report(renewal, "lost"))
    desk.advance(replacement, PERSONALISED)
    seen["cancel_personalised"], _ = _trail(s, lambda: incidents.cancel_after_personalisation(
        s, clock, replacement.id, reason="found again", actor="op",
        personaliser=desk.personaliser))
    other = make_holder(s, clock, COMMUNE_A, contact=desk.contact)
    first = desk.request(other, until=SUBMITTED)
    seen["cancel"], _ = _trail(s, lambda: requests.cancel_request(s, clock, first.id,
                                                                 actor="op", reason="typo"))
    second = desk.request(other, until=SUBMITTED)
    seen["reject"], _ = _trail(s, lambda: requests.reject_request(s, clock, second.id,
                                                                 actor="op", reason="no"))
    assert seen == {
        "renew": ["quota.reserved", "delivery.request.submitted"],
        "approve": ["delivery.request.approved"],
        "personalise": ["certificate.prepared", "certificate.issued",
                        "certificate.written_to_token", "delivery.request.personalised"],
        "activate": ["delivery.request.active", "quota.consumed",
                     "delivery.request.credential_carried_over", "certificate.revoked",
                     "crl.published", "delivery.request.superseded"],
        "report": ["certificate.suspended", "crl.published", "delivery.token.lost",
                   "quota.reserved", "delivery.request.submitted"],
        "cancel_personalised": ["certificate.revoked", "crl.published",
                                "delivery.envelope.destroyed", "delivery.request.cancelled",
                                "quota.released"],
        "cancel": ["delivery.request.cancelled", "quota.released"],
        "reject": ["delivery.request.rejected", "quota.released"],
    }


# ------------------------------------------------------------------ the migration



def test_the_migration_closes_requests_left_active_by_a_renewal_or_a_replacement(
        bare_engine: Engine) -> None:
    upgrade(bare_engine)
    downgrade(bare_engine, "delivery_0007")
    clock = FrozenClock(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    with Session(bare_engine) as session, session.begin():
        refdata.load(session, clock)
        policy.ensure_default_policies(session, clock)
        contact = make_contact(session, clock)
        ids = []
        for _ in range(3):
            holder = make_holder(session, clock, "01.051.01.01", contact=contact)
            ids.append(requests.submit_request(session, clock, contact_id=contact.id,
                                               holder_id=holder.id, token_form="hosted",
                                               actor="contact").id)
    renewed, replaced, kept = ids
    with bare_engine.begin() as conn:  # as the earlier version left them
        conn.execute(text("UPDATE delivery_request SET status = 'active'"))
        conn.execute(text("UPDATE delivery_request SET token_label = 'tok-' || id "
                          "WHERE id <> :renewed"), {"renewed": renewed})
        for old, kind in ((renewed, "renewal"), (replaced, "replacement")):
            conn.execute(text(
                "INSERT INTO delivery_request (holder_id, mandate_id, contact_id, "
                "province_code, entity, year, token_form, status, status_reason, "
                "reservation_id, pin_change_required, kind, follows_request_id, "
                "submitted_at, updated_at) SELECT holder_id, mandate_id, contact_id, "
                "province_code, entity, year, token_form, 'active', '', reservation_id, "
                ":no, :kind, id, submitted_at, updated_at FROM delivery_request "
                "WHERE id = :old"), {"kind": kind, "old": old, "no": False})

    def statuses() -> dict[int, str]:
        with bare_engine.connect() as conn:
            return dict(conn.execute(text(  # type: ignore[arg-type]
                "SELECT id, status FROM delivery_request WHERE id IN (:a, :b, :c)"),
                {"a": renewed, "b": replaced, "c": kept}).all())

    upgrade(bare_engine)
    assert statuses() == {renewed: SUPERSEDED, replaced: REPLACED, kept: ACTIVE}
    downgrade(bare_engine, "delivery_0007")
    assert statuses() == {renewed: ACTIVE, replaced: ACTIVE, kept: ACTIVE}
    upgrade(bare_engine)
