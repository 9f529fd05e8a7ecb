"""A small territory after an election, for the oversight tests and the web pages' tests.

Built on a session at the clock's time ``T`` (the clock is moved back and forth, and left
at ``T``). Without a token layer: personalisation is recorded through the state machine
(``requests.move``) with a certificate row of the registry standing for what the CA issued,
so the figures depend only on what the queries read.

* Al Hoceima (01.051): commune A can sign (activated after 10 days); commune B could, until
  its outgoing president's certificate was revoked 20 days ago, and its new president's
  request has waited 3 days; commune D's request is approved (waiting personalisation); a
  token for A's official is in a dispatched batch (in transit); a token for B's official was
  received 10 days ago and not handed over (overdue).
* Chefchaouen (01.151): commune C could sign until its certificate expired 5 days ago
  (activated after 20 days).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.clock import FrozenClock
from delivery import batches, requests
from delivery.models import CertificateRequest, Contact, Holder
from delivery.policy import DeliveryPolicy
from pki.models import STATUS_ISSUED, STATUS_REVOKED, AuthorityRecord, CertificateRecord
from tests.delivery.conftest import make_contact, make_holder

HERE, THERE = "01.051", "01.151"
COMMUNE_A = "01.051.03.01"  # rural
COMMUNE_B = "01.051.01.05"  # Imzouren
COMMUNE_C = "01.151.01.01"
COMMUNE_D = "01.051.01.03"
YEAR = 2026


@dataclass
class Scene:
    t: datetime
    contact_here: Contact
    contact_there: Contact
    holder_a: Holder
    holder_b_old: Holder
    holder_b_new: Holder
    holder_c: Holder
    request_a: int
    request_b_old: int
    request_b_new: int
    request_c: int
    request_d: int
    request_in_transit: int
    request_overdue: int
    batch_in_transit: int
    batch_received: int


def _authority(session: Session, at: datetime) -> AuthorityRecord:
    row = AuthorityRecord(kind="issuing", subject="CN=Test issuing CA",
                          serial=secrets.token_hex(8), token_label="test-ca", key_id="01",
                          key_type="EC-P256", name_hash="0" * 40, key_hash="0" * 40,
                          not_before=at - timedelta(days=400),
                          not_after=at + timedelta(days=3650), der=b"\x30\x00",
                          crl_number=0, active=True, created_at=at)
    session.add(row)
    session.flush()
    return row


def certificate(session: Session, authority: AuthorityRecord, serial: str, *,
                not_after: datetime, revoked_at: datetime | None = None) -> CertificateRecord:
    """A registry row for a holder certificate (the bytes are placeholders: the queries
    under test never read them)."""
    row = CertificateRecord(
        serial=serial, authority_id=authority.id, profile="holder",
        status=STATUS_REVOKED if revoked_at else STATUS_ISSUED, subject="CN=Holder",
        subject_der=b"\x30\x00", token_label="t", key_id="01", key_type="EC-P256",
        public_key=b"\x30\x00", not_before=not_after - timedelta(days=730),
        not_after=not_after, der=b"\x30\x00", revoked_at=revoked_at,
        revocation_reason="affiliationChanged" if revoked_at else None,
        created_at=not_after - timedelta(days=730), updated_at=not_after)
    session.add(row)
    session.flush()
    return row


def _step(session: Session, clock: FrozenClock, request_id: int, *steps: str) -> None:
    request = session.get(CertificateRequest, request_id)
    assert request is not None
    for step in steps:
        if step == "approve":
            requests.approve_request(session, clock, request_id, actor="operator",
                                     identity_check="CIN checked")
        elif step == "personalise":
            requests.move(session, clock, request, "personalise", actor="operator")
            request.token_label = f"tawqi-r{request.id}-test"
            request.certificate_serial = secrets.token_hex(8)
        elif step == "activate":
            requests.activate_request(session, clock, request_id, actor="holder")
        else:
            requests.move(session, clock, request, step, actor="test")


def _submit(session: Session, clock: FrozenClock, contact: Contact, holder: Holder) -> int:
    return requests.submit_request(session, clock, contact_id=contact.id,
                                   holder_id=holder.id, token_form="device", actor="contact",
                                   year=YEAR).id


def build(session: Session, clock: FrozenClock) -> Scene:
    t = clock.now()
    policy = DeliveryPolicy()
    clock.set(t - timedelta(days=60))
    here = make_contact(session, clock, HERE)
    there = make_contact(session, clock, THERE, email="contact.chefchaouen@interieur.gov.ma")
    authority = _authority(session, t)
    a = make_holder(session, clock, COMMUNE_A, contact=here, given_name_fr="Amina",
                    surname_fr="Alaoui", given_name_ar="أمينة", surname_ar="العلوي")
    b_old = make_holder(session, clock, COMMUNE_B, contact=here, given_name_fr="Brahim",
                        surname_fr="Bennani", given_name_ar="إبراهيم", surname_ar="بناني")
    c = make_holder(session, clock, COMMUNE_C, contact=there, given_name_fr="Chama",
                    surname_fr="Chraibi", given_name_ar="شامة", surname_ar="الشرايبي")
    ids = {name: _submit(session, clock, contact, holder)
           for name, contact, holder in (("a", here, a), ("b", here, b_old), ("c", there, c))}
    for request_id in ids.values():
        _step(session, clock, request_id, "approve", "personalise", "ship", "receive",
              "hand_over")
    clock.set(t - timedelta(days=50))
    _step(session, clock, ids["a"], "activate")
    _step(session, clock, ids["b"], "activate")
    clock.set(t - timedelta(days=40))
    _step(session, clock, ids["c"], "activate")
    serial = {k: session.get(CertificateRequest, v).certificate_serial  # type: ignore[union-attr]
              for k, v in ids.items()}
    certificate(session, authority, serial["a"], not_after=t + timedelta(days=700))
    certificate(session, authority, serial["b"], not_after=t + timedelta(days=700),
                revoked_at=t - timedelta(days=20))
    certificate(session, authority, serial["c"], not_after=t - timedelta(days=5))

    # B's official: personalised, shipped 12 days ago, received 10 days ago, still with
    # the contact.
    clock.set(t - timedelta(days=12))
    official_b = make_holder(session, clock, COMMUNE_B, contact=here, role="official")
    overdue = _submit(session, clock, here, official_b)
    _step(session, clock, overdue, "approve", "personalise")
    first = batches.prepare_batch(session, clock, HERE, actor="operator")
    batches.dispatch_batch(session, clock, first.id, tracking_number="EE123456785MA",
                           actor="operator", policy=policy)
    clock.set(t - timedelta(days=10))
    batches.receive_batch(session, clock, first.id, actor="contact")

    # D's president: approved 10 days ago. A's official: shipped 2 days ago.
    d = make_holder(session, clock, COMMUNE_D, contact=here)
    request_d = _submit(session, clock, here, d)
    _step(session, clock, request_d, "approve")
    clock.set(t - timedelta(days=2))
    official_a = make_holder(session, clock, COMMUNE_A, contact=here, role="official")
    in_transit = _submit(session, clock, here, official_a)
    _step(session, clock, in_transit, "approve", "personalise")
    second = batches.prepare_batch(session, clock, HERE, actor="operator")
    batches.dispatch_batch(session, clock, second.id, tracking_number="EE876543216MA",
                           actor="operator", policy=policy)

    # B's new president, elected: asked for 3 days ago.
    clock.set(t - timedelta(days=3))
    b_new = make_holder(session, clock, COMMUNE_B, contact=here, given_name_fr="Badr",
                        surname_fr="Berrada", given_name_ar="بدر", surname_ar="برادة")
    request_b_new = _submit(session, clock, here, b_new)
    clock.set(t)
    return Scene(t, here, there, a, b_old, b_new, c, ids["a"], ids["b"], request_b_new,
                 ids["c"], request_d, in_transit, overdue, second.id, first.id)
