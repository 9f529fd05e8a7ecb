"""Holders: registration, their records, and a change of mobile or email confirmed by code."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from flask import url_for

from api.delivery_common import CIN, COMMUNE, PROVINCE, Civility, HolderRole, acting_contact_id
from api.policy import Scope, merge_filter
from api.routing import Call, Routes
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import wiring
from delivery import (
    contact_change,
    holders,
)
from delivery.models import Holder
from delivery.validation import (
    PHONE_MAX_LENGTH,
    PHONE_MIN_LENGTH,
)
from quotas.queries import province_of_commune

routes = Routes()


@dataclass(frozen=True)
class HolderIn:
    """A holder of a commune (``commune_code``) or of a province's Interior services
    (``province_code`` alone)."""

    cin: str = field(metadata=rule(pattern=CIN, description="e.g. AB123456"))
    given_name_fr: str = field(metadata=rule(min_length=1, max_length=100))
    surname_fr: str = field(metadata=rule(min_length=1, max_length=100))
    given_name_ar: str = field(metadata=rule(min_length=1, max_length=100))
    surname_ar: str = field(metadata=rule(min_length=1, max_length=100))
    role: HolderRole
    mobile: str = field(metadata=rule(min_length=PHONE_MIN_LENGTH, max_length=PHONE_MAX_LENGTH,
                                      description="Moroccan mobile, e.g. 0612345678"))
    email: str = field(metadata=rule(min_length=3, max_length=254, format="email"))
    commune_code: str | None = field(default=None, metadata=rule(pattern=COMMUNE))
    province_code: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    professional_email: str | None = field(default=None, metadata=rule(
        min_length=3, max_length=254, format="email"))
    civility: Civility = field(default="mr", metadata=rule(
        description="mr (Monsieur, السيد) or mrs (Madame, السيدة): titles agree with it"))


@dataclass(frozen=True)
class HolderOut:
    id: int
    cin: str
    given_name_fr: str
    surname_fr: str
    given_name_ar: str
    surname_ar: str
    civility: str
    role: str
    entity_kind: Literal["commune", "services"]
    commune_code: str | None
    province_code: str
    mobile: str
    email: str
    professional_email: str | None
    created_at: datetime


@dataclass(frozen=True)
class HolderQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    commune: str | None = field(default=None, metadata=rule(pattern=COMMUNE))


@dataclass(frozen=True)
class HolderContactIn:
    mobile: str | None = field(default=None, metadata=rule(min_length=PHONE_MIN_LENGTH,
                                                           max_length=PHONE_MAX_LENGTH))
    email: str | None = field(default=None, metadata=rule(min_length=3, max_length=254))
    professional_email: str | None = field(default=None, metadata=rule(min_length=3,
                                                                       max_length=254))


@dataclass(frozen=True)
class PendingChangeOut:
    """A new mobile (``sms``) or email waiting for the holder's code; the value masked."""

    change_id: str
    channel: Literal["sms", "email"]
    new_hint: str
    expires_at: datetime
    requested_by: str


@dataclass(frozen=True)
class HolderContactOut:
    """The holder as it stands (PINs and codes still go to these values) and the changes
    that wait for the holder's confirmation."""

    holder: HolderOut
    awaiting_confirmation: list[PendingChangeOut]


@dataclass(frozen=True)
class HolderCivilityIn:
    civility: Civility


@dataclass(frozen=True)
class HolderContactConfirmIn:
    channel: Literal["sms", "email"]
    code: str = field(metadata=rule(pattern=r"^[0-9]{4,10}$", write_only=True))


def holder_out(h: Holder) -> HolderOut:
    return HolderOut(h.id, h.cin, h.given_name_fr, h.surname_fr, h.given_name_ar,
                     h.surname_ar, h.civility, h.role, h.entity_kind,  # type: ignore[arg-type]
                     h.commune_code, h.province_code, h.mobile, h.email,
                     h.professional_email, h.created_at)


@routes.operation("GET", "/holders", action="holders.read", query=HolderQuery,
                  response=page_of(HolderOut), summary="Holders")
def list_holders(call: Call, query: HolderQuery) -> object:
    scope = call.list_scope()
    if scope.holder_id is not None:  # a holder: their own record, whatever the filters
        found = holders.list_holders(call.session, holder_id=scope.holder_id,
                                     limit=query.limit, offset=query.offset)
    else:
        found = holders.list_holders(call.session,
                                     province_code=merge_filter(scope,
                                                                province_code=query.province),
                                     commune_code=query.commune, limit=query.limit,
                                     offset=query.offset)
    return make_page(HolderOut, [holder_out(h) for h in found.items], found.total,
                     query.limit, query.offset)


@routes.operation("POST", "/holders", action="holders.write", body=HolderIn, response=HolderOut,
                  status=201, idempotency="optional", errors=(409,),
                  summary="Register a holder (a contact: only in their province)")
def register_holder(call: Call, body: HolderIn) -> HolderOut:
    province = body.province_code
    if body.commune_code:
        province = province_of_commune(call.session, body.commune_code) or province
    call.authorize(Scope(province_code=province))
    contact_id = acting_contact_id(call, province) if province else None
    holder = holders.register_holder(call.session, call.clock, holders.HolderRegistration(
        cin=body.cin, given_name_fr=body.given_name_fr, surname_fr=body.surname_fr,
        given_name_ar=body.given_name_ar, surname_ar=body.surname_ar, role=body.role,
        mobile=body.mobile, email=body.email, commune_code=body.commune_code,
        province_code=body.province_code, professional_email=body.professional_email,
        civility=body.civility),
        actor=call.actor, contact_id=contact_id)
    call.location = url_for("delivery.get_holder", holder_id=holder.id)
    return holder_out(holder)


@routes.operation("GET", "/holders/<id:holder_id>", action="holders.read", response=HolderOut,
                  summary="One holder")
def get_holder(call: Call, holder_id: int) -> HolderOut:
    holder = holders.get_holder(call.session, holder_id)
    call.authorize(Scope(province_code=holder.province_code, holder_id=holder.id))
    return holder_out(holder)


@routes.operation("POST", "/holders/<id:holder_id>/contact-details", action="holders.write",
                  body=HolderContactIn, response=HolderContactOut, errors=(503,),
                  summary="Change where a holder's notifications go (a new mobile or email "
                          "waits for the holder's confirmation; the old ones are told)")
def update_holder_contact(call: Call, holder_id: int,
                          body: HolderContactIn) -> HolderContactOut:
    holder = holders.get_holder(call.session, holder_id)
    call.authorize(Scope(province_code=holder.province_code, holder_id=holder.id))
    root = wiring()
    sealer = root.sealer() if body.mobile is not None or body.email is not None else None
    updated = holders.update_contact_details(
        call.session, call.clock, holder_id, actor=call.actor, sealer=sealer,
        policy=root.policy, mobile=body.mobile, email=body.email,
        professional_email=body.professional_email)
    return HolderContactOut(holder_out(updated), [
        PendingChangeOut(p.change_id, p.channel, p.new_hint,  # type: ignore[arg-type]
                         p.expires_at, p.requested_by)
        for p in contact_change.pending_changes(call.session, call.clock, holder_id)])


@routes.operation("POST", "/holders/<id:holder_id>/contact-details/confirm",
                  action="holder.contact", body=HolderContactConfirmIn, response=HolderOut,
                  rate_limit="otp", transactional=False, errors=(404, 409),
                  summary="Confirm my new mobile or email with the code sent to it")
def confirm_holder_contact(call: Call, holder_id: int,
                           body: HolderContactConfirmIn) -> HolderOut:
    with call.runtime.unit_of_work() as session:
        holder = holders.get_holder(session, holder_id)
        call.authorize(Scope(province_code=holder.province_code, holder_id=holder.id))
    return holder_out(contact_change.confirm_change(
        call.runtime.sessions, call.clock, holder_id=holder_id, channel=body.channel,
        code=body.code, actor=call.actor))


@routes.operation("POST", "/holders/<id:holder_id>/civility", action="holders.write",
                  body=HolderCivilityIn, response=HolderOut, idempotency="optional",
                  summary="Correct a holder's civility (titles agree with it)")
def set_holder_civility(call: Call, holder_id: int, body: HolderCivilityIn) -> HolderOut:
    holder = holders.get_holder(call.session, holder_id)
    call.authorize(Scope(province_code=holder.province_code))
    return holder_out(holders.set_civility(call.session, call.clock, holder_id, body.civility,
                                           actor=call.actor))
