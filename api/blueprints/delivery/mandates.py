"""Mandates: a holder's history of roles and entities, and a change of mandate (the old
one's certificates revoked ``affiliationChanged``, a request for the new one submitted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from api.delivery_common import COMMUNE, PROVINCE, HolderRole, TokenForm, acting_contact_id
from api.policy import Scope
from api.routing import Call, Routes
from api.schema import rule
from api.wiring.flaskapp import load_authority_first, wiring
from delivery import holders, mandate_change, mandates
from delivery.models import Mandate
from delivery.titles import title_for
from quotas.queries import province_of_commune

routes = Routes()


@dataclass(frozen=True)
class MandateOut:
    id: int
    holder_id: int
    role: str
    title_fr: str
    title_ar: str
    entity_kind: Literal["commune", "services"]
    commune_code: str | None
    province_code: str
    professional_email: str | None
    started_on: date
    ended_on: date | None
    end_reason: str
    successor_id: int | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class MandateChangeIn:
    """The holder's new mandate (a commune's: ``commune_code``; a province's services:
    ``province_code`` alone). With ``token_form``, a request for it is submitted."""

    role: HolderRole
    started_on: date
    reason: str = field(metadata=rule(min_length=1, max_length=200))
    commune_code: str | None = field(default=None, metadata=rule(pattern=COMMUNE))
    province_code: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    professional_email: str | None = field(default=None, metadata=rule(
        min_length=3, max_length=254, format="email"))
    token_form: TokenForm | None = None


@dataclass(frozen=True)
class MandateChangeOut:
    ended: MandateOut
    opened: MandateOut
    revoked_serials: list[str]
    cancelled_requests: list[int]
    request_id: int | None


def mandate_out(m: Mandate, civility: str) -> MandateOut:
    return MandateOut(m.id, m.holder_id, m.role, title_for(m.role, civility, "fr"),
                      title_for(m.role, civility, "ar"),
                      m.entity_kind,  # type: ignore[arg-type]
                      m.commune_code, m.province_code, m.professional_email, m.started_on,
                      m.ended_on, m.end_reason, m.successor_id, m.created_at, m.created_by)


@dataclass(frozen=True)
class MandateListOut:
    items: list[MandateOut]


@routes.operation("GET", "/holders/<id:holder_id>/mandates", action="holders.read",
                  response=MandateListOut, summary="A holder's mandates, oldest first")
def list_mandates(call: Call, holder_id: int) -> MandateListOut:
    holder = holders.get_holder(call.session, holder_id)
    call.authorize(Scope(province_code=holder.province_code, holder_id=holder.id))
    return MandateListOut([mandate_out(m, holder.civility)
                           for m in mandates.history(call.session, holder_id)])


@routes.operation("POST", "/holders/<id:holder_id>/mandates", action="mandates.change",
                  body=MandateChangeIn, response=MandateChangeOut, status=201,
                  idempotency="optional", errors=(409, 503), prepare=load_authority_first,
                  summary="Change a holder's mandate: the old one ends, its certificates are "
                          "revoked (affiliationChanged), a request for the new one follows")
def change_mandate(call: Call, holder_id: int, body: MandateChangeIn) -> MandateChangeOut:
    holder = holders.get_holder(call.session, holder_id)
    call.authorize(Scope(province_code=holder.province_code))
    new_province = body.province_code
    if body.commune_code:
        new_province = province_of_commune(call.session, body.commune_code) or new_province
    if new_province:
        call.authorize(Scope(province_code=new_province))
    acting = acting_contact_id(call, holder.province_code)
    authority = wiring().authority()
    result = mandate_change.change_mandate(
        call.session, call.clock, holder_id, mandate_change.MandateChange(
            role=body.role, started_on=body.started_on, commune_code=body.commune_code,
            province_code=body.province_code, professional_email=body.professional_email,
            reason=body.reason),
        actor=call.actor,
        revoke=mandate_change.lifecycle_revoker(call.session, call.clock, authority),
        token_form=body.token_form, acting_contact_id=acting)
    return MandateChangeOut(mandate_out(result.ended, holder.civility),
                            mandate_out(result.opened, holder.civility), list(result.revoked),
                            list(result.cancelled_requests),
                            result.request.id if result.request is not None else None)
