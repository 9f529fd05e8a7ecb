"""Certificate requests: the state machine from a contact's request to an active credential.

::

    submitted ─approve─▶ approved ─personalise─▶ personalised ─┬─(device) ship─▶ shipped
        │                   │                                  │      ─receive─▶ delivered
        ├─reject─▶ rejected  └─cancel─▶ cancelled              │      ─hand over─▶ handed_over
        └─cancel─▶ cancelled                                   │      ─activate─▶ active
                                                               └─(hosted) activate─▶ active

    active ─(its renewal activated)─▶ superseded
    active ─(its mandate ended, its certificate revoked)─▶ ended
    personalised … active ─(token lost, stolen, damaged: replaced)─▶ replaced

Submission reserves one certificate of the holder's entity's quota; rejection and
cancellation release it; activation consumes it. Every move locks the request row, checks the
table below, appends a :class:`~delivery.models.RequestEvent` and an audit event, all in the
caller's transaction. Shipping and receiving happen batch by batch (:mod:`delivery.batches`),
personalisation in :mod:`delivery.personalisation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock, as_utc
from core.listing import Page, scalars_page
from delivery import notices
from delivery.contacts import require_active_contact
from delivery.errors import (
    IllegalTransition,
    InvalidHolder,
    NotReadyToSign,
    OpenRequestExists,
    RequestNotFound,
)
from delivery.holders import get_holder
from delivery.mandates import require_current_mandate
from delivery.models import (
    ACTIVE,
    APPROVED,
    CANCELLED,
    DELIVERED,
    DEVICE,
    ENDED,
    HANDED_OVER,
    HOSTED,
    KIND_NEW,
    KIND_RENEWAL,
    KIND_REPLACEMENT,
    OPEN_STATES,
    PERSONALISED,
    REJECTED,
    REPLACED,
    SHIPPED,
    SUBMITTED,
    SUPERSEDED,
    TOKEN_FORMS,
    CertificateRequest,
    CourierBatch,
    Holder,
    Mandate,
    RequestEvent,
)
from delivery.validation import normalise_cin, require_text
from pki.models import STATUS_ISSUED, STATUS_REVOKED, CertificateRecord
from quotas import ledger
from quotas.models import Commune, Province

#: step -> (states it may start from, per token form; the state it leads to)
#: A renewal stays on the token the holder already has: no shipping, no hand-over.
IN_PLACE = "in_place"
_STEPS: dict[str, tuple[dict[str, frozenset[str]], str]] = {
    "approve": ({DEVICE: frozenset({SUBMITTED}), HOSTED: frozenset({SUBMITTED}),
                 IN_PLACE: frozenset({SUBMITTED})}, APPROVED),
    "reject": ({DEVICE: frozenset({SUBMITTED}), HOSTED: frozenset({SUBMITTED}),
                IN_PLACE: frozenset({SUBMITTED})}, REJECTED),
    "cancel": ({DEVICE: frozenset({SUBMITTED, APPROVED}),
                HOSTED: frozenset({SUBMITTED, APPROVED}),
                IN_PLACE: frozenset({SUBMITTED, APPROVED})}, CANCELLED),
    "personalise": ({DEVICE: frozenset({APPROVED}), HOSTED: frozenset({APPROVED}),
                     IN_PLACE: frozenset({APPROVED})}, PERSONALISED),
    "ship": ({DEVICE: frozenset({PERSONALISED}), HOSTED: frozenset(),
              IN_PLACE: frozenset()}, SHIPPED),
    "receive": ({DEVICE: frozenset({SHIPPED}), HOSTED: frozenset(), IN_PLACE: frozenset()},
                DELIVERED),
    "hand_over": ({DEVICE: frozenset({DELIVERED}), HOSTED: frozenset(),
                   IN_PLACE: frozenset()}, HANDED_OVER),
    "activate": ({DEVICE: frozenset({HANDED_OVER}), HOSTED: frozenset({PERSONALISED}),
                  IN_PLACE: frozenset({PERSONALISED})}, ACTIVE),
}


#: Steps that end a request after personalisation, taken by the service itself (never a
#: button): ``supersede`` when a renewal of the credential becomes active, ``replace`` when
#: its token is replaced (:mod:`delivery.incidents`), ``end`` when its mandate ends and its
#: certificate is revoked (:func:`end_revoked_with_mandate`).
_CLOSING: dict[str, tuple[frozenset[str], str]] = {
    "supersede": (frozenset({ACTIVE}), SUPERSEDED),
    "replace": (frozenset({PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER, ACTIVE}), REPLACED),
    "end": (frozenset({ACTIVE}), ENDED),
}


def _flow(request: CertificateRequest) -> str:
    return IN_PLACE if request.kind == KIND_RENEWAL else request.token_form


def allowed_steps(request: CertificateRequest) -> list[str]:
    """The steps the request may take now (for a UI's buttons)."""
    return [step for step, (sources, _) in _STEPS.items()
            if request.status in sources[_flow(request)]]


def get_request(session: Session, request_id: int, *, lock: bool = False) -> CertificateRequest:
    query = select(CertificateRequest).where(CertificateRequest.id == request_id)
    if lock:
        query = query.with_for_update()
    request = session.scalar(query)
    if request is None:
        raise RequestNotFound(f"no certificate request {request_id}", request_id=request_id)
    if lock:
        session.refresh(request)
    return request


def move(session: Session, clock: Clock, request: CertificateRequest, step: str, *,
         actor: str, note: str = "", summary: dict[str, Any] | None = None,
         at: datetime | None = None) -> None:
    """Apply ``step`` to a request the caller has locked, or raise IllegalTransition.

    ``at`` is when the step happened, if earlier than now (a hand-over recorded the next
    day); the timeline uses it, the audit event keeps the time of recording."""
    if step in _CLOSING:
        starts, target = _CLOSING[step]
    else:
        sources, target = _STEPS[step]
        starts = sources[_flow(request)]
    if request.status not in starts:
        raise IllegalTransition(
            f"cannot {step.replace('_', ' ')} request {request.id}: it is {request.status}"
            f" ({request.token_form} token)", request_id=request.id, status=request.status,
            step=step, allowed=allowed_steps(request))
    now = clock.now()
    previous = request.status
    request.status = target
    request.updated_at = now
    session.add(RequestEvent(request_id=request.id, from_status=previous, to_status=target,
                             at=at or now, actor=actor, note=note[:500]))
    session.flush()
    record(session, clock, actor=actor, action=f"delivery.request.{target}",
           object_type="certificate_request", object_id=request.id,
           summary={"from": previous, "to": target, "holder_id": request.holder_id,
                    "entity": request.entity, "token_form": request.token_form,
                    **({"note": note[:200]} if note else {}), **(summary or {})})


def submit_request(session: Session, clock: Clock, *, contact_id: int, holder_id: int,
                   token_form: str, actor: str, year: int | None = None,
                   kind: str = KIND_NEW, follows_request_id: int | None = None,
                   free_of_quota: bool = False) -> CertificateRequest:
    """A contact asks for a certificate for a holder of their province. Reserves one
    certificate of the holder's entity's quota for ``year`` (default: this year), or raises
    ``quotas.errors.QuotaExhausted`` and changes nothing. ``kind``/``follows_request_id``:
    see :func:`submit_renewal` and :mod:`delivery.incidents`; ``free_of_quota``: a
    reservation outside the quota (a replacement the quota policy does not charge)."""
    if token_form not in TOKEN_FORMS:
        raise InvalidHolder(f"token_form must be one of {', '.join(TOKEN_FORMS)}",
                            field="token_form")
    holder = get_holder(session, holder_id)
    contact = require_active_contact(session, contact_id, holder.province_code)
    if _open_request(session, holder.id) is not None:
        raise OpenRequestExists(f"holder {holder.cin} already has a request under way",
                                holder_id=holder.id)
    mandate = require_current_mandate(session, holder)
    year = year if year is not None else clock.now().year
    entity = ledger.Entity.parse(mandate.entity)
    decision = ledger.reserve(session, clock, entity, year, actor=actor,
                              reference=f"holder:{holder.cin}",
                              free=free_of_quota).raise_if_denied()
    if decision.reservation_id is None:  # allowed decisions always carry one
        raise IllegalTransition("the quota granted no reservation")
    now = clock.now()
    request = CertificateRequest(
        holder_id=holder.id, mandate_id=mandate.id, contact_id=contact.id,
        province_code=mandate.province_code,
        entity=str(entity), year=year, token_form=token_form, status=SUBMITTED,
        status_reason="", reservation_id=decision.reservation_id, pin_change_required=True,
        kind=kind, follows_request_id=follows_request_id, submitted_at=now, updated_at=now)
    try:
        with session.begin_nested():
            session.add(request)
    except IntegrityError as exc:  # a concurrent submission for the same holder
        raise OpenRequestExists(f"holder {holder.cin} already has a request under way",
                                holder_id=holder.id) from exc
    session.add(RequestEvent(request_id=request.id, from_status=None, to_status=SUBMITTED,
                             at=now, actor=actor, note=""))
    session.flush()
    record(session, clock, actor=actor, action="delivery.request.submitted",
           object_type="certificate_request", object_id=request.id,
           summary={"holder_id": holder.id, "cin": holder.cin, "entity": request.entity,
                    "year": year, "token_form": token_form, "contact_id": contact.id,
                    "mandate_id": mandate.id, "role": mandate.role,
                    "reservation_id": decision.reservation_id,
                    "quota_remaining": decision.remaining, "kind": kind,
                    **({"follows": follows_request_id} if follows_request_id else {})})
    return request


def submit_renewal(session: Session, clock: Clock, request_id: int, *, actor: str,
                   contact_id: int | None = None, year: int | None = None
                   ) -> CertificateRequest:
    """Ask for the renewal of an active credential (request ``request_id``): a new request
    of kind ``renewal``, within the quota like any request (one certificate reserved). It
    is approved, then personalised in place (the same key on the same token is certified
    again and the certificate written to the token), then activated: the credential (token,
    PIN, accepted terms) carries over and the old certificate is revoked ``superseded``.
    With ``contact_id``, only the contact of the request's province may ask."""
    old = get_request(session, request_id, lock=True)
    if contact_id is not None:
        require_active_contact(session, contact_id, old.province_code)
    if old.status != ACTIVE or not old.certificate_serial or not old.token_label:
        raise IllegalTransition(f"request {old.id} is {old.status}: only an active credential "
                                "is renewed", request_id=old.id, status=old.status,
                                step="renew")
    certificate = session.scalar(select(CertificateRecord.status).where(
        CertificateRecord.serial == old.certificate_serial))
    if certificate != STATUS_ISSUED:  # suspended or revoked: its token was reported
        raise IllegalTransition(f"request {old.id}'s certificate is {certificate}: only a "
                                "valid credential is renewed", request_id=old.id,
                                status=old.status, certificate=certificate, step="renew")
    if contact_id is None:
        contact_id = old.contact_id
    return submit_request(session, clock, contact_id=contact_id, holder_id=old.holder_id,
                          token_form=old.token_form, actor=actor, year=year,
                          kind=KIND_RENEWAL, follows_request_id=old.id)


def _open_request(session: Session, holder_id: int) -> CertificateRequest | None:
    return session.scalar(select(CertificateRequest).where(
        CertificateRequest.holder_id == holder_id,
        CertificateRequest.status.in_(OPEN_STATES)))


def approve_request(session: Session, clock: Clock, request_id: int, *, actor: str,
                    identity_check: str) -> CertificateRequest:
    """The provider's registration authority checked the holder's identity (say how, e.g.
    "CIN copy and council minutes checked")."""
    evidence = require_text(identity_check, field="identity_check", max_length=500)
    request = get_request(session, request_id, lock=True)
    move(session, clock, request, "approve", actor=actor, note=evidence)
    return request


def reject_request(session: Session, clock: Clock, request_id: int, *, actor: str,
                   reason: str) -> CertificateRequest:
    """Refuse the request and give its certificate back to the quota."""
    return _close(session, clock, request_id, "reject", actor=actor, reason=reason)


def cancel_request(session: Session, clock: Clock, request_id: int, *, actor: str,
                   reason: str, contact_id: int | None = None) -> CertificateRequest:
    """Withdraw the request before personalisation (with ``contact_id``: only the contact of
    the request's province may) and release its reservation."""
    if contact_id is not None:
        request = get_request(session, request_id)
        require_active_contact(session, contact_id, request.province_code)
    return _close(session, clock, request_id, "cancel", actor=actor, reason=reason)


def _close(session: Session, clock: Clock, request_id: int, step: str, *, actor: str,
           reason: str) -> CertificateRequest:
    reason = require_text(reason, field="reason", max_length=500)
    request = get_request(session, request_id, lock=True)
    move(session, clock, request, step, actor=actor, note=reason)
    request.status_reason = reason
    ledger.release(session, clock, request.reservation_id, actor=actor)
    return request


def activate_request(session: Session, clock: Clock, request_id: int, *,
                     actor: str, supersede: Callable[[str], object] | None = None
                     ) -> CertificateRequest:
    """Activate the credential and consume its quota reservation. A hosted token's PIN is
    sent now (it never travelled); a device token's PIN went at hand-over or dispatch.

    A renewal takes over the renewed request's credential (token, accepted terms, PIN
    state; the old request keeps its history but no longer holds the token) and
    ``supersede(old_serial)`` revokes the old certificate (``superseded``): it is required
    for a renewal."""
    request = get_request(session, request_id, lock=True)
    if request.kind in (KIND_RENEWAL, KIND_REPLACEMENT) and supersede is None:
        raise IllegalTransition(f"activating a {request.kind} revokes the old certificate: "
                                "the CA is needed", request_id=request.id, step="activate")
    old = None
    if request.kind in (KIND_RENEWAL, KIND_REPLACEMENT) and \
            request.follows_request_id is not None:
        old = get_request(session, request.follows_request_id, lock=True)
        if request.kind == KIND_RENEWAL and old.status != ACTIVE:
            raise IllegalTransition(
                f"request {old.id} is {old.status}: there is no active credential to renew "
                "any more", request_id=request.id, status=old.status, step="activate")
    move(session, clock, request, "activate", actor=actor)
    ledger.consume(session, clock, request.reservation_id, actor=actor)
    if request.kind == KIND_RENEWAL and old is not None:
        label, old_serial = old.token_label, old.certificate_serial
        old.token_label = None
        old.status_reason = f"renewed by request {request.id}"
        session.flush()
        request.token_label = label
        request.terms_version = old.terms_version
        request.terms_accepted_at = old.terms_accepted_at
        request.pin_change_required = old.pin_change_required
        request.pin_changed_at = old.pin_changed_at
        request.pin_sent_at = old.pin_sent_at
        session.flush()
        record(session, clock, actor=actor, action="delivery.request.credential_carried_over",
               object_type="certificate_request", object_id=request.id,
               summary={"from_request": old.id, "token_label": label,
                        "old_serial": old_serial, "serial": request.certificate_serial})
        if old_serial and supersede is not None:
            supersede(old_serial)
        # The old request no longer holds a credential: it leaves ``active``.
        move(session, clock, old, "supersede", actor=actor,
             note=f"renewed by request {request.id}",
             summary={"by_request": request.id, "certificate_serial": old_serial})
        return request
    if request.kind == KIND_REPLACEMENT and old is not None:
        if old.certificate_serial and supersede is not None:
            supersede(old.certificate_serial)  # the lost token's certificate, if only held
        if old.status == ACTIVE:  # a token lost before activation was closed at the report
            move(session, clock, old, "replace", actor=actor,
                 note=f"replaced by request {request.id}",
                 summary={"by_request": request.id,
                          "certificate_serial": old.certificate_serial})
    if request.token_form == HOSTED:
        notices.enqueue_initial_pin(session, clock, request, get_holder(session,
                                                                        request.holder_id))
    return request


def end_revoked_with_mandate(session: Session, clock: Clock, serials: Sequence[str], *,
                             actor: str, note: str) -> list[int]:
    """The active requests holding the certificates ``serials``, once those are revoked
    and their mandate has ended, leave ``active`` (``ended``), each with its event and
    audit. Returns their ids. Call it after the revocation and the mandate's end, in the
    same transaction."""
    found: list[CertificateRequest] = []
    keys = list(dict.fromkeys(serials))
    for start in range(0, len(keys), 500):
        found += session.scalars(
            select(CertificateRequest)
            .join(CertificateRecord,
                  CertificateRecord.serial == CertificateRequest.certificate_serial)
            .join(Mandate, Mandate.id == CertificateRequest.mandate_id)
            .where(CertificateRequest.certificate_serial.in_(keys[start:start + 500]),
                   CertificateRequest.status == ACTIVE,
                   CertificateRecord.status == STATUS_REVOKED,
                   Mandate.ended_on.is_not(None))
            .order_by(CertificateRequest.id).with_for_update(of=CertificateRequest))
    for row in found:
        move(session, clock, row, "end", actor=actor, note=note,
             summary={"mandate_id": row.mandate_id,
                      "certificate_serial": row.certificate_serial})
    return [row.id for row in found]


def end_revoked(session: Session, clock: Clock, serials: Sequence[str], *, actor: str,
                note: str) -> list[int]:
    """The active requests holding the certificates ``serials`` that are now revoked
    (an operator revoked them directly: ``tawqi cert revoke``, the registry's page, the
    API) leave ``active`` for ``ended``, each with its event and an audit event
    ``delivery.request.ended`` naming the certificate and its revocation reason. A
    suspended certificate (on hold) leaves its request active. Returns their ids. Call it
    after the revocation, in the same transaction; calling it again changes nothing."""
    found: list[tuple[CertificateRequest, str | None]] = []
    keys = list(dict.fromkeys(s for s in serials if s))
    for start in range(0, len(keys), 500):
        found += [(row, reason) for row, reason in session.execute(
            select(CertificateRequest, CertificateRecord.revocation_reason)
            .join(CertificateRecord,
                  CertificateRecord.serial == CertificateRequest.certificate_serial)
            .where(CertificateRequest.certificate_serial.in_(keys[start:start + 500]),
                   CertificateRequest.status == ACTIVE,
                   CertificateRecord.status == STATUS_REVOKED)
            .order_by(CertificateRequest.id).with_for_update(of=CertificateRequest)).all()]
    for row, reason in found:
        move(session, clock, row, "end", actor=actor, note=note,
             summary={"certificate_serial": row.certificate_serial,
                      "revocation_reason": reason or "unspecified", "revoked_directly": True})
        row.status_reason = note[:500]
    session.flush()
    return [row.id for row, _ in found]


def accept_terms(session: Session, clock: Clock, request_id: int, *, version: str,
                 actor: str) -> CertificateRequest:
    """The holder accepts the terms of use (version and time are recorded)."""
    version = require_text(version, field="version", max_length=50)
    request = get_request(session, request_id, lock=True)
    if request.status not in (HANDED_OVER, ACTIVE):
        raise IllegalTransition(f"request {request.id} is {request.status}: terms are accepted "
                                "once the token is in the holder's hands",
                                request_id=request.id, status=request.status)
    request.terms_version = version
    request.terms_accepted_at = clock.now()
    request.updated_at = request.terms_accepted_at
    session.flush()
    record(session, clock, actor=actor, action="delivery.terms.accepted",
           object_type="certificate_request", object_id=request.id,
           summary={"version": version, "holder_id": request.holder_id})
    return request


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]


def signing_readiness(session: Session, request_id: int,
                      terms_version: str | None = None) -> Readiness:
    """Whether the credential may sign: active, terms accepted (``terms_version`` if given),
    PIN changed since the service last set it."""
    return readiness_of(get_request(session, request_id), terms_version)


def readiness_of(request: CertificateRequest, terms_version: str | None = None) -> Readiness:
    """:func:`signing_readiness` of a request already read."""
    reasons = []
    if request.status != ACTIVE:
        reasons.append(f"the credential is {request.status}, not active")
    if request.terms_accepted_at is None:
        reasons.append("the terms of use are not accepted")
    elif terms_version is not None and request.terms_version != terms_version:
        reasons.append(f"terms version {terms_version} is not accepted yet")
    if request.pin_change_required:
        reasons.append("the PIN must be changed before the first signature")
    return Readiness(not reasons, tuple(reasons))


def require_ready_to_sign(session: Session, request_id: int,
                          terms_version: str | None = None) -> CertificateRequest:
    readiness = signing_readiness(session, request_id, terms_version)
    if not readiness.ready:
        raise NotReadyToSign("; ".join(readiness.reasons), request_id=request_id,
                             reasons=list(readiness.reasons))
    return get_request(session, request_id)


@dataclass(frozen=True)
class CredentialRequest:
    """A holder and their request that carries a certificate, with the request's mandate
    and its commune or province (held here, so the session's identity map keeps them:
    :func:`delivery.holders.profile` then finds them without a query)."""

    holder: Holder
    request: CertificateRequest | None
    mandate: Mandate | None = None
    commune: Commune | None = None
    province: Province | None = None


def credential_request(session: Session, cin: str, serial: str) -> CredentialRequest | None:
    """The holder with ``cin`` and their newest request carrying the certificate
    ``serial`` (``request`` None: no such request), in one query that also brings the
    request's mandate and its commune and province. None: no holder has this CIN (or it
    is not a CIN)."""
    try:
        wanted = normalise_cin(cin, InvalidHolder)
    except InvalidHolder:
        return None
    found = session.execute(
        select(CertificateRequest, Holder, Mandate, Commune, Province)
        .join(Holder, Holder.id == CertificateRequest.holder_id)
        .join(Mandate, Mandate.id == CertificateRequest.mandate_id)
        .outerjoin(Commune, Commune.code == Mandate.commune_code)
        .outerjoin(Province, Province.code == Mandate.province_code)
        .where(Holder.cin == wanted, CertificateRequest.certificate_serial == serial)
        .order_by(CertificateRequest.id.desc()).limit(1)).first()
    if found is not None:
        request, holder, mandate, commune, province = found
        return CredentialRequest(holder, request, mandate, commune, province)
    alone = session.scalar(select(Holder).where(Holder.cin == wanted))
    return None if alone is None else CredentialRequest(alone, None)


def list_requests(session: Session, *, province_code: str | None = None,
                  status: str | None = None, holder_id: int | None = None,
                  contact_id: int | None = None, limit: int | None = 500,
                  offset: int = 0) -> Page[CertificateRequest]:
    """Requests matching every filter given, oldest first."""
    query = select(CertificateRequest).order_by(CertificateRequest.id)
    if province_code:
        query = query.where(CertificateRequest.province_code == province_code)
    if status:
        query = query.where(CertificateRequest.status == status)
    if holder_id is not None:
        query = query.where(CertificateRequest.holder_id == holder_id)
    if contact_id is not None:
        query = query.where(CertificateRequest.contact_id == contact_id)
    return scalars_page(session, query, limit=limit, offset=offset)


def current_credential(session: Session, holder_id: int) -> CertificateRequest | None:
    """The holder's newest request that has a token in their hands or active."""
    return session.scalar(select(CertificateRequest).where(
        CertificateRequest.holder_id == holder_id,
        CertificateRequest.status.in_((HANDED_OVER, ACTIVE)),
        CertificateRequest.token_label.is_not(None))
        .order_by(CertificateRequest.id.desc()).limit(1))


@dataclass(frozen=True)
class Step:
    status: str
    at: datetime
    actor: str
    note: str


@dataclass(frozen=True)
class Timeline:
    """Who did what and when, and how long each stage took (lead times)."""

    request_id: int
    status: str
    steps: tuple[Step, ...]

    def reached(self, status: str) -> datetime | None:
        for step in self.steps:
            if step.status == status:
                return step.at
        return None

    @property
    def durations(self) -> dict[str, timedelta]:
        """``"<from>→<to>"`` for each consecutive pair, plus ``"total"``."""
        out: dict[str, timedelta] = {}
        for before, after in zip(self.steps, self.steps[1:], strict=False):
            out[f"{before.status}→{after.status}"] = after.at - before.at
        if len(self.steps) > 1:
            out["total"] = self.steps[-1].at - self.steps[0].at
        return out


def timeline(session: Session, request_id: int) -> Timeline:
    request = get_request(session, request_id)
    events = session.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id)
                             .order_by(RequestEvent.id))
    return Timeline(request.id, request.status,
                    tuple(Step(e.to_status, as_utc(e.at), e.actor, e.note) for e in events))


@dataclass(frozen=True)
class ProvinceOverview:
    province_code: str
    by_status: dict[str, int]
    overdue_handovers: int
    holders: int


def province_overview(session: Session, clock: Clock, province_code: str, *,
                      overdue_days: int) -> ProvinceOverview:
    counts = dict(session.execute(
        select(CertificateRequest.status, func.count(CertificateRequest.id))
        .where(CertificateRequest.province_code == province_code)
        .group_by(CertificateRequest.status)).all())
    limit = clock.now() - timedelta(days=overdue_days)
    overdue = session.scalar(
        select(func.count(CertificateRequest.id))
        .join(CourierBatch, CourierBatch.id == CertificateRequest.batch_id)
        .where(CertificateRequest.province_code == province_code,
               CertificateRequest.status == DELIVERED, CourierBatch.received_at < limit)) or 0
    holders = session.scalar(select(func.count(Holder.id))
                             .where(Holder.province_code == province_code)) or 0
    return ProvinceOverview(province_code, counts, int(overdue), int(holders))

