"""Election campaigns, the database side: opening, the all-or-nothing import with every
error and its line number, the re-elected recognised, the vice-president who becomes
president, extra allotments billed to the DGCL, and the report before installation.
Revocation at installation runs on the real CA in tests/api/test_campaigns_api.py."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from delivery import campaigns, mandates
from delivery.messages import render
from delivery.models import CampaignEntry, CertificateRequest, Holder, OutboxMessage
from quotas import ledger
from tests.delivery.conftest import (
    COMMUNE_A,
    COMMUNE_B,
    OTHER_PROVINCE_COMMUNE,
    PROVINCE,
    make_contact,
    make_holder,
    random_cin,
)

HEADER = ",".join(campaigns.CSV_COLUMNS)


def _line(commune: str, role: str, cin: str, *, civility: str = "M",
          phone: str = "0661234567", email: str = "elu@example.ma",
          given: str = "Ahmed") -> str:
    return f"{commune},{role},{cin},{given},Alaoui,أحمد,العلوي,{civility},{phone},{email}"


def _open(session: Session, clock: FrozenClock, **changes: object) -> int:
    values: dict[str, object] = {
        "name": f"Communales {random_cin()}", "scope_kind": "province",
        "scope_codes": [PROVINCE], "funding": "quota",
        "installation_date": clock.now().date() + timedelta(days=20)}
    values.update(changes)
    return campaigns.open_campaign(session, clock, actor="dgcl", **values).id  # type: ignore[arg-type]


def test_opening_checks_its_scope_and_name(session: Session, clock: FrozenClock) -> None:
    with pytest.raises(campaigns.InvalidCampaign):
        _open(session, clock, scope_kind="province", scope_codes=["99.999"])
    with pytest.raises(campaigns.InvalidCampaign):
        _open(session, clock, scope_kind="communes", scope_codes=["01.051.01.01", "nope"])
    with pytest.raises(campaigns.InvalidCampaign):
        _open(session, clock, funding="free")
    first = _open(session, clock, name="Communales 2027", scope_kind="nation", scope_codes=[])
    with pytest.raises(campaigns.CampaignExists):
        _open(session, clock, name="Communales 2027")
    assert campaigns.get_campaign(session, first).status == "open"


def test_every_error_with_its_line_and_nothing_imported(session: Session,
                                                        clock: FrozenClock) -> None:
    make_contact(session, clock)
    campaign = _open(session, clock)
    good = random_cin()
    text = "\n".join([
        HEADER,
        _line(COMMUNE_A, "president", good),
        _line(COMMUNE_B, "president", "123"),  # line 3: CIN
        _line(OTHER_PROVINCE_COMMUNE, "president", random_cin()),  # 4: out of scope
        _line(COMMUNE_A, "president", random_cin()),  # 5: seat taken on line 2
        _line(COMMUNE_B, "mayor", random_cin()),  # 6: role
        _line(COMMUNE_B, "vice_president", random_cin(), civility="Dr"),  # 7: civility
        _line(COMMUNE_B, "official", random_cin(), phone="12"),  # 8: phone
        _line(COMMUNE_B, "secretary_general", good),  # 9: CIN on line 2
        "01.051.01.01,president",  # 10: columns
    ])
    holders_before = session.scalar(select(func.count(Holder.id)))
    with pytest.raises(campaigns.CampaignImportInvalid) as err:
        campaigns.import_elected(session, clock, campaign, text, actor="dgcl")
    found = [(e["line"], e["field"]) for e in err.value.extras["errors"]]
    assert found == [(3, "cin"), (4, "commune_code"), (5, "role"), (6, "role"),
                     (7, "civility"), (8, "phone"), (9, "cin"), (10, "")]
    # each with a reason and plain parameters, for the pages to say it in their language
    reasons = [(e["reason"], e["params"]) for e in err.value.extras["errors"]]
    assert reasons == [
        ("invalid", {}), ("out_of_scope", {"code": OTHER_PROVINCE_COMMUNE}),
        ("seat_taken", {"role": "president", "code": COMMUNE_A, "first": 2}),
        ("invalid", {}), ("invalid", {}), ("invalid", {}),
        ("cin_repeated", {"cin": good, "first": 2}),
        ("columns", {"count": 2, "expected": len(campaigns.CSV_COLUMNS)})]
    assert session.scalar(select(func.count(Holder.id))) == holders_before
    assert session.scalar(select(func.count(CampaignEntry.id))) == 0
    with pytest.raises(campaigns.CampaignImportInvalid) as err:
        campaigns.import_elected(session, clock, campaign, "cin,name\n", actor="dgcl")
    assert err.value.extras["errors"][0]["line"] == 1
    assert err.value.extras["errors"][0]["reason"] == "header"


def test_re_elected_replaced_and_promoted(session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    kept = make_holder(session, clock, COMMUNE_A, contact=contact)  # re-elected president
    leaving = make_holder(session, clock, COMMUNE_B, contact=contact)  # replaced
    promoted = make_holder(session, clock, COMMUNE_B, contact=contact, role="vice_president",
                           civility="mrs")
    campaign = _open(session, clock, funding="extra")
    installation = campaigns.get_campaign(session, campaign).installation_date
    year = installation.year
    newcomer = random_cin()
    text = "\n".join([
        HEADER,
        _line(COMMUNE_A, "president", kept.cin, civility="Mme"),  # corrects the record
        _line(COMMUNE_B, "president", promoted.cin, civility="F"),
        _line(COMMUNE_B, "vice_president", newcomer, civility="Mme", given="Salma"),
    ])
    steps: list[tuple[int, int]] = []
    result = campaigns.import_elected(session, clock, campaign, text, actor="dgcl",
                                      progress=lambda done, total: steps.append((done, total)))
    assert steps[-1] == (3, 3)
    assert (result.re_elected, result.changed_mandate, result.new_holders,
            result.requests, result.outgoing) == (1, 1, 1, 2, 1)
    # the re-elected president keeps the mandate (and certificate): no request
    assert kept.civility == "mrs"
    assert mandates.current_mandate(session, kept.id) is not None
    assert session.scalar(select(func.count(CertificateRequest.id)).where(
        CertificateRequest.holder_id == kept.id)) == 0
    # the outgoing president's mandate ends at installation
    assert mandates.current_mandate(session, leaving.id) is None
    [ended] = mandates.history(session, leaving.id)
    assert ended.ended_on == installation
    # the vice-president becomes president from the installation, her request is for it
    old, new = mandates.history(session, promoted.id)
    assert (old.role, old.ended_on, old.successor_id) == ("vice_president", installation,
                                                          new.id)
    assert (new.role, new.started_on, new.campaign_id) == ("president", installation,
                                                            campaign)
    request = session.scalar(select(CertificateRequest).where(
        CertificateRequest.holder_id == promoted.id))
    assert request is not None and request.mandate_id == new.id and request.year == year
    # funded by an extra allotment billed to the DGCL, one per replaced seat
    billed = ledger.extra_allotments(session, year, billed_to="DGCL")
    assert sorted(b.entity_code for b in billed) == [COMMUNE_B, COMMUNE_B]
    # before installation everyone can still sign (or will, with the outgoing certificate)
    found = campaigns.report(session, clock, campaign)
    assert len(found.seats) == 3 and found.blocked == ()
    assert {s.role: s.request_status for s in found.seats if s.commune_code == COMMUNE_B} \
        == {"president": "submitted", "vice_president": "submitted"}
    # the holders' cached role and commune repeat their latest mandates
    newcomer_id = session.scalar(select(Holder.id).where(Holder.cin == newcomer))
    assert mandates.cache_disagreements(
        session, [kept.id, leaving.id, promoted.id, newcomer_id or 0]) == []
    assert (promoted.role, leaving.role) == ("president", "president")
    # importing the same seats again is refused, and nothing doubles
    with pytest.raises(campaigns.CampaignImportInvalid):
        campaigns.import_elected(session, clock, campaign, text, actor="dgcl")


def test_after_installation_unserved_seats_are_blocked_and_contacts_told(
        session: Session, clock: FrozenClock) -> None:
    contact = make_contact(session, clock)
    make_holder(session, clock, COMMUNE_B, contact=contact)
    campaign = _open(session, clock, installation_date=clock.now().date())
    campaigns.import_elected(session, clock, campaign, "\n".join([
        HEADER, _line(COMMUNE_B, "president", random_cin()),
        _line(COMMUNE_A, "president", random_cin())]), actor="dgcl")
    result = campaigns.install(session, clock, campaign, actor="dgcl", revoke=None)
    assert result.revoked == ()  # the outgoing president had no certificate
    clock.advance(timedelta(days=3))
    found = campaigns.report(session, clock, campaign)
    assert [s.commune_code for s in found.blocked] == [COMMUNE_B, COMMUNE_A]  # by code
    assert all(s.blocked_since == date.fromisoformat(str(found.campaign.installation_date))
               and s.gap_days == 3 for s in found.blocked)
    assert campaigns.notify_contacts(session, clock, campaign, actor="dgcl") == 1
    assert campaigns.notify_contacts(session, clock, campaign, actor="dgcl") == 1  # same day
    mail = session.scalars(select(OutboxMessage).where(
        OutboxMessage.template == "campaign.status")).all()
    assert len(mail) == 1 and mail[0].recipient == contact.email
    body = render("campaign.status", "email", json.loads(mail[0].params)).body
    assert "2 sièges ; sans personne pouvant signer : 2" in body
    assert "مقعدان؛ المقاعد بدون أي شخص يمكنه التوقيع: 2" in body
    assert "Président du conseil de la commune / رئيس مجلس الجماعة" in body
    assert "demande soumise / طلب مقدم" in body and "BLOQUÉE depuis le" in body
    assert not re.search(r"\b(president|submitted|réélu\(e\))\b", body)
    # The periodic job: the next day again while seats stay blocked, and not after the
    # follow-up window.
    clock.advance(timedelta(days=1))
    assert campaigns.send_campaign_notices(session, clock, actor="worker") == 1
    clock.advance(timedelta(days=40))
    assert campaigns.send_campaign_notices(session, clock, actor="worker") == 0
    mail = session.scalars(select(OutboxMessage).where(
        OutboxMessage.template == "campaign.status")).all()
    assert len(mail) == 2
