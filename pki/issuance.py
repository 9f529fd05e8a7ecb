"""Issuance: prepare, persist, sign once.

1. :func:`prepare` draws a random serial under the unique constraint, stores the
   to-be-signed facts (subject DER, public key, validity, profile) as a ``prepared`` row and
   audits it, in the caller's transaction.
2. :func:`sign_prepared` locks that row, refuses anything but ``prepared`` (so a prepared
   issuance is redeemed at most once), builds the certificate from the row alone, signs it
   once on the CA's token, stores the DER, audits, and pre-signs its OCSP response.

:func:`issue_holder_certificate` is the whole flow for a holder: key pair generated on the
holder's own token (it never leaves it), prepare, sign, certificate written back to the
token. A caller who wants the prepared row durable before the signature commits between
:func:`prepare` and :func:`sign_prepared` (the CLI does).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.clock import Clock, as_utc
from hsm.errors import HsmError
from pki import ocsp
from pki.authority import Authority, normalise_serial, serial_hex, with_fresh_serial
from pki.errors import (
    CertificateNotFound,
    InvalidHolder,
    InvalidKeyType,
    InvalidTransition,
)
from pki.models import (
    PROFILE_HOLDER,
    PROFILE_OCSP,
    PROFILE_TSA,
    PROFILES,
    STATUS_ABANDONED,
    STATUS_ISSUED,
    STATUS_PREPARED,
    STATUS_SUSPENDED,
    CertificateRecord,
)
from pki.profiles import (
    HolderIdentity,
    ca_name,
    clamp_validity,
    holder_builder,
    ocsp_builder,
    tsa_builder,
)
from pki.signer import TokenAccess, check_key_type

HOLDER_KEY_LABEL = "Tawqi signing key"
HOLDER_CERT_LABEL = "Tawqi signing certificate"


def _now(clock: Clock) -> datetime:
    return as_utc(clock.now()).replace(microsecond=0)


def _key_type_of(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {256: "EC-P256", 384: "EC-P384"}.get(public_key.curve.key_size, "EC")
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    raise InvalidKeyType("only EC and RSA public keys can be certified")


@dataclass(frozen=True)
class IssuanceRequest:
    """What to certify. Validated on construction: a holder profile needs a holder, the
    others a common name; the public key must parse and match ``key_type``."""

    profile: str
    public_key: bytes  # SubjectPublicKeyInfo, DER
    token_label: str
    key_id: bytes
    key_type: str
    holder: HolderIdentity | None = None
    common_name: str | None = None
    replaces_id: int | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InvalidHolder(f"unknown profile {self.profile!r}", profile=self.profile)
        if (self.profile == PROFILE_HOLDER) != (self.holder is not None):
            raise InvalidHolder("a holder certificate, and only one, needs a holder identity")
        if self.profile != PROFILE_HOLDER and not self.common_name:
            raise InvalidHolder("a service certificate needs a common name")
        check_key_type(self.key_type)
        if not self.key_id:
            raise InvalidHolder("a key id is required")
        try:
            key = serialization.load_der_public_key(self.public_key)
        except ValueError as exc:
            raise InvalidKeyType("the public key is not a DER SubjectPublicKeyInfo") from exc
        if _key_type_of(key) != self.key_type:
            raise InvalidKeyType("the public key does not match the key type",
                                 key_type=self.key_type)


@dataclass(frozen=True)
class PreparedIssuance:
    id: int
    serial: str
    profile: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class IssuedCertificate:
    """A signed certificate as stored. ``written_to_token`` is False when the token could
    not take the certificate (the issuance stands; retry with :func:`write_to_token`)."""

    id: int
    serial: str
    profile: str
    status: str
    subject: str
    not_before: datetime
    not_after: datetime
    der: bytes
    fingerprint: str
    token_label: str
    key_id: str
    written_to_token: bool = True

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _issued(row: CertificateRecord, *, written_to_token: bool = True) -> IssuedCertificate:
    if row.der is None or row.fingerprint is None:
        raise InvalidTransition("the certificate is not signed", serial=row.serial)
    return IssuedCertificate(row.id, row.serial, row.profile, row.status, row.subject,
                             as_utc(row.not_before), as_utc(row.not_after), row.der,
                             row.fingerprint, row.token_label, row.key_id, written_to_token)


def prepare(session: Session, clock: Clock, authority: Authority, request: IssuanceRequest,
            *, actor: str) -> PreparedIssuance:
    """Draw the serial, store the to-be-signed row and audit it. Signs nothing."""
    now = _now(clock)
    authority.check_can_sign(now)
    profile = authority.profile
    days = {PROFILE_HOLDER: profile.holder_validity_days,
            PROFILE_OCSP: profile.ocsp_validity_days,
            PROFILE_TSA: profile.tsa_validity_days}[request.profile]
    not_after = clamp_validity(now, days, authority.certificate)
    if request.holder is not None:
        subject = request.holder.subject()
    else:
        subject = ca_name(profile, request.common_name or "")
    holder = request.holder

    def insert(serial: int) -> CertificateRecord:
        row = CertificateRecord(
            serial=serial_hex(serial), authority_id=authority.id, profile=request.profile,
            status=STATUS_PREPARED, subject=subject.rfc4514_string(),
            subject_der=subject.public_bytes(),
            cin=holder.cin if holder else None,
            given_name=holder.given_name if holder else None,
            surname=holder.surname if holder else None,
            title=holder.title if holder else None,
            organization=holder.organization if holder else None,
            token_label=request.token_label, key_id=request.key_id.hex(),
            key_type=request.key_type, public_key=request.public_key,
            not_before=now, not_after=not_after, replaces_id=request.replaces_id,
            created_at=now, updated_at=now)
        session.add(row)
        return row

    row = with_fresh_serial(session, insert)
    audit(session, clock, actor=actor, action="certificate.prepared",
          object_type="certificate", object_id=row.serial,
          summary={"profile": row.profile, "subject": row.subject,
                   "token": row.token_label, "not_after": not_after.isoformat()})
    return PreparedIssuance(row.id, row.serial, row.profile, now, not_after)


def _builder(authority: Authority, row: CertificateRecord) -> x509.CertificateBuilder:
    public_key = serialization.load_der_public_key(row.public_key)
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidKeyType("only EC and RSA public keys can be certified")
    serial = int(row.serial, 16)
    not_before, not_after = as_utc(row.not_before), as_utc(row.not_after)
    if row.profile == PROFILE_HOLDER:
        holder = HolderIdentity(cin=row.cin or "", given_name=row.given_name or "",
                                surname=row.surname or "", title=row.title or "",
                                organization=row.organization or "",
                                country=authority.profile.country)
        if holder.subject().public_bytes() != row.subject_der:
            raise InvalidTransition("the stored subject does not match the holder identity",
                                    serial=row.serial)
        return holder_builder(authority.profile, holder=holder, public_key=public_key,
                              serial=serial, not_before=not_before, not_after=not_after,
                              issuer=authority.certificate, issuer_id=authority.id)
    subject = x509.Name.from_rfc4514_string(row.subject)
    if subject.public_bytes() != row.subject_der:
        raise InvalidTransition("the stored subject cannot be rebuilt", serial=row.serial)
    make = ocsp_builder if row.profile == PROFILE_OCSP else tsa_builder
    return make(authority.profile, subject=subject, public_key=public_key, serial=serial,
                not_before=not_before, not_after=not_after, issuer=authority.certificate,
                issuer_id=authority.id)


def sign_prepared(session: Session, clock: Clock, authority: Authority,
                  prepared: PreparedIssuance | int, *, actor: str) -> IssuedCertificate:
    """Sign a prepared issuance, once. A second call (or a concurrent one) finds the row no
    longer ``prepared`` and raises :class:`InvalidTransition`; nothing is signed twice."""
    row_id = prepared.id if isinstance(prepared, PreparedIssuance) else prepared
    row = session.scalars(select(CertificateRecord).where(CertificateRecord.id == row_id)
                          .with_for_update()).one_or_none()
    if row is None:
        raise CertificateNotFound("no such prepared issuance", id=row_id)
    if row.status != STATUS_PREPARED:
        raise InvalidTransition("this issuance was already signed or abandoned",
                                serial=row.serial, status=row.status)
    if row.authority_id != authority.id:
        raise InvalidTransition("prepared for another CA", serial=row.serial)
    authority.check_can_sign(_now(clock))
    builder = _builder(authority, row)
    certificate = builder.sign(authority.signer.key, authority.signer.hash_algorithm)
    der = certificate.public_bytes(serialization.Encoding.DER)
    row.der = der
    row.fingerprint = hashlib.sha256(der).hexdigest()
    row.status = STATUS_ISSUED
    row.updated_at = _now(clock)
    session.flush()
    audit(session, clock, actor=actor, action="certificate.issued",
          object_type="certificate", object_id=row.serial,
          summary={"profile": row.profile, "fingerprint": row.fingerprint,
                   "not_after": as_utc(row.not_after).isoformat()})
    if authority.ocsp_signer is not None:
        ocsp.presign(session, clock, authority, row)
    return _issued(row)


def abandon(session: Session, clock: Clock, prepared_id: int, *, actor: str,
            reason: str = "") -> None:
    """Close a prepared issuance that will never be signed (its serial stays used)."""
    row = session.scalars(select(CertificateRecord).where(CertificateRecord.id == prepared_id)
                          .with_for_update()).one_or_none()
    if row is None:
        raise CertificateNotFound("no such prepared issuance", id=prepared_id)
    if row.status != STATUS_PREPARED:
        raise InvalidTransition("only a prepared issuance can be abandoned",
                                serial=row.serial, status=row.status)
    row.status = STATUS_ABANDONED
    row.updated_at = _now(clock)
    audit(session, clock, actor=actor, action="certificate.abandoned",
          object_type="certificate", object_id=row.serial, summary={"reason": reason[:200]})


def _new_key_id() -> bytes:
    return secrets.token_bytes(8)


def prepare_holder(session: Session, clock: Clock, authority: Authority, tokens: TokenAccess,
                   *, token_label: str, token_pin: str, holder: HolderIdentity,
                   key_type: str = "EC-P256", actor: str,
                   replaces_id: int | None = None) -> PreparedIssuance:
    """Step 1 of a holder issuance: generate the key pair ON the holder's token and store
    the prepared row (nothing signed). Commit after it to make the preparation durable."""
    check_key_type(key_type)
    authority.check_can_sign(_now(clock))
    key_id = _new_key_id()
    public_key = tokens.generate_key_pair(token_label, token_pin, key_type=key_type,
                                          key_label=HOLDER_KEY_LABEL, key_id=key_id)
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    request = IssuanceRequest(PROFILE_HOLDER, spki, token_label, key_id, key_type,
                              holder=holder, replaces_id=replaces_id)
    return prepare(session, clock, authority, request, actor=actor)


def complete_holder(session: Session, clock: Clock, authority: Authority,
                    tokens: TokenAccess, prepared: PreparedIssuance | int, *, token_pin: str,
                    actor: str) -> IssuedCertificate:
    """Step 2: sign the prepared issuance (once) and write the certificate to the token."""
    issued = sign_prepared(session, clock, authority, prepared, actor=actor)
    return _write(session, clock, tokens, issued, token_pin, actor=actor)


def issue_holder_certificate(session: Session, clock: Clock, authority: Authority,
                             tokens: TokenAccess, *, token_label: str, token_pin: str,
                             holder: HolderIdentity, key_type: str = "EC-P256", actor: str,
                             replaces_id: int | None = None) -> IssuedCertificate:
    """Personalise a holder's token: generate a key pair ON the token (``token_label``,
    logged in with ``token_pin``), certify it, write the certificate back to the token and
    keep it in the database, all in the caller's transaction. The PIN is used, never
    stored or audited.

    Raises token-layer errors (wrong PIN, unknown token) before anything is written. If the
    token refuses the certificate afterwards, the issuance stands and the result says
    ``written_to_token=False`` (retry with :func:`write_to_token`).
    """
    prepared = prepare_holder(session, clock, authority, tokens, token_label=token_label,
                              token_pin=token_pin, holder=holder, key_type=key_type,
                              actor=actor, replaces_id=replaces_id)
    return complete_holder(session, clock, authority, tokens, prepared, token_pin=token_pin,
                           actor=actor)


def certify_token_key(session: Session, clock: Clock, authority: Authority, *,
                      token_label: str, key_id: bytes, public_key: bytes, key_type: str,
                      holder: HolderIdentity, actor: str) -> IssuedCertificate:
    """Certify a key the caller generated ON the holder's fresh token (``public_key``: its
    SubjectPublicKeyInfo, DER, as the token returned it): prepare, sign once, store, in the
    caller's transaction. The certificate is NOT written to the token here
    (``written_to_token=False``): a batch of personalisations (:mod:`delivery.preparation`)
    generates its keys before its transaction, certifies them in it, and writes the
    certificates after it (:func:`store_on_token`, then :func:`record_written`), so that
    no token work holds the database."""
    request = IssuanceRequest(PROFILE_HOLDER, public_key, token_label, key_id, key_type,
                              holder=holder)
    prepared = prepare(session, clock, authority, request, actor=actor)
    issued = sign_prepared(session, clock, authority, prepared, actor=actor)
    return IssuedCertificate(**{**issued.__dict__, "written_to_token": False})


def store_on_token(tokens: TokenAccess, issued: IssuedCertificate, *,
                   fresh: bool = False) -> str | None:
    """Write a signed certificate next to its key on its token, outside any transaction (a
    public object: no PIN, no login; ``fresh``: the token is new, no older certificate to
    replace). Returns None, or the token layer's error type: record the outcome with
    :func:`record_written`."""
    try:
        if fresh:
            tokens.store_certificate(issued.token_label, None,
                                     key_id=bytes.fromhex(issued.key_id), cert_der=issued.der,
                                     cert_label=HOLDER_CERT_LABEL, replace=False)
        else:
            tokens.store_certificate(issued.token_label, None,
                                     key_id=bytes.fromhex(issued.key_id), cert_der=issued.der,
                                     cert_label=HOLDER_CERT_LABEL)
    except HsmError as exc:
        return exc.type
    return None


def record_written(session: Session, clock: Clock, serial: str, *, token_label: str,
                   error: str | None, actor: str) -> None:
    """Audit the outcome of :func:`store_on_token`."""
    if error is not None:
        audit(session, clock, actor=actor, action="certificate.token_write_failed",
              object_type="certificate", object_id=serial,
              summary={"token": token_label, "error": error})
    else:
        audit(session, clock, actor=actor, action="certificate.written_to_token",
              object_type="certificate", object_id=serial, summary={"token": token_label})


def not_written(session: Session, serials: list[str]) -> list[str]:
    """Those of ``serials`` whose writing to the token was never recorded as done."""
    from core.audit import AuditEvent

    done: set[str] = set()
    for start in range(0, len(serials), 500):
        done.update(session.scalars(select(AuditEvent.object_id).where(
            AuditEvent.action == "certificate.written_to_token",
            AuditEvent.object_id.in_(serials[start:start + 500]))))
    return [s for s in serials if s not in done]


def issued_certificate(session: Session, serial: str) -> IssuedCertificate:
    return _issued(get_record(session, serial))


def _write(session: Session, clock: Clock, tokens: TokenAccess, issued: IssuedCertificate,
           pin: str | None, *, actor: str, label: str = HOLDER_CERT_LABEL) -> IssuedCertificate:
    try:
        tokens.store_certificate(issued.token_label, pin, key_id=bytes.fromhex(issued.key_id),
                                 cert_der=issued.der, cert_label=label)
    except HsmError as exc:
        audit(session, clock, actor=actor, action="certificate.token_write_failed",
              object_type="certificate", object_id=issued.serial,
              summary={"token": issued.token_label, "error": exc.type})
        return IssuedCertificate(**{**issued.__dict__, "written_to_token": False})
    audit(session, clock, actor=actor, action="certificate.written_to_token",
          object_type="certificate", object_id=issued.serial,
          summary={"token": issued.token_label})
    return issued


def write_to_token(session: Session, clock: Clock, tokens: TokenAccess, serial: str, *,
                   token_pin: str, actor: str) -> IssuedCertificate:
    """(Re)write a stored certificate to the token that holds its key."""
    row = get_record(session, serial)
    return _write(session, clock, tokens, _issued(row), token_pin, actor=actor)


def get_record(session: Session, serial: str | int) -> CertificateRecord:
    key = normalise_serial(serial)
    row = session.scalars(select(CertificateRecord)
                          .where(CertificateRecord.serial == key)).one_or_none()
    if row is None:
        raise CertificateNotFound("no certificate has this serial", serial=key)
    return row


def renew(session: Session, clock: Clock, authority: Authority, tokens: TokenAccess | None,
          serial: str, *, actor: str, token_pin: str | None = None, rekey: bool = False,
          key_type: str | None = None) -> IssuedCertificate:
    """A new certificate for the same holder.

    Renewal (``rekey=False``) certifies the same public key again; the old certificate
    stays valid until it expires. Re-key generates a new key pair on the same token (needs
    ``tokens`` and ``token_pin``) and revokes the old certificate as *superseded*. With
    ``tokens`` the new certificate is written to the token, as issuance does (a public
    object: the holder's PIN is not needed for that).
    """
    old = get_record(session, serial)
    if old.profile != PROFILE_HOLDER:
        raise InvalidTransition("only holder certificates are renewed this way",
                                serial=old.serial)
    if old.status not in (STATUS_ISSUED, STATUS_SUSPENDED):
        raise InvalidTransition("a revoked or unsigned certificate cannot be renewed",
                                serial=old.serial, status=old.status)
    holder = HolderIdentity(cin=old.cin or "", given_name=old.given_name or "",
                            surname=old.surname or "", title=old.title or "",
                            organization=old.organization or "",
                            country=authority.profile.country)
    if rekey:
        if tokens is None or not token_pin:
            raise InvalidHolder("re-key needs the holder's token and PIN")
        issued = issue_holder_certificate(
            session, clock, authority, tokens, token_label=old.token_label,
            token_pin=token_pin, holder=holder, key_type=key_type or old.key_type,
            actor=actor, replaces_id=old.id)
        from pki.lifecycle import revoke

        revoke(session, clock, authority, old.serial, "superseded", actor=actor)
        return issued
    request = IssuanceRequest(PROFILE_HOLDER, old.public_key, old.token_label,
                              bytes.fromhex(old.key_id), old.key_type, holder=holder,
                              replaces_id=old.id)
    prepared = prepare(session, clock, authority, request, actor=actor)
    issued = sign_prepared(session, clock, authority, prepared, actor=actor)
    if tokens is not None:
        issued = _write(session, clock, tokens, issued, token_pin or None, actor=actor)
    return issued


def issue_service_certificate(session: Session, clock: Clock, authority: Authority,
                              tokens: TokenAccess, *, profile: str, token_label: str,
                              pin: str, common_name: str, key_type: str, actor: str,
                              key_id: bytes | None = None) -> IssuedCertificate:
    """An OCSP responder or TSA certificate on the service's token. A new key pair is
    generated unless ``key_id`` names an existing one (renewal of a responder certificate).
    """
    if profile not in (PROFILE_OCSP, PROFILE_TSA):
        raise InvalidHolder("service certificates are ocsp or tsa", profile=profile)
    if key_id is None:
        key_id = _new_key_id()
        public_key = tokens.generate_key_pair(token_label, pin, key_type=key_type,
                                              key_label=f"Tawqi {profile.upper()} key",
                                              key_id=key_id)
    else:
        public_key = tokens.private_key(token_label, pin, key_id=key_id).public_key()
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    request = IssuanceRequest(profile, spki, token_label, key_id, key_type,
                              common_name=common_name)
    prepared = prepare(session, clock, authority, request, actor=actor)
    issued = sign_prepared(session, clock, authority, prepared, actor=actor)
    return _write(session, clock, tokens, issued, pin, actor=actor,
                  label=f"Tawqi {profile.upper()} certificate")

