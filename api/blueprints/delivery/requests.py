"""Certificate requests: submit, decide, personalise, hand over, terms, activation, PIN change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from flask import url_for

from api.delivery_common import (
    PIN,
    PROVINCE,
    RequestKind,
    RequestStatus,
    TokenForm,
    acting_contact_id,
)
from api.policy import Scope, merge_filter
from api.routing import Call, Routes
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import load_authority_first, wiring
from delivery import (
    batches,
    contacts,
    holders,
    incidents,
    personalisation,
    pins,
    requests,
)
from delivery.models import KIND_RENEWAL, KIND_REPLACEMENT
from delivery.models import CertificateRequest as RequestRow

routes = Routes()


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
    kind: RequestKind = "new"
    follows_request_id: int | None = None


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
                      r.pin_change_required, r.pin_changed_at, r.submitted_at, r.updated_at,
                      r.kind, r.follows_request_id)  # type: ignore[arg-type]


def _scope(r: RequestRow) -> Scope:
    return Scope(province_code=r.province_code, holder_id=r.holder_id)


def _load(call: Call, request_id: int, action: str | None = None) -> RequestRow:
    found = requests.get_request(call.session, request_id)
    call.authorize(_scope(found), action)
    return found


def _acting_on(call: Call, request_id: int) -> int | None:
    """Load and authorise the request; the designated contact the caller acts as for its
    province (None for anyone else)."""
    return acting_contact_id(call, _load(call, request_id).province_code)


def _created(call: Call, created: RequestRow) -> RequestOut:
    """A new request's answer: ``Location`` names it."""
    call.location = url_for("delivery.get_request", request_id=created.id)
    return request_out(created)


@routes.operation("GET", "/requests", action="requests.read", query=RequestQuery,
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


@routes.operation("POST", "/requests", action="requests.create", body=RequestIn,
                  response=RequestOut, status=201, idempotency="optional", errors=(409,),
                  summary="Ask for a certificate for a holder (reserves one of the quota)")
def submit_request(call: Call, body: RequestIn) -> RequestOut:
    holder = holders.get_holder(call.session, body.holder_id)
    call.authorize(Scope(province_code=holder.province_code))
    contact_id = acting_contact_id(call, holder.province_code)
    if contact_id is None:  # an operator asks through the province's designated contact
        contact_id = contacts.designated_contact_id(call.session, holder.province_code)
    created = requests.submit_request(call.session, call.clock, contact_id=contact_id,
                                      holder_id=holder.id, token_form=body.token_form,
                                      actor=call.actor, year=body.year)
    return _created(call, created)


@routes.operation("POST", "/requests/<id:request_id>/renew", action="requests.create",
                  response=RequestOut, status=201, idempotency="optional", errors=(409,),
                  summary="Ask for the renewal of an active credential (reserves one of the "
                          "quota; the token, PIN and terms carry over at activation)")
def renew(call: Call, request_id: int) -> RequestOut:
    contact_id = _acting_on(call, request_id)
    return _created(call, requests.submit_renewal(call.session, call.clock, request_id,
                                                  actor=call.actor, contact_id=contact_id))


@dataclass(frozen=True)
class IncidentIn:
    incident: Literal["lost", "stolen", "damaged"]
    note: str = field(metadata=rule(min_length=1, max_length=500,
                                    description="What happened, when, where."))


@routes.operation("POST", "/requests/<id:request_id>/incident", action="requests.incident",
                  body=IncidentIn, response=RequestOut, status=201, idempotency="optional",
                  errors=(409, 503), prepare=load_authority_first,
                  summary="Report the token lost, stolen or damaged: the certificate is "
                          "suspended (revoked keyCompromise if stolen) and a replacement "
                          "request follows")
def report_incident(call: Call, request_id: int, body: IncidentIn) -> RequestOut:
    contact_id = _acting_on(call, request_id)
    holder_id = call.user.holder_id if call.user.role == "holder" else None
    return _created(call, incidents.report_token_incident(
        call.session, call.clock, request_id, incident=body.incident, note=body.note,
        actor=call.actor, personaliser=wiring().personaliser(), contact_id=contact_id,
        holder_id=holder_id))


@routes.operation("POST", "/requests/<id:request_id>/cancel-personalised",
                  action="requests.cancel_personalised", body=ReasonIn, response=RequestOut,
                  idempotency="optional", errors=(409, 503), prepare=load_authority_first,
                  summary="Cancel after personalisation: revoke the certificate, destroy the "
                          "token's objects, release the quota reservation")
def cancel_personalised(call: Call, request_id: int, body: ReasonIn) -> RequestOut:
    contact_id = _acting_on(call, request_id)
    return request_out(incidents.cancel_after_personalisation(
        call.session, call.clock, request_id, reason=body.reason, actor=call.actor,
        personaliser=wiring().personaliser(), contact_id=contact_id))


@routes.operation("GET", "/requests/<id:request_id>", action="requests.read",
                  response=RequestDetailOut, summary="A request with its timeline")
def get_request(call: Call, request_id: int) -> RequestDetailOut:
    found = _load(call, request_id)
    line = requests.timeline(call.session, request_id)
    ready = requests.signing_readiness(call.session, request_id,
                                       wiring().policy.terms_version)
    return RequestDetailOut(request_out(found),
                            [StepOut(s.status, s.at, s.actor, s.note) for s in line.steps],
                            ready.ready, list(ready.reasons))


@routes.operation("POST", "/requests/<id:request_id>/approve", action="requests.decide",
                  body=ApproveIn, response=RequestOut, errors=(409,),
                  summary="Registration authority: identity checked, approve")
def approve(call: Call, request_id: int, body: ApproveIn) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.approve_request(call.session, call.clock, request_id,
                                                actor=call.actor,
                                                identity_check=body.identity_check))


@routes.operation("POST", "/requests/<id:request_id>/reject", action="requests.decide",
                  body=ReasonIn, response=RequestOut, errors=(409,),
                  summary="Refuse a request (its quota reservation is released)")
def reject(call: Call, request_id: int, body: ReasonIn) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.reject_request(call.session, call.clock, request_id,
                                               actor=call.actor, reason=body.reason))


@routes.operation("POST", "/requests/<id:request_id>/cancel", action="requests.cancel",
                  body=ReasonIn, response=RequestOut, errors=(409,),
                  summary="Withdraw a request before personalisation (releases the quota)")
def cancel(call: Call, request_id: int, body: ReasonIn) -> RequestOut:
    contact_id = _acting_on(call, request_id)
    return request_out(requests.cancel_request(call.session, call.clock, request_id,
                                               actor=call.actor, reason=body.reason,
                                               contact_id=contact_id))


@routes.operation("POST", "/requests/<id:request_id>/personalise",
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


@routes.operation("POST", "/requests/<id:request_id>/handover", action="requests.handover",
                  body=HandoverIn, response=RequestOut, errors=(409,),
                  summary="Record the hand-over of a token to its holder")
def handover(call: Call, request_id: int, body: HandoverIn) -> RequestOut:
    contact_id = _acting_on(call, request_id)
    return request_out(batches.record_handover(
        call.session, call.clock, request_id, handed_to=body.handed_to,
        acknowledgement=body.acknowledgement, actor=call.actor, policy=wiring().policy,
        contact_id=contact_id, at=body.at))


@routes.operation("POST", "/requests/<id:request_id>/terms", action="holder.terms",
                  body=TermsIn, response=RequestOut, errors=(409,),
                  summary="The holder accepts the terms of use")
def accept_terms(call: Call, request_id: int, body: TermsIn) -> RequestOut:
    _load(call, request_id)
    return request_out(requests.accept_terms(call.session, call.clock, request_id,
                                             version=body.version, actor=call.actor))


@routes.operation("POST", "/requests/<id:request_id>/activate", action="requests.activate",
                  response=RequestOut, errors=(409,),
                  summary="Activate the credential (consumes the quota reservation)")
def activate(call: Call, request_id: int) -> RequestOut:
    found = _load(call, request_id)
    supersede = None
    if found.kind in (KIND_RENEWAL, KIND_REPLACEMENT):  # the CA revokes the old certificate
        personaliser = wiring().personaliser()

        def supersede(serial: str) -> None:
            personaliser.supersede(call.session, call.clock, serial=serial, actor=call.actor)
    return request_out(requests.activate_request(call.session, call.clock, request_id,
                                                 actor=call.actor, supersede=supersede))


@routes.operation("POST", "/requests/<id:request_id>/pin", action="holder.pin",
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


@routes.operation("POST", "/requests/<id:request_id>/pin-changed", action="holder.pin",
                  response=RequestOut, errors=(409,),
                  summary="Declare that a device token's PIN was changed on the holder's machine")
def pin_changed(call: Call, request_id: int) -> RequestOut:
    _load(call, request_id)
    return request_out(pins.record_pin_changed(call.session, call.clock, request_id,
                                               actor=call.actor))
