"""Lost, stolen or damaged tokens, and cancelling a request after personalisation.

* :func:`report_token_incident`: the holder or the province's contact reports the token of
  a credential lost, stolen or damaged, active or personalised and not active yet (in the
  parcel, with the contact, handed over). In the same transaction the certificate is
  suspended (lost, damaged) or revoked ``keyCompromise`` (stolen), and a replacement
  request (kind ``replacement``) is submitted for the holder. Whether it takes one of the
  year's quota is policy data (``QuotaPolicy.replacement_consumes_quota``); when it does
  not, its reservation is outside the quota. The replacement then follows the ordinary flow
  (a new token, a new key); once it is active, the old certificate is revoked
  ``superseded`` if it was only suspended (``activate_request(…, supersede=…)``) and the
  old request leaves ``active`` (``replaced``); a request not active yet is ``replaced``
  at the report.
* :func:`cancel_after_personalisation`: a personalised (or shipped, delivered, handed
  over) request is cancelled: its certificate is revoked (``cessationOfOperation``), the
  token's objects are destroyed, its sealed PIN envelope destroyed and the quota
  reservation released. A renewal cancelled so keeps the holder's token (only the new
  certificate is revoked: the key is still the active credential's).

The certificate and token work goes through the :class:`Personaliser` port (pki and hsm
behind it); everything else, and the audit events, happen in the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock
from delivery import envelopes
from delivery.contacts import require_active_contact
from delivery.errors import IllegalTransition, InvalidHolder
from delivery.models import (
    ACTIVE,
    CANCELLED,
    DELIVERED,
    HANDED_OVER,
    KIND_RENEWAL,
    KIND_REPLACEMENT,
    OPEN_STATES,
    PERSONALISED,
    SHIPPED,
    CertificateRequest,
    RequestEvent,
)
from delivery.personalisation import Personaliser
from delivery.requests import cancel_request, get_request, move, submit_request
from delivery.validation import require_text
from quotas import ledger

INCIDENTS = ("lost", "stolen", "damaged")
#: states from which a request may be cancelled although its token is personalised
CANCELLABLE_AFTER_PERSONALISATION = (PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER)


#: states from which a token may be reported lost, stolen or damaged: personalised and not
#: yet active (a token prepared, in the parcel, with the contact or just handed over), or
#: active
REPORTABLE = (PERSONALISED, SHIPPED, DELIVERED, HANDED_OVER, ACTIVE)


def report_token_incident(session: Session, clock: Clock, request_id: int, *,
                          incident: str, note: str, actor: str,
                          personaliser: Personaliser, contact_id: int | None = None,
                          holder_id: int | None = None) -> CertificateRequest:
    """Report the token of request ``request_id`` lost, stolen or damaged; return the
    replacement request. ``contact_id``: the reporting contact (must be the province's);
    ``holder_id``: the reporting holder (must be the request's).

    The request may be active, or personalised and not active yet (shipped, delivered to
    the contact, handed over). Either way its certificate is suspended (lost, damaged) or
    revoked ``keyCompromise`` (stolen) at once. A request not active yet is closed at once
    (``replaced``): its reservation counts as used (a certificate was issued for it, as for
    an active one) and its PIN, if not sent yet, is destroyed. An active request stays
    active, its certificate on hold, until the replacement is active (then ``replaced``;
    :func:`delivery.requests.activate_request`). A renewal of the request still under way
    is cancelled (its certificate, on the same token, revoked). Whether the replacement
    takes one of the year's quota is policy data."""
    if incident not in INCIDENTS:
        raise InvalidHolder(f"incident must be one of {', '.join(INCIDENTS)}",
                            field="incident")
    note = require_text(note, field="note", max_length=500)
    old = get_request(session, request_id, lock=True)
    if contact_id is not None:
        require_active_contact(session, contact_id, old.province_code)
    if holder_id is not None and holder_id != old.holder_id:
        raise IllegalTransition("a holder reports only their own token",
                                request_id=old.id, step="report")
    if old.kind == KIND_RENEWAL and old.status != ACTIVE:
        raise IllegalTransition(
            f"request {old.id} renews request {old.follows_request_id} on the same token: "
            "report the token on that request", request_id=old.id, status=old.status,
            step="report")
    if old.status not in REPORTABLE or not old.certificate_serial or not old.token_label:
        raise IllegalTransition(f"request {old.id} is {old.status}: only a personalised "
                                "token can be reported", request_id=old.id,
                                status=old.status, step="report")
    serial = old.certificate_serial
    renewals = _cancel_open_renewals(session, clock, old, incident=incident, actor=actor,
                                     personaliser=personaliser)
    if incident == "stolen":
        personaliser.revoke(session, clock, serial=serial, reason="keyCompromise",
                            actor=actor)
    else:
        personaliser.hold(session, clock, serial=serial, actor=actor,
                          note=f"token {incident}: {note}")
    before_activation = old.status != ACTIVE
    old.status_reason = f"token {incident}"
    old.updated_at = clock.now()
    session.flush()
    record(session, clock, actor=actor, action=f"delivery.token.{incident}",
           object_type="certificate_request", object_id=old.id,
           summary={"certificate_serial": serial, "token_label": old.token_label,
                    "note": note[:200], "request_status": old.status,
                    "renewals_cancelled": renewals,
                    "certificate": "revoked keyCompromise" if incident == "stolen"
                    else "suspended"})
    if before_activation:
        _close_before_activation(session, clock, old, incident=incident, actor=actor)
    replacement = submit_request(
        session, clock, contact_id=contact_id or old.contact_id, holder_id=old.holder_id,
        token_form=old.token_form, actor=actor, kind=KIND_REPLACEMENT,
        follows_request_id=old.id,
        free_of_quota=ledger.replacement_is_free(session, clock.now().year))
    old.status_reason = f"token {incident}; replaced by request {replacement.id}"
    session.flush()
    return replacement


def _cancel_open_renewals(session: Session, clock: Clock, old: CertificateRequest, *,
                          incident: str, actor: str, personaliser: Personaliser) -> list[int]:
    """A renewal under way certifies the key of the reported token again: cancel it (its
    certificate, if issued, revoked; the reservation released)."""
    rows = list(session.scalars(select(CertificateRequest).where(
        CertificateRequest.follows_request_id == old.id,
        CertificateRequest.kind == KIND_RENEWAL,
        CertificateRequest.status.in_(OPEN_STATES)).order_by(CertificateRequest.id)))
    reason = f"the renewed token was reported {incident}"
    for row in rows:
        if row.status in CANCELLABLE_AFTER_PERSONALISATION:
            cancel_after_personalisation(session, clock, row.id, reason=reason, actor=actor,
                                         personaliser=personaliser)
        else:
            cancel_request(session, clock, row.id, actor=actor, reason=reason)
    return [row.id for row in rows]


def _close_before_activation(session: Session, clock: Clock, old: CertificateRequest, *,
                             incident: str, actor: str) -> None:
    """A token lost before activation: the request ends (``replaced``), its certificate
    counts as used, and a PIN not sent yet is destroyed (its token is gone)."""
    if old.pin_envelope_id and old.pin_sent_at is None:
        envelopes.destroy(session, clock, old.pin_envelope_id,
                          reason=f"token {incident} before activation", actor=actor)
    move(session, clock, old, "replace", actor=actor,
         note=f"token {incident} before activation")
    ledger.consume(session, clock, old.reservation_id, actor=actor)


def cancel_after_personalisation(session: Session, clock: Clock, request_id: int, *,
                                 reason: str, actor: str, personaliser: Personaliser,
                                 contact_id: int | None = None) -> CertificateRequest:
    """Cancel a request whose token is already personalised: revoke the certificate,
    destroy the token's objects and the sealed PIN, release the quota reservation."""
    reason = require_text(reason, field="reason", max_length=500)
    request = get_request(session, request_id, lock=True)
    if contact_id is not None:
        require_active_contact(session, contact_id, request.province_code)
    if request.status not in CANCELLABLE_AFTER_PERSONALISATION:
        raise IllegalTransition(
            f"cannot cancel request {request.id} after personalisation: it is "
            f"{request.status}", request_id=request.id, status=request.status,
            step="cancel_personalised")
    destroyed = 0
    if request.certificate_serial:
        personaliser.revoke(session, clock, serial=request.certificate_serial,
                            reason="cessationOfOperation", actor=actor)
    if request.kind != KIND_RENEWAL and request.token_label:
        destroyed = personaliser.wipe(request.token_label)
    if request.pin_envelope_id:
        envelopes.destroy(session, clock, request.pin_envelope_id,
                          reason="request cancelled", actor=actor)
    previous = request.status
    now = clock.now()
    request.status = CANCELLED
    request.status_reason = reason
    request.updated_at = now
    session.add(RequestEvent(request_id=request.id, from_status=previous,
                             to_status=CANCELLED, at=now, actor=actor, note=reason))
    session.flush()
    record(session, clock, actor=actor, action="delivery.request.cancelled",
           object_type="certificate_request", object_id=request.id,
           summary={"from": previous, "to": CANCELLED, "holder_id": request.holder_id,
                    "after_personalisation": True, "note": reason[:200],
                    "certificate_serial": request.certificate_serial,
                    "token_objects_destroyed": destroyed})
    ledger.release(session, clock, request.reservation_id, actor=actor)
    return request
