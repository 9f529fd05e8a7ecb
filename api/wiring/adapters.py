"""Adapters the composition root plugs between domains that never import each other.

Remote signing (:mod:`pki.signing`) asks :mod:`delivery` about holders and has it send the
one-time code; PAdES and verification read our CA's records and trust our roots; an
operator's direct revocation (:func:`revoke_certificate`, :func:`revoke_certificates`) has
:mod:`pki` revoke and :mod:`delivery` close the request that held the certificate. Each
adapter is small, Flask-free, and built once by :class:`api.wiring.Wiring`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from sqlalchemy.orm import Session

from api.runtime import Runtime
from core.clock import Clock
from delivery import envelopes, holders, requests
from delivery.envelopes import Sealer
from delivery.models import ENVELOPE_SIGNING_CODE, HOSTED, Holder
from delivery.outbox import Notification, enqueue
from pki import lifecycle, queries
from pki.signing.pades import RecordsRevocation, RevocationData
from pki.signing.ports import HolderContact

if TYPE_CHECKING:
    from pki.authority import Authority

log = logging.getLogger(__name__)


class DeliveryDirectory:
    """Holder facts from :mod:`delivery`: mobile, hosted or not, ready to sign, names."""

    def __init__(self, terms_version: str) -> None:
        self.terms_version = terms_version

    def contact(self, session: Session, cin: str, serial: str) -> HolderContact | None:
        # One query: the holder, the request that carries this certificate, its mandate,
        # commune and province (readiness and profile below find them in the session).
        found = requests.credential_request(session, cin, serial)
        if found is None:
            return None
        holder, row = found.holder, found.request
        if row is None:
            return HolderContact(holder.id, holder.mobile, False, False,
                                 ("no request of this holder carries this certificate",))
        readiness = requests.readiness_of(row, self.terms_version)
        profile = holders.profile(session, holder, found.mandate)
        return HolderContact(
            holder_id=holder.id, mobile=holder.mobile, hosted=row.token_form == HOSTED,
            ready=readiness.ready, reasons=readiness.reasons,
            name_fr=f"{profile.given_name_fr} {profile.surname_fr}",
            name_ar=f"{profile.given_name_ar} {profile.surname_ar}",
            title_fr=profile.title_fr, title_ar=profile.title_ar,
            organisation_fr=profile.organisation_fr, organisation_ar=profile.organisation_ar)


def _holder_lang(session: Session, holder_id: int) -> str:
    """The language of the holder's SMS (French when unknown)."""
    holder = session.get(Holder, holder_id)
    return holder.preferred_lang if holder is not None else "fr"


class OutboxCodeSender:
    """The one-time code through delivery's sealed envelopes and outbox (SMS)."""

    def __init__(self, sealer: Callable[[], Sealer]) -> None:
        self.sealer = sealer

    def send(self, session: Session, clock: Clock, *, contact: HolderContact,
             challenge_id: str, code: str, ttl_minutes: int, purpose_fr: str,
             purpose_ar: str) -> str:
        envelope = envelopes.seal(session, clock, self.sealer(), purpose=ENVELOPE_SIGNING_CODE,
                                  holder_id=contact.holder_id, secret=code)
        enqueue(session, clock, Notification(
            channel="sms", recipient=contact.mobile, template="signing.code",
            dedupe_key=f"signing.code:{challenge_id}",
            params={"ttl_minutes": ttl_minutes, "purpose_fr": purpose_fr,
                    "purpose_ar": purpose_ar, "lang": _holder_lang(session, contact.holder_id)},
            envelope_id=envelope.id, holder_id=contact.holder_id))
        return contact.mobile[-4:]


class SessionRevocation:
    """Our CA's records, read in a short transaction of their own per call."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def revocation_data(self, certificates: Any) -> RevocationData:
        with self.rt.unit_of_work() as session:
            return RecordsRevocation(session, self.rt.clock).revocation_data(certificates)


def trust_roots(rt: Runtime) -> list[x509.Certificate]:
    """Our active root CAs, then the anchors of ``TAWQI_VERIFY_TRUST_ANCHORS``."""
    with rt.unit_of_work() as session:
        roots = [x509.load_der_x509_certificate(row.der) for row in queries.authorities(session)
                 if row.kind == "root" and row.active and row.der]
    extra = rt.settings.verify_trust_anchors
    if extra:
        for cert in x509.load_pem_x509_certificates(Path(extra).read_bytes()):
            if cert.issuer != cert.subject:
                # Accepted as configured, but it changes the answers: paths end at it and
                # its own revocation is never checked.
                log.warning("TAWQI_VERIFY_TRUST_ANCHORS holds %s, which is not a root "
                            "(issuer %s): put roots only there", cert.subject.rfc4514_string(),
                            cert.issuer.rfc4514_string())
            roots.append(cert)
    return roots


def _closing_note(reason: str) -> str:
    return f"certificate revoked by an operator ({reason})"


def revoke_certificate(session: Session, clock: Clock, authority: Authority, serial: str,
                       reason: str, *, actor: str) -> lifecycle.CertificateStatus:
    """An operator revokes one certificate (``tawqi cert revoke``, the registry's page,
    ``POST /v1/certificates/{serial}/revoke``): :func:`pki.lifecycle.revoke`, then the
    active request holding it leaves ``active`` for ``ended``
    (:func:`delivery.requests.end_revoked`), in the caller's transaction, audited. pki
    never imports delivery: this is where the two meet."""
    status = lifecycle.revoke(session, clock, authority, serial, reason, actor=actor)
    requests.end_revoked(session, clock, [status.serial], actor=actor,
                         note=_closing_note(status.revocation_reason or reason))
    return status


def revoke_certificates(session: Session, clock: Clock, authority: Authority,
                        serials: list[str], reason: str, *, actor: str,
                        dry_run: bool = False,
                        progress: Callable[[int, int], None] | None = None,
                        checkpoint: Callable[[], None] | None = None
                        ) -> lifecycle.BulkRevocation:
    """An operator's bulk revocation (:func:`pki.lifecycle.revoke_many`), then the active
    requests holding any of the certificates now revoked (this run's, and those an
    interrupted run revoked) leave ``active`` for ``ended``, in the final transaction."""
    done = lifecycle.revoke_many(session, clock, authority, serials, reason, actor=actor,
                                 dry_run=dry_run, progress=progress, checkpoint=checkpoint)
    if not dry_run:
        requests.end_revoked(session, clock, [*done.revoked, *done.skipped,
                                              *(s for s, _ in done.other_reason)],
                             actor=actor, note=_closing_note(done.reason))
    return done


__all__ = ["DeliveryDirectory", "OutboxCodeSender", "SessionRevocation", "revoke_certificate",
           "revoke_certificates", "trust_roots"]
