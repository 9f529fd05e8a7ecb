"""The request state machine, quotas, batches and hand-over (one rolled-back session)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from core.clock import FrozenClock
from delivery import batches, requests
from delivery.errors import (
    BatchStateError,
    ContactInactive,
    IllegalTransition,
    InvalidTracking,
    NotReadyToSign,
    OpenRequestExists,
    OutOfProvince,
)
from delivery.models import (
    ACTIVE,
    APPROVED,
    CANCELLED,
    DELIVERED,
    HANDED_OVER,
    PERSONALISED,
    REJECTED,
    SHIPPED,
    SUBMITTED,
    CertificateRequest,
    OutboxMessage,
    SecretEnvelope,
)
from delivery.personalisation import personalise_request
from delivery.policy import DeliveryPolicy
from quotas import ledger
from quotas.errors import QuotaExhausted
from quotas.models import Reservation
from tests.delivery.conftest import (
    COMMUNE_A,
    COMMUNE_B,
    OTHER_PROVINCE_COMMUNE,
    KeyOnlyPersonaliser,
    ServiceTokens,
    make_contact,
    make_holder,
)

POLICY = DeliveryPolicy()
TRACKING = "EE123456785MA"


def _submit(session: Session, clock: FrozenClock, contact_id: int, holder_id: int,
            form: str = "device") -> CertificateRequest:
    return requests.submit_request(session, clock, contact_id=contact_id, holder_id=holder_id,
                                   token_form=form, actor="contact")


def _reservation(session: Session, request: CertificateRequest) -> str:
    return session.get_one(Reservation, request.reservation_id).status


def _outbox(session: Session, request: CertificateRequest) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.request_id == request.id).order_by(OutboxMessage.id)))


def test_requests_reserve_quota_and_beyond_quota_is_refused(session: Session,
                                                           clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    people = [make_holder(session, clock, contact=contact) for _ in range(4)]
    made = [_submit(session, clock, contact.id, h.id) for h in people[:3]]
    assert all(r.status == SUBMITTED and _reservation(session, r) == "reserved" for r in made)
    assert made[0].entity == f"commune:{COMMUNE_A}" and made[0].year == 2026
    before = session.scalar(select(func.count(CertificateRequest.id)))
    with pytest.raises(QuotaExhausted) as err:
        _submit(session, clock, contact.id, people[3].id)
    assert err.value.extras["allotted"] == 3
    assert session.scalar(select(func.count(CertificateRequest.id))) == before
    # Rejecting one gives its certificate back to the quota.
    requests.reject_request(session, clock, made[0].id, actor="operator",
                            reason="CIN copy unreadable")
    assert made[0].status == REJECTED and made[0].status_reason == "CIN copy unreadable"
    assert _reservation(session, made[0]) == "released"
    fourth = _submit(session, clock, contact.id, people[3].id)
    assert fourth.status == SUBMITTED
    # Cancelling too.
    requests.cancel_request(session, clock, made[1].id, actor="contact", reason="resigned",
                            contact_id=contact.id)
    assert made[1].status == CANCELLED and _reservation(session, made[1]) == "released"


def test_scope_and_duplicates(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    outsider = make_holder(session, clock, commune=OTHER_PROVINCE_COMMUNE)
    with pytest.raises(OutOfProvince):
        _submit(session, clock, contact.id, outsider.id)
    holder = make_holder(session, clock, contact=contact)
    _submit(session, clock, contact.id, holder.id)
    with pytest.raises(OpenRequestExists):
        _submit(session, clock, contact.id, holder.id)
    successor = make_contact(session, clock, full_name="Nouveau Correspondant")
    with pytest.raises(ContactInactive):
        _submit(session, clock, contact.id, make_holder(session, clock).id)
    assert _submit(session, clock, successor.id, make_holder(session, clock, commune=COMMUNE_B).id)


def test_illegal_transitions_are_refused_clearly(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    request = _submit(session, clock, contact.id, make_holder(session, clock).id, "hosted")
    with pytest.raises(IllegalTransition) as err:
        requests.activate_request(session, clock, request.id, actor="operator")
    assert err.value.extras["status"] == SUBMITTED
    assert err.value.extras["allowed"] == ["approve", "reject", "cancel"]
    requests.approve_request(session, clock, request.id, actor="operator",
                             identity_check="CIN and council minutes checked")
    with pytest.raises(IllegalTransition):
        requests.approve_request(session, clock, request.id, actor="operator",
                                 identity_check="again")
    with pytest.raises(IllegalTransition):
        requests.reject_request(session, clock, request.id, actor="operator", reason="late")
    with pytest.raises(IllegalTransition):
        batches.record_handover(session, clock, request.id, handed_to="x",
                                acknowledgement="y", actor="contact", policy=POLICY)
    assert request.status == APPROVED
    assert _reservation(session, request) == "reserved"


def test_hosted_token_skips_the_courier_and_gets_its_pin_at_activation(
        session: Session, clock: FrozenClock, service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, contact=contact)
    request = _submit(session, clock, contact.id, holder.id, "hosted")
    clock.advance(timedelta(hours=2))
    requests.approve_request(session, clock, request.id, actor="ra-operator",
                             identity_check="CIN checked in person")
    clock.advance(timedelta(hours=1))
    personaliser = KeyOnlyPersonaliser(service_tokens.library, service_tokens.so_pin)
    personalise_request(session, clock, request.id, personaliser=personaliser,
                        sealer=service_tokens.sealer, actor="operator", policy=POLICY)
    assert request.status == PERSONALISED and request.token_label
    envelope = session.get_one(SecretEnvelope, request.pin_envelope_id)
    assert envelope.ciphertext and envelope.purpose == "initial_pin"
    assert _outbox(session, request) == []  # no PIN before activation
    with pytest.raises(BatchStateError):  # hosted tokens never enter a courier batch
        batches.prepare_batch(session, clock, request.province_code, actor="operator")
    clock.advance(timedelta(minutes=30))
    requests.activate_request(session, clock, request.id, actor="operator")
    assert request.status == ACTIVE and _reservation(session, request) == "consumed"
    messages = _outbox(session, request)
    assert [(m.channel, m.template) for m in messages] == [("sms", "pin.initial"),
                                                           ("email", "pin.initial")]
    assert {m.recipient for m in messages} == {holder.mobile, holder.email}
    assert all(m.envelope_id == envelope.id for m in messages)
    assert all("pin" not in m.params.lower() for m in messages)
    readiness = requests.signing_readiness(session, request.id)
    assert not readiness.ready and len(readiness.reasons) == 2
    with pytest.raises(NotReadyToSign):
        requests.require_ready_to_sign(session, request.id)
    requests.accept_terms(session, clock, request.id, version="2026-01", actor="holder")
    assert request.terms_version == "2026-01" and request.terms_accepted_at is not None
    timeline = requests.timeline(session, request.id)
    assert [s.status for s in timeline.steps] == [SUBMITTED, APPROVED, PERSONALISED, ACTIVE]
    assert timeline.durations["submitted→approved"] == timedelta(hours=2)
    assert timeline.durations["total"] == timedelta(hours=3, minutes=30)
    assert timeline.steps[1].actor == "ra-operator"
    actions = list(session.scalars(select(AuditEvent.action).where(
        AuditEvent.object_type == "certificate_request",
        AuditEvent.object_id == str(request.id)).order_by(AuditEvent.seq)))
    assert actions == ["delivery.request.submitted", "delivery.request.approved",
                       "delivery.request.personalised", "delivery.request.active",
                       "delivery.terms.accepted"]


def _personalised_device(session: Session, clock: FrozenClock, service_tokens: ServiceTokens,
                         contact_id: int, commune: str = COMMUNE_A) -> CertificateRequest:
    request = _submit(session, clock, contact_id,
                      make_holder(session, clock, commune=commune).id)
    requests.approve_request(session, clock, request.id, actor="ra", identity_check="ok")
    personalise_request(session, clock, request.id,
                        personaliser=KeyOnlyPersonaliser(service_tokens.library,
                                                         service_tokens.so_pin),
                        sealer=service_tokens.sealer, actor="operator", policy=POLICY)
    return request


def test_device_tokens_travel_in_a_batch_and_pins_go_at_handover(
        session: Session, clock: FrozenClock, service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock)
    first = _personalised_device(session, clock, service_tokens, contact.id)
    second = _personalised_device(session, clock, service_tokens, contact.id, COMMUNE_B)
    batch = batches.prepare_batch(session, clock, contact.province_code, actor="operator")
    assert {r.id for r in batches.batch_requests(session, batch.id)} == {first.id, second.id}
    with pytest.raises(InvalidTracking):
        batches.dispatch_batch(session, clock, batch.id, tracking_number="EE123456784MA",
                               actor="operator", policy=POLICY)
    clock.advance(timedelta(hours=4))
    batches.dispatch_batch(session, clock, batch.id, tracking_number="ee 123456785 ma",
                           actor="operator", policy=POLICY)
    assert batch.tracking_number == TRACKING and batch.dispatched_at is not None
    assert first.status == SHIPPED and second.status == SHIPPED
    assert _outbox(session, first) == []  # the PIN waits for the hand-over
    contact_mail = session.scalars(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"batch.dispatched:{batch.id}")).one()
    assert contact_mail.recipient == contact.email
    with pytest.raises(BatchStateError):
        batches.dispatch_batch(session, clock, batch.id, tracking_number=TRACKING,
                               actor="operator", policy=POLICY)
    with pytest.raises(IllegalTransition):  # not received yet
        batches.record_handover(session, clock, first.id, handed_to="Karim Benali",
                                acknowledgement="receipt 1", actor="contact", policy=POLICY)
    clock.advance(timedelta(days=2))
    batches.receive_batch(session, clock, batch.id, actor="contact", contact_id=contact.id)
    assert batch.received_at is not None and first.status == DELIVERED
    clock.advance(timedelta(days=1))
    batches.record_handover(session, clock, first.id, handed_to="Karim Benali",
                            acknowledgement="signed receipt R-001", actor="contact",
                            contact_id=contact.id, policy=POLICY)
    assert first.status == HANDED_OVER and first.handed_over_to == "Karim Benali"
    assert [m.template for m in _outbox(session, first)] == ["pin.initial", "pin.initial"]
    # The second token is not handed over: overdue after the configured days.
    assert batches.overdue_handovers(session, clock, overdue_days=7).items == []
    clock.advance(timedelta(days=7))
    overdue = batches.overdue_handovers(session, clock, overdue_days=7,
                                        province_code=contact.province_code).items
    assert [o.request_id for o in overdue] == [second.id] and overdue[0].days_waiting == 8
    assert batches.is_overdue(session, clock, second, overdue_days=7)
    overview = requests.province_overview(session, clock, contact.province_code,
                                          overdue_days=7)
    assert overview.by_status[DELIVERED] == 1 and overview.overdue_handovers == 1
    requests.activate_request(session, clock, first.id, actor="holder")
    assert first.status == ACTIVE and _reservation(session, first) == "consumed"
    timeline = requests.timeline(session, first.id)
    assert [s.status for s in timeline.steps] == [
        SUBMITTED, APPROVED, PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER, ACTIVE]
    assert timeline.durations["shipped→delivered"] == timedelta(days=2)


def test_pins_at_dispatch_when_configured(session: Session, clock: FrozenClock,
                                          service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock)
    request = _personalised_device(session, clock, service_tokens, contact.id)
    batch = batches.prepare_batch(session, clock, contact.province_code, actor="operator")
    batches.dispatch_batch(session, clock, batch.id, tracking_number=TRACKING,
                           actor="operator", policy=DeliveryPolicy(pin_send_at="dispatch"))
    assert [m.channel for m in _outbox(session, request)] == ["sms", "email"]


def test_replacing_the_contact_hands_open_batches_over(session: Session, clock: FrozenClock,
                                                       service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock)
    _personalised_device(session, clock, service_tokens, contact.id)
    batch = batches.prepare_batch(session, clock, contact.province_code, actor="operator")
    assert batch.contact_id == contact.id
    successor = make_contact(session, clock, full_name="Hassan Tazi")
    session.refresh(batch)
    assert batch.contact_id == successor.id
    moved = session.scalars(select(AuditEvent).where(
        AuditEvent.action == "delivery.batch.contact_changed",
        AuditEvent.object_id == str(batch.id))).one()
    assert moved.summary_dict == {"from_contact": contact.id, "to_contact": successor.id}
    with pytest.raises(ContactInactive):
        batches.receive_batch(session, clock, batch.id, actor="old", contact_id=contact.id)


def test_quota_years_are_per_request(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    holder = make_holder(session, clock, contact=contact)
    request = requests.submit_request(session, clock, contact_id=contact.id,
                                      holder_id=holder.id, token_form="device",
                                      actor="contact", year=2027)
    decision = ledger.check(session, ledger.Entity.parse(COMMUNE_A), 2027)
    assert request.year == 2027 and decision.reserved == 1
