"""Delivery's lists: filters applied in SQL, windows that tile the whole list, exact totals.

The data of each test lives in a province no other test uses (Larache), or is picked out
by a filter on something the test created (its contact, its holder), so that committed
rows of other tests cannot change what is asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.clock import FrozenClock
from core.listing import Page
from delivery import batches, contacts, holders, outbox, requests
from delivery.messages import TEMPLATES
from delivery.models import BATCH_PREPARING, SUBMITTED, CertificateRequest
from delivery.outbox import Notification
from delivery.personalisation import personalise_request
from delivery.policy import DeliveryPolicy
from tests.delivery.conftest import (
    KeyOnlyPersonaliser,
    ServiceTokens,
    make_contact,
    make_holder,
)

PROVINCE = "01.331"  # Larache
COMMUNES = ("01.331.11.12", "01.331.11.13")  # Souaken, Souk Tolba
POLICY = DeliveryPolicy()


def ids(items: list[Any]) -> list[Any]:
    return [getattr(item, "id", getattr(item, "request_id", None)) for item in items]


def assert_tiles(fetch: Callable[..., Page[Any]], size: int) -> list[Any]:
    """Windows of ``size`` cover the whole list, in order, each with the full total."""
    whole = fetch(limit=None, offset=0)
    assert whole.total == len(whole.items)
    seen: list[Any] = []
    for offset in range(0, whole.total + size, size):
        page = fetch(limit=size, offset=offset)
        assert page.total == whole.total and len(page.items) <= size
        seen.extend(ids(page.items))
    assert seen == ids(whole.items)
    return whole.items


def test_contacts(session: Session, clock: FrozenClock) -> None:
    designated = []
    for n in range(3):
        clock.advance(timedelta(days=1))
        designated.append(make_contact(session, clock, PROVINCE,
                                       decision_reference=f"DEC-LIST-{n}").id)
    current = contacts.list_contacts(session, province_code=PROVINCE)
    assert ids(current.items) == [designated[-1]] and current.total == 1
    everyone = assert_tiles(lambda **w: contacts.list_contacts(
        session, province_code=PROVINCE, include_inactive=True, **w), 2)
    assert ids(everyone)[-3:] == designated
    assert {c.province_code for c in everyone} == {PROVINCE}


def test_holders(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock, PROVINCE)
    made = [make_holder(session, clock, COMMUNES[n % 2], contact=contact).id
            for n in range(5)]
    listed = assert_tiles(lambda **w: holders.list_holders(
        session, province_code=PROVINCE, **w), 2)
    assert set(made) <= set(ids(listed))
    in_commune = holders.list_holders(session, commune_code=COMMUNES[0], limit=None)
    assert {h.commune_code for h in in_commune.items} == {COMMUNES[0]}
    assert set(made[0::2]) <= set(ids(in_commune.items))
    one = holders.list_holders(session, holder_id=made[3])
    assert ids(one.items) == [made[3]] and one.total == 1
    elsewhere = holders.list_holders(session, holder_id=made[3], province_code="01.051")
    assert elsewhere == Page([], 0)


def test_requests(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock, PROVINCE)
    made = []
    for n in range(4):
        holder = make_holder(session, clock, COMMUNES[n % 2], contact=contact)
        made.append(requests.submit_request(session, clock, contact_id=contact.id,
                                            holder_id=holder.id, token_form="device",
                                            actor="contact"))
    requests.approve_request(session, clock, made[1].id, actor="ra", identity_check="ok")
    mine = assert_tiles(lambda **w: requests.list_requests(
        session, contact_id=contact.id, **w), 3)
    assert ids(mine) == [r.id for r in made]  # oldest first
    waiting = requests.list_requests(session, contact_id=contact.id, status=SUBMITTED)
    assert ids(waiting.items) == [made[0].id, made[2].id, made[3].id]
    theirs = requests.list_requests(session, holder_id=made[2].holder_id)
    assert ids(theirs.items) == [made[2].id] and theirs.total == 1
    window = requests.list_requests(session, contact_id=contact.id, limit=2, offset=1)
    assert ids(window.items) == [made[1].id, made[2].id] and window.total == 4


def _personalised(session: Session, clock: FrozenClock, service_tokens: ServiceTokens,
                  contact_id: int, commune: str) -> CertificateRequest:
    holder = make_holder(session, clock, commune)
    request = requests.submit_request(session, clock, contact_id=contact_id,
                                      holder_id=holder.id, token_form="device",
                                      actor="contact")
    requests.approve_request(session, clock, request.id, actor="ra", identity_check="ok")
    personalise_request(session, clock, request.id,
                        personaliser=KeyOnlyPersonaliser(service_tokens.library,
                                                         service_tokens.so_pin),
                        sealer=service_tokens.sealer, actor="operator", policy=POLICY)
    return request


def test_batches_and_overdue_handovers(session: Session, clock: FrozenClock,
                                       service_tokens: ServiceTokens) -> None:
    contact = make_contact(session, clock, PROVINCE)
    tokens = [_personalised(session, clock, service_tokens, contact.id, COMMUNES[n % 2])
              for n in range(3)]
    batch = batches.prepare_batch(session, clock, PROVINCE, actor="operator")
    assert batches.request_ids_by_batch(session, [batch.id, -1]) == {
        batch.id: [t.id for t in tokens], -1: []}
    preparing = batches.list_batches(session, province_code=PROVINCE, status=BATCH_PREPARING)
    assert ids(preparing.items) == [batch.id]
    assert_tiles(lambda **w: batches.list_batches(session, province_code=PROVINCE, **w), 1)

    batches.dispatch_batch(session, clock, batch.id, tracking_number="EE123456785MA",
                           actor="operator", policy=POLICY)
    batches.receive_batch(session, clock, batch.id, actor="contact", contact_id=contact.id)
    batches.record_handover(session, clock, tokens[1].id, handed_to="the holder",
                            acknowledgement="R-1", actor="contact", contact_id=contact.id,
                            policy=POLICY)
    assert batches.overdue_handovers(session, clock, overdue_days=7,
                                     province_code=PROVINCE) == Page([], 0)
    clock.advance(timedelta(days=8))
    late = assert_tiles(lambda **w: batches.overdue_handovers(
        session, clock, overdue_days=7, province_code=PROVINCE, **w), 1)
    assert [o.request_id for o in late] == [tokens[0].id, tokens[2].id]
    assert {o.days_waiting for o in late} == {8}
    second = batches.overdue_handovers(session, clock, overdue_days=7,
                                       province_code=PROVINCE, limit=1, offset=1)
    assert [o.request_id for o in second.items] == [tokens[2].id] and second.total == 2


def test_outbox_messages(session: Session, clock: FrozenClock) -> None:
    holder = make_holder(session, clock, COMMUNES[0])
    fields = TEMPLATES["batch.dispatched"].fields()
    made = []
    for n in range(5):
        made.append(outbox.enqueue(session, clock, Notification(
            channel="email", recipient=f"list{n}@example.ma", template="batch.dispatched",
            dedupe_key=f"test-lists:{holder.id}:{n}", params={f: "x" for f in fields},
            holder_id=holder.id)).id)
    newest_first = assert_tiles(lambda **w: outbox.list_messages(
        session, holder_id=holder.id, **w), 2)
    assert ids(newest_first) == made[::-1]
    pending = outbox.list_messages(session, holder_id=holder.id, status="pending", limit=3)
    assert pending.total == 5 and ids(pending.items) == made[:1:-1]
    assert outbox.list_messages(session, holder_id=holder.id, status="sent").total == 0
