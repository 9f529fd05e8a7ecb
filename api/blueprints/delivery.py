"""Delivery: designated contacts, holders, certificate requests, courier batches, hand-over,
terms of use, PIN change and reset, the notification outbox and provincial overviews.

Views parse, authorise (``api.policy``), call :mod:`delivery` and serialise. A contact acts
on their own province only (and as that province's designated contact); a holder on their
own records only. PINs and codes cross these views on their way to the services and are
never echoed, logged or stored here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from flask import url_for
from sqlalchemy.orm import Session

from api.policy import Scope, merge_filter
from api.routing import ApiBlueprint, Call
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import load_authority_first, wiring
from core.errors import InvalidInput
from delivery import (
    batches,
    contact_change,
    contacts,
    holders,
    outbox,
    personalisation,
    pins,
    requests,
    reset,
)
from delivery.errors import ContactNotFound
from delivery.models import CertificateRequest as RequestRow
from delivery.models import Contact, CourierBatch, Holder, OutboxMessage
from quotas.queries import province_of_commune

bp = ApiBlueprint("delivery", __name__, url_prefix="/v1", tag="Delivery",
                  description="Contacts, holders, certificate requests, courier batches, "
                              "hand-over, terms of use, PINs and notifications.")

PROVINCE = r"^[0-9]{2}\.[0-9]{3}$"
COMMUNE = r"^[0-9]{2}\.[0-9]{3}\.[0-9]{2}\.[0-9]{2}$"
CIN = r"^[A-Za-z]{1,2}[0-9]{1,8}$"
PIN = r"^[0-9]{4,16}$"
HolderRole = Literal["president", "vice_president", "secretary_general", "official"]
RequestStatus = Literal["submitted", "approved", "personalised", "shipped", "delivered",
                        "handed_over", "active", "rejected", "cancelled"]
TokenForm = Literal["device", "hosted"]
BatchStatus = Literal["preparing", "dispatched", "received"]
OutboxStatus = Literal["pending", "sending", "sent", "dead"]


# --------------------------------------------------------------------------- contacts


@dataclass(frozen=True)
class ContactIn:
    """The governor's designation of a province's contact (replaces the current one)."""

    province_code: str = field(metadata=rule(pattern=PROVINCE))
    full_name: str = field(metadata=rule(min_length=1, max_length=200))
    title: str = field(metadata=rule(min_length=1, max_length=200))
    phone: str = field(metadata=rule(min_length=6, max_length=20))
    postal_address: str = field(metadata=rule(min_length=1, max_length=500))
    email: str = field(metadata=rule(min_length=3, max_length=254, format="email"))
    decision_reference: str = field(metadata=rule(min_length=1, max_length=100))
    decision_date: date
    designated_by: str = field(metadata=rule(min_length=1, max_length=200))


@dataclass(frozen=True)
class ContactOut:
    id: int
    province_code: str
    full_name: str
    title: str
    phone: str
    postal_address: str
    email: str
    decision_reference: str
    decision_date: date
    designated_by: str
    active: bool
    designated_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ContactQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    include_inactive: bool = False


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(c.id, c.province_code, c.full_name, c.title, c.phone, c.postal_address,
                      c.email, c.decision_reference, c.decision_date, c.designated_by,
                      c.active, c.designated_at, c.ended_at)


@bp.operation("GET", "/contacts", action="contacts.read", query=ContactQuery,
              response=page_of(ContactOut), summary="Designated contacts")
def list_contacts(call: Call, query: ContactQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = contacts.list_contacts(call.session, province_code=province,
                                   include_inactive=query.include_inactive,
                                   limit=query.limit, offset=query.offset)
    return make_page(ContactOut, [contact_out(c) for c in found.items], found.total,
                     query.limit, query.offset)


@bp.operation("POST", "/contacts", action="contacts.write", body=ContactIn,
              response=ContactOut, status=201, idempotency="optional",
              summary="Register a province's designated contact")
def designate_contact(call: Call, body: ContactIn) -> ContactOut:
    call.authorize(Scope(province_code=body.province_code))
    contact = contacts.designate_contact(call.session, call.clock, contacts.ContactDesignation(
        body.province_code, body.full_name, body.title, body.phone, body.postal_address,
        body.email, body.decision_reference, body.decision_date, body.designated_by),
        actor=call.actor)
    call.location = url_for("delivery.get_contact", contact_id=contact.id)
    return contact_out(contact)


@bp.operation("GET", "/contacts/<id:contact_id>", action="contacts.read",
              response=ContactOut, summary="One designated contact")
def get_contact(call: Call, contact_id: int) -> ContactOut:
    contact = contacts.get_contact(call.session, contact_id)
    call.authorize(Scope(province_code=contact.province_code))
    return contact_out(contact)


def acting_contact_id(call: Call, province_code: str) -> int | None:
    """For a contact: their province's designated contact record (they act as it)."""
    if call.user.role != "contact":
        return None
    contact = contacts.active_contact(call.session, province_code)
    if contact is None:
        raise ContactNotFound(f"province {province_code} has no designated contact",
                              province_code=province_code)
    return contact.id


# --------------------------------------------------------------------------- holders


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
    mobile: str = field(metadata=rule(min_length=6, max_length=20,
                                      description="Moroccan mobile, e.g. 0612345678"))
    email: str = field(metadata=rule(min_length=3, max_length=254, format="email"))
    commune_code: str | None = field(default=None, metadata=rule(pattern=COMMUNE))
    province_code: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    professional_email: str | None = field(default=None, metadata=rule(
        min_length=3, max_length=254, format="email"))


@dataclass(frozen=True)
class HolderOut:
    id: int
    cin: str
    given_name_fr: str
    surname_fr: str
    given_name_ar: str
    surname_ar: str
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
    mobile: str | None = field(default=None, metadata=rule(min_length=6, max_length=20))
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
class HolderContactConfirmIn:
    channel: Literal["sms", "email"]
    code: str = field(metadata=rule(pattern=r"^[0-9]{4,10}$", write_only=True))


def holder_out(h: Holder) -> HolderOut:
    return HolderOut(h.id, h.cin, h.given_name_fr, h.surname_fr, h.given_name_ar,
                     h.surname_ar, h.role, h.entity_kind,  # type: ignore[arg-type]
                     h.commune_code, h.province_code, h.mobile, h.email,
                     h.professional_email, h.created_at)


@bp.operation("GET", "/holders", action="holders.read", query=HolderQuery,
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


@bp.operation("POST", "/holders", action="holders.write", body=HolderIn, response=HolderOut,
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
        province_code=body.province_code, professional_email=body.professional_email),
        actor=call.actor, contact_id=contact_id)
    call.location = url_for("delivery.get_holder", holder_id=holder.id)
    return holder_out(holder)


@bp.operation("GET", "/holders/<id:holder_id>", action="holders.read", response=HolderOut,
              summary="One holder")
def get_holder(call: Call, holder_id: int) -> HolderOut:
    holder = holders.get_holder(call.session, holder_id)
    call.authorize(Scope(province_code=holder.province_code, holder_id=holder.id))
    return holder_out(holder)


@bp.operation("POST", "/holders/<id:holder_id>/contact-details", action="holders.write",
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


@bp.operation("POST", "/holders/<id:holder_id>/contact-details/confirm",
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


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestIn:
    holder_id: int = field(metadata=rule(minimum=1, maximum=2_147_483_647))
    token_form: TokenForm
    year: int | None = field(default=None, metadata=rule(
        minimum=2000, maximum=2100, description="Quota year (default: this year)."))


@dataclass(frozen=True)
class RequestOut:
    id: int
    holder_id: int
    province_code: str
    entity: str
    year: int
    token_form: TokenForm
    status: RequestStatus
    status_reason: str
    allowed_steps: list[str]
    certificate_serial: str | None
    certificate_not_after: datetime | None
    batch_id: int | None
    pin_sent_at: datetime | None
    handed_over_to: str | None
    handed_over_at: datetime | None
    terms_version: str | None
    terms_accepted_at: datetime | None
    pin_change_required: bool
    pin_changed_at: datetime | None
    submitted_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StepOut:
    status: str
    at: datetime
    actor: str
    note: str


@dataclass(frozen=True)
class RequestDetailOut:
    request: RequestOut
    timeline: list[StepOut]
    ready_to_sign: bool
    not_ready_reasons: list[str]


@dataclass(frozen=True)
class RequestQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    status: RequestStatus | None = None
    holder_id: int | None = field(default=None, metadata=rule(minimum=1,
                                                              maximum=2_147_483_647))


@dataclass(frozen=True)
class ApproveIn:
    identity_check: str = field(metadata=rule(
        min_length=1, max_length=500,
        description="How the identity was checked, e.g. 'CIN copy and council minutes'."))


@dataclass(frozen=True)
class ReasonIn:
    reason: str = field(metadata=rule(min_length=1, max_length=500))


@dataclass(frozen=True)
class HandoverIn:
    handed_to: str = field(metadata=rule(min_length=1, max_length=200,
                                         description="The holder, or whom they mandated."))
    acknowledgement: str = field(metadata=rule(
        min_length=1, max_length=500, description="e.g. the signed receipt's reference"))
    at: datetime | None = field(default=None, metadata=rule(
        description="When it happened, if earlier than now."))


@dataclass(frozen=True)
class TermsIn:
    version: str = field(metadata=rule(min_length=1, max_length=50))


@dataclass(frozen=True)
class PinChangeIn:
    old_pin: str = field(metadata=rule(pattern=PIN, write_only=True))
    new_pin: str = field(metadata=rule(pattern=PIN, write_only=True))


def request_out(r: RequestRow) -> RequestOut:
    return RequestOut(r.id, r.holder_id, r.province_code, r.entity, r.year,
                      r.token_form, r.status,  # type: ignore[arg-type]
                      r.status_reason, requests.allowed_steps(r), r.certificate_serial,
                      r.certificate_not_after, r.batch_id, r.pin_sent_at, r.handed_over_to,
                      r.handed_over_at, r.terms_version, r.terms_accepted_at,
                      r.pin_change_required, r.pin_changed_at, r.submitted_at, r.updated_at)


def _scope(r: RequestRow) -> Scope:
    return Scope(province_code=r.province_code, holder_id=r.holder_id)


def _load(call: Call, request_id: int, action: str | None = None) -> RequestRow:
    found = requests.get_request(call.session, request_id)
    call.authorize(_scope(found), action)
    return found


@bp.operation("GET", "/requests", action="requests.read", query=RequestQuery,
              response=page_of(RequestOut), summary="Certificate requests")
def list_requests(call: Call, query: RequestQuery) -> object:
    scope = call.list_scope()
    province = merge_filter(scope, province_code=query.province)
    holder_id = query.holder_id
    if scope.holder_id is not None:
        if holder_id not in (None, scope.holder_id):
            from api.errors import OutOfScope

            raise OutOfScope("a holder sees only their own requests")
        holder_id = scope.holder_id
    found = requests.list_requests(call.session, province_code=province, status=query.status,
                                   holder_id=holder_id, limit=query.limit,
                                   offset=query.offset)
    return make_page(RequestOut, [request_out(r) for r in found.items], found.total,
                     query.limit, query.offset)


@bp.operation("POST", "/requests", action="requests.create", body=RequestIn,
              response=RequestOut, status=201, idempotency="optional", errors=(409,),
              summary="Ask for a certificate for a holder (reserves one of the quota)")
def submit_request(call: Call, body: RequestIn) -> RequestOut:
    holder = holders.get_holder(call.session, body.holder_id)
    call.authorize(Scope(province_code=holder.province_code))
    contact_id = acting_contact_id(call, holder.province_code)
    if contact_id is None:
        contact = contacts.active_contact(call.session, holder.province_code)
        if contact is None:
            raise ContactNotFound(f"province {holder.province_code} has no designated "
                                  "contact", province_code=holder.province_code)
        contact_id = contact.id
    created = requests.submit_request(call.session, call.clock, contact_id=contact_id,
                                      holder_id=holder.id, token_form=body.token_form,
                                      actor=call.actor, year=body.year)
    call.location = url_for("delivery.get_request", request_id=created.id)
    return request_out(created)


@bp.operation("GET", "/requests/<id:request_id>", action="requests.read",
              response=RequestDetailOut, summary="A request with its timeline")
def get_request(call: Call, request_id: int) -> RequestDetailOut:
    found = _load(call, request_id)
    line = requests.timeline(call.session, request_id)
    ready = requests.signing_readiness(call.session, request_id,
                                       wiring().policy.terms_version)
    return RequestDetailOut(request_out(found),
                            [StepOut(s.status, s.at, s.actor, s.note) for s in line.steps],
                            ready.ready, list(ready.reasons))


@bp.operation("POST", "/requests/<id:request_id>/approve", action="requests.decide",
              body=ApproveIn, response=RequestOut, errors=(409,),
              summary="Registration authority: identity checked, approve")
def approve(call: Call, request_id: int, body: ApproveIn) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.approve_request(call.session, call.clock, request_id,
                                                actor=call.actor,
                                                identity_check=body.identity_check))


@bp.operation("POST", "/requests/<id:request_id>/reject", action="requests.decide",
              body=ReasonIn, response=RequestOut, errors=(409,),
              summary="Refuse a request (its quota reservation is released)")
def reject(call: Call, request_id: int, body: ReasonIn) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.reject_request(call.session, call.clock, request_id,
                                               actor=call.actor, reason=body.reason))


@bp.operation("POST", "/requests/<id:request_id>/cancel", action="requests.cancel",
              body=ReasonIn, response=RequestOut, errors=(409,),
              summary="Withdraw a request before personalisation (releases the quota)")
def cancel(call: Call, request_id: int, body: ReasonIn) -> RequestOut:
    found = _load(call, request_id)
    contact_id = acting_contact_id(call, found.province_code)
    return request_out(requests.cancel_request(call.session, call.clock, request_id,
                                               actor=call.actor, reason=body.reason,
                                               contact_id=contact_id))


@bp.operation("POST", "/requests/<id:request_id>/personalise",
              action="requests.personalise", response=RequestOut, errors=(409, 503),
              idempotency="optional", prepare=load_authority_first,
              summary="Initialise the token, generate the key on it and issue the "
                      "certificate")
def personalise(call: Call, request_id: int) -> RequestOut:
    _load(call, request_id)
    root = wiring()
    return request_out(personalisation.personalise_request(
        call.session, call.clock, request_id, personaliser=root.personaliser(),
        sealer=root.sealer(), actor=call.actor, policy=root.policy))


@bp.operation("POST", "/requests/<id:request_id>/handover", action="requests.handover",
              body=HandoverIn, response=RequestOut, errors=(409,),
              summary="Record the hand-over of a token to its holder")
def handover(call: Call, request_id: int, body: HandoverIn) -> RequestOut:
    found = _load(call, request_id)
    return request_out(batches.record_handover(
        call.session, call.clock, request_id, handed_to=body.handed_to,
        acknowledgement=body.acknowledgement, actor=call.actor, policy=wiring().policy,
        contact_id=acting_contact_id(call, found.province_code), at=body.at))


@bp.operation("POST", "/requests/<id:request_id>/terms", action="holder.terms",
              body=TermsIn, response=RequestOut, errors=(409,),
              summary="The holder accepts the terms of use")
def accept_terms(call: Call, request_id: int, body: TermsIn) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.accept_terms(call.session, call.clock, request_id,
                                             version=body.version, actor=call.actor))


@bp.operation("POST", "/requests/<id:request_id>/activate", action="requests.activate",
              response=RequestOut, errors=(409,),
              summary="Activate the credential (consumes the quota reservation)")
def activate(call: Call, request_id: int) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.activate_request(call.session, call.clock, request_id,
                                                 actor=call.actor))


@bp.operation("POST", "/requests/<id:request_id>/pin", action="holder.pin",
              body=PinChangeIn, rate_limit="pin", transactional=False,
              rate_subject=lambda args: f"request:{args['request_id']}",
              errors=(409, 423, 503),
              summary="Change a hosted token's PIN (required before the first signature)")
def change_pin(call: Call, request_id: int, body: PinChangeIn) -> None:
    """Wrong PINs are counted by the token layer and lock the token after
    ``TAWQI_PIN_MAX_ATTEMPTS``; this endpoint is also rate limited."""
    with call.runtime.unit_of_work() as session:
        found = requests.get_request(session, request_id)
        call.authorize(_scope(found))
    pins.change_pin(call.runtime.sessions, call.clock, wiring().tokens(), request_id,
                    old_pin=body.old_pin, new_pin=body.new_pin, actor=call.actor)


@bp.operation("POST", "/requests/<id:request_id>/pin-changed", action="holder.pin",
              response=RequestOut, errors=(409,),
              summary="Declare that a device token's PIN was changed on the holder's machine")
def pin_changed(call: Call, request_id: int) -> RequestOut:
    _load(call, request_id)
    return request_out(pins.record_pin_changed(call.session, call.clock, request_id,
                                               actor=call.actor))


# --------------------------------------------------------------------------- PIN reset


@dataclass(frozen=True)
class PinResetIn:
    cin: str = field(metadata=rule(pattern=CIN))


@dataclass(frozen=True)
class PinResetOut:
    """A code went by SMS; the code itself is never returned."""

    challenge_id: str
    expires_at: datetime
    phone_hint: str


@dataclass(frozen=True)
class PinResetConfirmIn:
    cin: str = field(metadata=rule(pattern=CIN))
    code: str = field(metadata=rule(pattern=r"^[0-9]{4,10}$", write_only=True))


@dataclass(frozen=True)
class PinResetDoneOut:
    """The new PIN went by SMS; it must be changed before the next signature."""

    request_id: int
    phone_hint: str


def _own_holder_by_cin(call: Call, session: Session, cin: str) -> Holder:
    found = holders.find_by_cin(session, cin)
    # An unknown CIN and another holder's CIN get the same answer.
    call.authorize(Scope(holder_id=found.id if found is not None else -1))
    if found is None:  # unreachable for a holder (their own CIN exists)
        from delivery.errors import HolderNotFound

        raise HolderNotFound("no holder with this CIN", field="cin")
    return found


@bp.operation("POST", "/pin-reset", action="holder.pin", body=PinResetIn,
              response=PinResetOut, status=201, rate_limit="otp", errors=(409,),
              rate_subject=lambda args: f"cin:{args['body'].cin.upper()}",
              summary="Forgotten or locked PIN: send a one-time code to my mobile")
def request_reset(call: Call, body: PinResetIn) -> PinResetOut:
    _own_holder_by_cin(call, call.session, body.cin)
    root = wiring()
    info = reset.request_pin_reset(call.session, call.clock, root.sealer(), cin=body.cin,
                                   actor=call.actor, policy=root.policy)
    return PinResetOut(info.challenge_id, info.expires_at, info.phone_hint)


@bp.operation("POST", "/pin-reset/<challenge_id>/confirm", action="holder.pin",
              body=PinResetConfirmIn, response=PinResetDoneOut, rate_limit="otp",
              rate_subject=lambda args: f"cin:{args['body'].cin.upper()}",
              transactional=False, errors=(409, 503),
              summary="Confirm a PIN reset with the one-time code: a new PIN goes by SMS")
def confirm_reset(call: Call, challenge_id: str, body: PinResetConfirmIn) -> PinResetDoneOut:
    with call.runtime.unit_of_work() as session:
        _own_holder_by_cin(call, session, body.cin)
    root = wiring()
    outcome = reset.confirm_pin_reset(
        call.runtime.sessions, call.clock, root.tokens(), root.sealer(),
        challenge_id=challenge_id, cin=body.cin, code=body.code,
        so_pin=call.settings.so_pin, actor=call.actor, policy=root.policy)
    return PinResetDoneOut(outcome.request_id, outcome.phone_hint)


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class BatchOut:
    id: int
    province_code: str
    contact_id: int
    status: BatchStatus
    courier: str
    tracking_number: str | None
    prepared_at: datetime
    dispatched_at: datetime | None
    received_at: datetime | None
    request_ids: list[int]


@dataclass(frozen=True)
class BatchQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    status: BatchStatus | None = None


@dataclass(frozen=True)
class PrepareBatchIn:
    province_code: str = field(metadata=rule(pattern=PROVINCE))


@dataclass(frozen=True)
class DispatchIn:
    tracking_number: str = field(metadata=rule(min_length=5, max_length=20,
                                               description="Amana tracking number"))


@dataclass(frozen=True)
class ReceiveIn:
    received_at: datetime | None = field(default=None, metadata=rule(
        description="When the parcel arrived, if earlier than now."))


def batch_out(session: Session, b: CourierBatch, request_ids: list[int] | None = None
              ) -> BatchOut:
    ids = request_ids if request_ids is not None else \
        [r.id for r in batches.batch_requests(session, b.id)]
    return BatchOut(b.id, b.province_code, b.contact_id, b.status,  # type: ignore[arg-type]
                    b.courier, b.tracking_number, b.prepared_at, b.dispatched_at,
                    b.received_at, ids)


def _load_batch(call: Call, batch_id: int) -> CourierBatch:
    found = batches.get_batch(call.session, batch_id)
    call.authorize(Scope(province_code=found.province_code))
    return found


@bp.operation("GET", "/batches", action="batches.read", query=BatchQuery,
              response=page_of(BatchOut), summary="Courier batches")
def list_batches(call: Call, query: BatchQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = batches.list_batches(call.session, province_code=province, status=query.status,
                                 limit=query.limit, offset=query.offset)
    ids = batches.request_ids_by_batch(call.session, [b.id for b in found.items])
    return make_page(BatchOut, [batch_out(call.session, b, ids[b.id]) for b in found.items],
                     found.total, query.limit, query.offset)


@bp.operation("POST", "/batches", action="batches.ship", body=PrepareBatchIn,
              response=BatchOut, status=201, errors=(409,),
              summary="Put a province's personalised device tokens into its open batch")
def prepare_batch(call: Call, body: PrepareBatchIn) -> BatchOut:
    call.authorize(Scope(province_code=body.province_code))
    found = batches.prepare_batch(call.session, call.clock, body.province_code,
                                  actor=call.actor)
    call.location = url_for("delivery.get_batch", batch_id=found.id)
    return batch_out(call.session, found)


@bp.operation("GET", "/batches/<id:batch_id>", action="batches.read", response=BatchOut,
              summary="One courier batch")
def get_batch(call: Call, batch_id: int) -> BatchOut:
    return batch_out(call.session, _load_batch(call, batch_id))


@bp.operation("POST", "/batches/<id:batch_id>/dispatch", action="batches.ship",
              body=DispatchIn, response=BatchOut, errors=(409,),
              summary="Hand the parcel to the courier with its tracking number")
def dispatch(call: Call, batch_id: int, body: DispatchIn) -> BatchOut:
    _load_batch(call, batch_id)
    found = batches.dispatch_batch(call.session, call.clock, batch_id,
                                   tracking_number=body.tracking_number, actor=call.actor,
                                   policy=wiring().policy)
    return batch_out(call.session, found)


@bp.operation("POST", "/batches/<id:batch_id>/receive", action="batches.receive",
              body=ReceiveIn, response=BatchOut, errors=(409,),
              summary="The contact received the parcel")
def receive(call: Call, batch_id: int, body: ReceiveIn) -> BatchOut:
    found = _load_batch(call, batch_id)
    done = batches.receive_batch(call.session, call.clock, batch_id, actor=call.actor,
                                 contact_id=acting_contact_id(call, found.province_code),
                                 received_at=body.received_at)
    return batch_out(call.session, done)


# --------------------------------------------------------------------------- oversight


@dataclass(frozen=True)
class ProvinceOverviewOut:
    province_code: str
    by_status: dict[str, int]
    overdue_handovers: int
    holders: int


@dataclass(frozen=True)
class OverdueOut:
    request_id: int
    holder_id: int
    holder_name: str
    cin: str
    province_code: str
    batch_id: int
    received_at: datetime
    days_waiting: int


@dataclass(frozen=True)
class OverdueQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))


@bp.operation("GET", "/provinces/<code>/overview", action="reports.read",
              response=ProvinceOverviewOut,
              summary="Requests by status, overdue hand-overs and holders of a province")
def province_overview(call: Call, code: str) -> ProvinceOverviewOut:
    call.authorize(Scope(province_code=code))
    found = requests.province_overview(call.session, call.clock, code,
                                       overdue_days=wiring().policy.handover_overdue_days)
    return ProvinceOverviewOut(found.province_code, dict(found.by_status),
                               found.overdue_handovers, found.holders)


@bp.operation("GET", "/reports/overdue-handovers", action="reports.read",
              query=OverdueQuery, response=page_of(OverdueOut),
              summary="Tokens received by a contact and not handed over in time")
def overdue(call: Call, query: OverdueQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = batches.overdue_handovers(call.session, call.clock,
                                      overdue_days=wiring().policy.handover_overdue_days,
                                      province_code=province, limit=query.limit,
                                      offset=query.offset)
    return make_page(OverdueOut, [OverdueOut(**vars(x)) for x in found.items], found.total,
                     query.limit, query.offset)


# --------------------------------------------------------------------------- outbox


@dataclass(frozen=True)
class OutboxOut:
    """A notification; it never carries a PIN or a code (those are sealed envelopes)."""

    id: int
    channel: Literal["sms", "email"]
    recipient: str
    template: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str
    holder_id: int | None
    request_id: int | None
    created_at: datetime
    sent_at: datetime | None
    #: An earlier attempt may have been accepted (timeout, crashed worker): the provider is
    #: asked before any new SMS attempt.
    outcome_unknown: bool


@dataclass(frozen=True)
class OutboxQuery(PageQuery):
    status: OutboxStatus | None = None
    holder_id: int | None = field(default=None, metadata=rule(minimum=1,
                                                              maximum=2_147_483_647))


@dataclass(frozen=True)
class PurposeStatsOut:
    purpose: str
    pending: int
    dead: int
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class OutboxStatsOut:
    pending: int
    sending: int
    sent: int
    dead: int
    oldest_pending_at: datetime | None
    by_purpose: list[PurposeStatsOut]
    #: A message waits longer than TAWQI_OUTBOX_ALERT_AGE_MINUTES, or some are dead.
    alert: bool
    oldest_pending_minutes: float


@dataclass(frozen=True)
class RetryDeadIn:
    #: Only the dead messages of this template (e.g. ``pin.initial``); all when absent.
    purpose: str | None = field(default=None, metadata=rule(pattern=r"^[a-z._]{1,50}$"))


@dataclass(frozen=True)
class RetryDeadOut:
    retried: list[int]


def outbox_out(m: OutboxMessage) -> OutboxOut:
    return OutboxOut(m.id, m.channel, m.recipient, m.template,  # type: ignore[arg-type]
                     m.status, m.attempts, m.next_attempt_at,  # type: ignore[arg-type]
                     m.last_error, m.holder_id, m.request_id, m.created_at, m.sent_at,
                     bool(m.outcome_unknown))


@bp.operation("GET", "/outbox", action="outbox.read", query=OutboxQuery,
              response=page_of(OutboxOut), summary="Notifications, newest first")
def list_outbox(call: Call, query: OutboxQuery) -> object:
    found = outbox.list_messages(call.session, status=query.status, holder_id=query.holder_id,
                                 limit=query.limit, offset=query.offset)
    return make_page(OutboxOut, [outbox_out(m) for m in found.items], found.total,
                     query.limit, query.offset)


@bp.operation("GET", "/outbox/stats", action="outbox.read", response=OutboxStatsOut,
              summary="Outbox depth by status")
def outbox_stats(call: Call) -> OutboxStatsOut:
    s = outbox.stats(call.session)
    alarm = outbox.alert(call.session, call.clock,
                         threshold_minutes=call.settings.outbox_alert_age_minutes)
    return OutboxStatsOut(s.pending, s.sending, s.sent, s.dead, s.oldest_pending_at,
                          [PurposeStatsOut(f.purpose, f.pending, f.dead, f.oldest_pending_at)
                           for f in outbox.stats_by_purpose(call.session)],
                          alarm.raised, round(alarm.oldest_pending_minutes, 1))


@bp.operation("POST", "/outbox/retry-dead", action="outbox.manage", body=RetryDeadIn,
              response=RetryDeadOut,
              summary="Give every dead notification (of one purpose) new attempts")
def retry_all_dead(call: Call, body: RetryDeadIn) -> RetryDeadOut:
    try:
        ids = outbox.retry_all_dead(call.session, call.clock, actor=call.actor,
                                    purpose=body.purpose)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="purpose") from exc
    return RetryDeadOut(ids)


@bp.operation("POST", "/outbox/<id:message_id>/retry", action="outbox.manage",
              response=OutboxOut, summary="Give a dead notification new attempts")
def retry_message(call: Call, message_id: int) -> OutboxOut:
    return outbox_out(outbox.retry_dead(call.session, call.clock, message_id,
                                        actor=call.actor))
