"""Renewal and lost, stolen or damaged tokens over a real CA (SoftHSM2), in one rolled-back
session: the old request leaves ``active`` (``superseded`` after a renewal, ``replaced``
after a replacement), a token lost before activation can be reported, and every operation
writes its audit events in the chain."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.audit import AuditEvent
from core.clock import FrozenClock
from delivery import batches, incidents, oversight, requests
from delivery.errors import IllegalTransition
from delivery.models import (
    ACTIVE,
    CANCELLED,
    DELIVERED,
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
from pki import ca, lifecycle
from pki.profiles import DOCUMENTATION_POLICY_OID, Profile
from quotas import ledger, policy
from quotas.models import Reservation
from tests.delivery.conftest import (
    COMMUNE_A,
    PROVINCE,
    ServiceTokens,
    make_contact,
    make_holder,
)

POLICY = DeliveryPolicy()


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
    pin = "".join(secrets.choice("0123456789") for _ in range(8))
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
    """The requests the holder's page and the province's list show with a live
    certificate ("valid" or "suspended")."""
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
