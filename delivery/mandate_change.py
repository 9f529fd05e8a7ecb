"""A change of role or entity: the old mandate ends, a new one opens, the old mandate's
certificates are revoked (``affiliationChanged``) and a request for the new mandate follows.

All in the caller's transaction: the request rows of the old mandate are checked first
(a token under way for the old mandate blocks the change until its request is cancelled),
requests not personalised yet are cancelled (their quota released), then the certificates
are revoked through :mod:`pki.lifecycle`, then the mandates move. Every step is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import Clock
from delivery import mandates, requests
from delivery.contacts import designated_contact_id, require_active_contact
from delivery.errors import InvalidHolder, MandateChangeBlocked, NoMandateInForce
from delivery.holders import get_holder
from delivery.models import (
    APPROVED,
    SUBMITTED,
    TOKEN_FORMS,
    CertificateRequest,
    Mandate,
)
from delivery.titles import ROLES
from delivery.validation import require_text
from pki import lifecycle
from pki.authority import Authority
from pki.models import STATUS_ISSUED, STATUS_SUSPENDED, CertificateRecord

AFFILIATION_CHANGED = "affiliationChanged"

#: Revokes serials with a reason, for an actor (pki.lifecycle over the loaded CA).
Revoker = Callable[[Sequence[str], str, str], object]


@dataclass(frozen=True)
class MandateChange:
    """The holder's new mandate, validated on construction."""

    role: str
    started_on: date
    commune_code: str | None = None
    province_code: str | None = None
    professional_email: str | None = None
    reason: str = "change of mandate"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidHolder(f"role must be one of {', '.join(ROLES)}", field="role")
        object.__setattr__(self, "reason", require_text(self.reason, field="reason",
                                                        max_length=200, error=InvalidHolder))


@dataclass(frozen=True)
class MandateChangeResult:
    ended: Mandate
    opened: Mandate
    revoked: tuple[str, ...]
    cancelled_requests: tuple[int, ...]
    request: CertificateRequest | None


def live_certificates(session: Session, mandate_id: int) -> list[str]:
    """Serials of the mandate's certificates that a relying party still accepts (issued or
    suspended), oldest first."""
    return list(session.scalars(
        select(CertificateRecord.serial)
        .join(CertificateRequest, CertificateRequest.certificate_serial == CertificateRecord.serial)
        .where(CertificateRequest.mandate_id == mandate_id,
               CertificateRecord.status.in_((STATUS_ISSUED, STATUS_SUSPENDED)))
        .order_by(CertificateRecord.id)))


def wind_down(session: Session, clock: Clock, mandate: Mandate, *, actor: str,
              reason: str) -> tuple[list[int], list[str]]:
    """Cancel the mandate's requests not personalised yet; refuse if a token is under way
    for it. Returns (cancelled request ids, serials to revoke)."""
    rows = list(session.scalars(select(CertificateRequest).where(
        CertificateRequest.mandate_id == mandate.id,
        CertificateRequest.status.in_(requests.OPEN_STATES))
        .order_by(CertificateRequest.id)))
    under_way = [r.id for r in rows if r.status not in (SUBMITTED, APPROVED)]
    if under_way:
        raise MandateChangeBlocked(
            f"request(s) {', '.join(map(str, under_way))} carry a token for the old mandate: "
            "cancel them first", request_ids=under_way)
    cancelled = []
    for row in rows:
        requests.cancel_request(session, clock, row.id, actor=actor,
                                reason=f"mandate ended: {reason}"[:500])
        cancelled.append(row.id)
    return cancelled, live_certificates(session, mandate.id)


def change_mandate(session: Session, clock: Clock, holder_id: int, change: MandateChange, *,
                   actor: str, revoke: Revoker, token_form: str | None = None,
                   contact_id: int | None = None, acting_contact_id: int | None = None,
                   campaign_id: int | None = None) -> MandateChangeResult:
    """End the holder's mandate in force on ``change.started_on`` and open the new one.

    ``revoke`` revokes the old mandate's live certificates with ``affiliationChanged``.
    With ``token_form``, a request for the new mandate is submitted through ``contact_id``
    (default: the new entity's province's designated contact). ``acting_contact_id``: the
    caller is that contact, who may act only on holders of their province (old and new)."""
    if token_form is not None and token_form not in TOKEN_FORMS:
        raise InvalidHolder(f"token_form must be one of {', '.join(TOKEN_FORMS)}",
                            field="token_form")
    holder = get_holder(session, holder_id)
    old = mandates.current_mandate(session, holder.id)
    if old is None:
        raise NoMandateInForce(f"holder {holder.cin} has no mandate in force",
                               holder_id=holder.id)
    entity = mandates.resolve_entity(session, commune_code=change.commune_code,
                                     province_code=change.province_code, role=change.role)
    if acting_contact_id is not None:
        require_active_contact(session, acting_contact_id, old.province_code)
        require_active_contact(session, acting_contact_id, entity.province_code)
    if old.role == change.role and old.entity_kind == entity.kind and \
            old.commune_code == entity.commune_code and \
            old.province_code == entity.province_code:
        raise InvalidHolder("the new mandate is the one in force", field="role")
    if change.started_on < old.started_on:
        raise InvalidHolder("the new mandate cannot start before the one in force",
                            field="started_on")
    cancelled, serials = wind_down(session, clock, old, actor=actor, reason=change.reason)
    if serials:
        revoke(serials, AFFILIATION_CHANGED, actor)
    mandates.close_mandate(session, clock, old, ended_on=change.started_on,
                           reason=change.reason, actor=actor)
    if serials:  # its credentials leave ``active``
        requests.end_revoked_with_mandate(session, clock, serials, actor=actor,
                                          note=f"mandate ended: {change.reason}")
    opened = mandates.open_mandate(session, clock, holder, role=change.role, entity=entity,
                                   started_on=change.started_on, actor=actor,
                                   professional_email=change.professional_email,
                                   campaign_id=campaign_id, follows=old)
    request = None
    if token_form is not None:
        through = contact_id if contact_id is not None else acting_contact_id
        if through is None:
            through = designated_contact_id(session, entity.province_code)
        request = requests.submit_request(session, clock, contact_id=through,
                                          holder_id=holder.id, token_form=token_form,
                                          actor=actor)
    return MandateChangeResult(old, opened, tuple(serials), tuple(cancelled), request)


def end_mandate(session: Session, clock: Clock, holder_id: int, *, ended_on: date,
                reason: str, actor: str, revoke: Revoker | None) -> tuple[Mandate, list[str]]:
    """End the holder's mandate in force with no successor (not re-elected). With
    ``revoke``, its certificates are revoked now; without, the caller revokes the returned
    serials itself (a campaign's bulk revocation at installation)."""
    reason = require_text(reason, field="reason", max_length=200, error=InvalidHolder)
    holder = get_holder(session, holder_id)
    old = mandates.current_mandate(session, holder.id)
    if old is None:
        raise NoMandateInForce(f"holder {holder.cin} has no mandate in force",
                               holder_id=holder.id)
    _, serials = wind_down(session, clock, old, actor=actor, reason=reason)
    if serials and revoke is not None:
        revoke(serials, AFFILIATION_CHANGED, actor)
    mandates.close_mandate(session, clock, old, ended_on=ended_on, reason=reason, actor=actor)
    if serials and revoke is not None:
        requests.end_revoked_with_mandate(session, clock, serials, actor=actor,
                                          note=f"mandate ended: {reason}")
    return old, serials


def lifecycle_revoker(session: Session, clock: Clock, authority: Authority, *,
                      progress: Callable[[int, int], None] | None = None) -> Revoker:
    """Revoke through :func:`pki.lifecycle.revoke_many` with the loaded CA, in ``session``:
    one bulk operation, one CRL at the end. ``progress(done, total)`` follows it."""
    def revoke(serials: Sequence[str], reason: str, actor: str) -> None:
        lifecycle.revoke_many(session, clock, authority, list(serials), reason, actor=actor,
                              progress=progress)
    return revoke
