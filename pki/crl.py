"""Full CRLs (RFC 5280 §5): CRL number, nextUpdate, AKI; reasonCode on each entry.

The issuing CA's CRL is regenerated on every status change (:mod:`pki.lifecycle` calls
:func:`publish_crl`) and on schedule (:func:`publish_due`). The root's CRL is signed when
the root key is brought online (``tawqi ca init``, ``tawqi crl publish --root``).
Every CRL is kept; the latest is served at the CDP URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.clock import Clock, as_utc
from pki import reasons
from pki.authority import Authority
from pki.errors import AuthorityNotInitialised
from pki.models import (
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    AuthorityRecord,
    CertificateRecord,
    CrlRecord,
)
from pki.signer import Signer


@dataclass(frozen=True)
class CrlInfo:
    authority_id: int
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes

    @property
    def pem(self) -> str:
        return x509.load_der_x509_crl(self.der).public_bytes(
            serialization.Encoding.PEM).decode("ascii")


def _info(row: CrlRecord) -> CrlInfo:
    return CrlInfo(row.authority_id, row.number, as_utc(row.this_update),
                   as_utc(row.next_update), row.entries, row.der)


def _sign(session: Session, clock: Clock, authority_id: int, signer: Signer,
          validity: timedelta, entries: list[CertificateRecord], *, actor: str,
          trigger: str) -> CrlInfo:
    record = session.scalars(select(AuthorityRecord).where(AuthorityRecord.id == authority_id)
                             .with_for_update()).one()
    number = record.crl_number + 1
    this_update = as_utc(clock.now()).replace(microsecond=0)
    next_update = this_update + validity
    ski = signer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(signer.certificate.subject)
               .last_update(this_update)
               .next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   ski.value), critical=False))
    for revoked in entries:
        reason: str | None
        if revoked.status == STATUS_SUSPENDED:
            when, reason = revoked.suspended_at or revoked.updated_at, reasons.HOLD
        else:
            when, reason = revoked.revoked_at or revoked.updated_at, revoked.revocation_reason
        entry = (x509.RevokedCertificateBuilder()
                 .serial_number(int(revoked.serial, 16))
                 .revocation_date(as_utc(when).replace(microsecond=0)))
        if reason and reason != "unspecified":  # RFC 5280: omit rather than "unspecified"
            entry = entry.add_extension(x509.CRLReason(reasons.reason_flag(reason)),
                                        critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(signer.key, signer.hash_algorithm)
    der = crl.public_bytes(serialization.Encoding.DER)
    record.crl_number = number
    row = CrlRecord(authority_id=authority_id, number=number, this_update=this_update,
                    next_update=next_update, entries=len(entries), der=der)
    session.add(row)
    session.flush()
    audit(session, clock, actor=actor, action="crl.published", object_type="crl",
          object_id=f"{authority_id}:{number}",
          summary={"entries": len(entries), "next_update": next_update.isoformat(),
                   "trigger": trigger})
    return _info(row)


def publish_crl(session: Session, clock: Clock, authority: Authority, *, actor: str,
                trigger: str = "change") -> CrlInfo:
    """Sign and store a new full CRL of the issuing CA (revoked and suspended certificates
    that have not expired)."""
    now = as_utc(clock.now())
    entries = list(session.scalars(
        select(CertificateRecord)
        .where(CertificateRecord.authority_id == authority.id,
               CertificateRecord.status.in_((STATUS_REVOKED, STATUS_SUSPENDED)),
               CertificateRecord.not_after > now)
        .order_by(CertificateRecord.id)))
    return _sign(session, clock, authority.id, authority.signer,
                 timedelta(hours=authority.profile.crl_validity_hours), entries,
                 actor=actor, trigger=trigger)


def publish_root_crl(session: Session, clock: Clock, root_id: int, root_signer: Signer,
                     *, validity: timedelta, actor: str) -> CrlInfo:
    """The root's CRL (its subordinate CAs; none revoked so far), signed on the root token."""
    return _sign(session, clock, root_id, root_signer, validity, [], actor=actor,
                 trigger="root")


def latest_crl(session: Session, authority_id: int) -> CrlInfo:
    row = session.scalars(select(CrlRecord).where(CrlRecord.authority_id == authority_id)
                          .order_by(CrlRecord.number.desc()).limit(1)).one_or_none()
    if row is None:
        raise AuthorityNotInitialised("no CRL has been published for this CA",
                                      authority_id=authority_id)
    return _info(row)


def publish_due(session: Session, clock: Clock, authority: Authority, *, actor: str
                ) -> CrlInfo | None:
    """On schedule: a new CRL once the latest has lived half its validity (or is missing)."""
    now = as_utc(clock.now())
    try:
        current = latest_crl(session, authority.id)
    except AuthorityNotInitialised:
        current = None
    if current is not None and now < current.this_update + \
            (current.next_update - current.this_update) / 2:
        return None
    return publish_crl(session, clock, authority, actor=actor, trigger="schedule")
