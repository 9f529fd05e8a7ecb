"""Setting the CA up and loading it: ``init_ca``, ``load_authority``, ``refresh``.

Keys live on tokens: the root's on its own token (``root_token``; offline in production,
brought online only to sign the issuing CA and the root CRL), the issuing CA's, the OCSP
responder's and the TSA's on the service token (``ca_token``). The database keeps the
certificates and where each key is (token label + key id).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import record as audit
from core.clock import Clock, as_utc
from core.errors import ConfigurationError
from hsm.errors import HsmError
from pki import crl, ocsp
from pki.authority import Authority, serial_hex, sha1, with_fresh_serial
from pki.errors import (
    AuthorityAlreadyInitialised,
    AuthorityNotInitialised,
    AuthorityUnavailable,
)
from pki.issuance import issue_service_certificate
from pki.models import (
    PROFILE_OCSP,
    PROFILE_TSA,
    STATUS_ISSUED,
    AuthorityRecord,
    CertificateRecord,
)
from pki.profiles import Profile, ca_name, clamp_validity, issuing_builder, root_builder
from pki.signer import Signer, TokenAccess, check_key_type, hash_for, public_key_sha1

ROOT_KEY_LABEL = "Tawqi root CA key"
CA_KEY_LABEL = "Tawqi issuing CA key"


@dataclass(frozen=True)
class InitResult:
    root_id: int
    issuing_id: int
    root_serial: str
    issuing_serial: str
    ocsp_serial: str
    tsa_serial: str
    root_der: bytes
    issuing_der: bytes

    @property
    def root_pem(self) -> str:
        return x509.load_der_x509_certificate(self.root_der).public_bytes(
            serialization.Encoding.PEM).decode("ascii")

    @property
    def issuing_pem(self) -> str:
        return x509.load_der_x509_certificate(self.issuing_der).public_bytes(
            serialization.Encoding.PEM).decode("ascii")


def _ensure_token(tokens: TokenAccess, label: str, so_pin: str, pin: str) -> bool:
    """Initialise the token if it does not exist yet; True if it was created."""
    if tokens.token_exists(label):
        return False
    if not so_pin:
        raise ConfigurationError(f"token {label!r} does not exist and no SO PIN was given "
                                 "(TAWQI_SO_PIN) to initialise it", token=label)
    tokens.init_token(label, so_pin, pin)
    return True


def _store_ca(session: Session, clock: Clock, *, kind: str, subject: x509.Name,
              token_label: str, key_id: bytes, key_type: str, public_key: object,
              days: int, issuer: x509.Certificate | None, parent_id: int | None,
              actor: str) -> AuthorityRecord:
    """Persist the to-be-signed CA row (serial drawn, DER still empty) and audit it."""
    now = as_utc(clock.now()).replace(microsecond=0)
    not_after = clamp_validity(now, days, issuer)
    spki_hash = public_key_sha1(public_key)

    def insert(serial: int) -> AuthorityRecord:
        row = AuthorityRecord(kind=kind, subject=subject.rfc4514_string(),
                              serial=serial_hex(serial), parent_id=parent_id,
                              token_label=token_label, key_id=key_id.hex(),
                              key_type=key_type,
                              name_hash=name_hash_of(subject).hex(),
                              key_hash=spki_hash.hex(), not_before=now, not_after=not_after,
                              der=b"", crl_number=0, active=True, created_at=now)
        session.add(row)
        return row

    row = with_fresh_serial(session, insert)
    audit(session, clock, actor=actor, action="ca.prepared", object_type="authority",
          object_id=row.id, summary={"kind": kind, "subject": row.subject,
                                     "token": token_label, "key_type": key_type,
                                     "not_after": not_after.isoformat()})
    return row


def name_hash_of(name: x509.Name) -> bytes:
    return sha1(name.public_bytes())


def init_ca(session: Session, clock: Clock, tokens: TokenAccess, profile: Profile, *,
            root_token: str, ca_token: str, so_pin: str, pin: str, root_pin: str,
            key_type: str = "EC-P256", actor: str) -> InitResult:
    """Create the root CA, the issuing CA, the OCSP responder and TSA certificates, and the
    first CRLs. Tokens missing are initialised with ``so_pin`` and the given PINs. Refuses
    to run twice (:class:`AuthorityAlreadyInitialised`)."""
    check_key_type(key_type)
    profile.policy(0)  # refuses before any token is touched when no policy arc is set
    if session.scalars(select(AuthorityRecord).where(AuthorityRecord.active.is_(True))
                       ).first() is not None:
        raise AuthorityAlreadyInitialised("the CA is already initialised")
    _ensure_token(tokens, root_token, so_pin, root_pin)
    if ca_token != root_token:
        _ensure_token(tokens, ca_token, so_pin, pin)
    elif root_pin != pin:
        raise ConfigurationError("the root and issuing CA share a token but not a PIN")

    # Root: key on its own token, self-signed.
    root_key_id = secrets.token_bytes(8)
    root_public = tokens.generate_key_pair(root_token, root_pin, key_type=key_type,
                                           key_label=ROOT_KEY_LABEL, key_id=root_key_id)
    root_key = tokens.private_key(root_token, root_pin, key_id=root_key_id)
    root_subject = ca_name(profile, f"{profile.org} Root CA")
    root_row = _store_ca(session, clock, kind="root", subject=root_subject,
                         token_label=root_token, key_id=root_key_id, key_type=key_type,
                         public_key=root_public, days=profile.root_validity_days,
                         issuer=None, parent_id=None, actor=actor)
    root_cert = root_builder(profile, subject=root_subject, public_key=root_public,
                             serial=int(root_row.serial, 16),
                             not_before=as_utc(root_row.not_before),
                             not_after=as_utc(root_row.not_after)).sign(
        root_key, hash_for(root_key))
    root_signer = Signer(root_key, root_cert)
    _finish_ca(session, clock, root_row, root_cert, actor=actor)
    tokens.store_certificate(root_token, root_pin, key_id=root_key_id,
                             cert_der=root_row.der, cert_label="Tawqi root CA")

    # Issuing CA: key on the service token, signed by the root.
    ca_key_id = secrets.token_bytes(8)
    ca_public = tokens.generate_key_pair(ca_token, pin, key_type=key_type,
                                         key_label=CA_KEY_LABEL, key_id=ca_key_id)
    ca_subject = ca_name(profile, f"{profile.org} Issuing CA")
    ca_row = _store_ca(session, clock, kind="issuing", subject=ca_subject,
                       token_label=ca_token, key_id=ca_key_id, key_type=key_type,
                       public_key=ca_public, days=profile.issuing_validity_days,
                       issuer=root_cert, parent_id=root_row.id, actor=actor)
    ca_cert = issuing_builder(profile, subject=ca_subject, public_key=ca_public,
                              serial=int(ca_row.serial, 16),
                              not_before=as_utc(ca_row.not_before),
                              not_after=as_utc(ca_row.not_after), root=root_cert,
                              root_id=root_row.id).sign(root_key, root_signer.hash_algorithm)
    _finish_ca(session, clock, ca_row, ca_cert, actor=actor)
    tokens.store_certificate(ca_token, pin, key_id=ca_key_id, cert_der=ca_row.der,
                             cert_label="Tawqi issuing CA")
    ca_key = tokens.private_key(ca_token, pin, key_id=ca_key_id)
    authority = Authority(ca_row.id, Signer(ca_key, ca_cert, (root_cert,)), profile)

    # Delegated OCSP responder, then the TSA (whose status the responder can tell).
    ocsp_cert = issue_service_certificate(
        session, clock, authority, tokens, profile=PROFILE_OCSP, token_label=ca_token,
        pin=pin, common_name=f"{profile.org} OCSP Responder", key_type=key_type, actor=actor)
    authority = _with_service_signers(session, tokens, authority, pin=pin)
    tsa_cert = issue_service_certificate(
        session, clock, authority, tokens, profile=PROFILE_TSA, token_label=ca_token,
        pin=pin, common_name=f"{profile.org} Time-Stamping Authority", key_type=key_type,
        actor=actor)
    ocsp.presign_due(session, clock, authority)
    crl.publish_crl(session, clock, authority, actor=actor, trigger="init")
    crl.publish_root_crl(session, clock, root_row.id, root_signer,
                         validity=timedelta(days=profile.root_crl_validity_days), actor=actor)
    return InitResult(root_row.id, ca_row.id, root_row.serial, ca_row.serial,
                      ocsp_cert.serial, tsa_cert.serial, root_row.der, ca_row.der)


def _finish_ca(session: Session, clock: Clock, row: AuthorityRecord,
               certificate: x509.Certificate, *, actor: str) -> None:
    row.der = certificate.public_bytes(serialization.Encoding.DER)
    session.flush()
    audit(session, clock, actor=actor, action="ca.issued", object_type="authority",
          object_id=row.id, summary={"kind": row.kind, "serial": row.serial,
                                     "subject": row.subject})


def _service_signer(session: Session, tokens: TokenAccess, authority: Authority,
                    profile: str, *, pin: str) -> Signer | None:
    row = session.scalars(
        select(CertificateRecord)
        .where(CertificateRecord.authority_id == authority.id,
               CertificateRecord.profile == profile,
               CertificateRecord.status == STATUS_ISSUED)
        .order_by(CertificateRecord.not_after.desc(), CertificateRecord.id.desc())
        .limit(1)).one_or_none()
    if row is None or row.der is None:
        return None
    key = tokens.private_key(row.token_label, pin, key_id=bytes.fromhex(row.key_id))
    return Signer(key, x509.load_der_x509_certificate(row.der), authority.signer.full_chain())


def _with_service_signers(session: Session, tokens: TokenAccess, authority: Authority, *,
                          pin: str) -> Authority:
    return replace(authority,
                   ocsp_signer=_service_signer(session, tokens, authority, PROFILE_OCSP,
                                               pin=pin),
                   tsa_signer=_service_signer(session, tokens, authority, PROFILE_TSA,
                                              pin=pin))


def issuing_record(session: Session) -> AuthorityRecord:
    row = session.scalars(select(AuthorityRecord)
                          .where(AuthorityRecord.kind == "issuing",
                                 AuthorityRecord.active.is_(True))
                          .order_by(AuthorityRecord.id.desc()).limit(1)).one_or_none()
    if row is None or not row.der:
        raise AuthorityNotInitialised("the CA is not initialised: run `tawqi ca init`")
    return row


def load_authority(session: Session, tokens: TokenAccess, profile: Profile, *,
                   pin: str) -> Authority:
    """The active issuing CA with its OCSP responder and TSA signers, keys on the token
    logged in with ``pin``. Token failures become :class:`AuthorityUnavailable`."""
    row = issuing_record(session)
    root_row = session.get(AuthorityRecord, row.parent_id) if row.parent_id else None
    chain = (x509.load_der_x509_certificate(root_row.der),) if root_row is not None else ()
    try:
        key = tokens.private_key(row.token_label, pin, key_id=bytes.fromhex(row.key_id))
        authority = Authority(row.id, Signer(key, x509.load_der_x509_certificate(row.der),
                                             chain), profile)
        return _with_service_signers(session, tokens, authority, pin=pin)
    except HsmError as exc:
        raise AuthorityUnavailable(f"the CA key cannot be used: {exc.detail}",
                                   token=row.token_label, cause=exc.type) from exc


def load_root_signer(session: Session, tokens: TokenAccess, *, root_pin: str
                     ) -> tuple[int, Signer]:
    """The root key, for the rare ceremonies that need it (root CRL)."""
    row = session.scalars(select(AuthorityRecord).where(AuthorityRecord.kind == "root",
                                                        AuthorityRecord.active.is_(True))
                          .order_by(AuthorityRecord.id.desc()).limit(1)).one_or_none()
    if row is None:
        raise AuthorityNotInitialised("the CA is not initialised: run `tawqi ca init`")
    try:
        key = tokens.private_key(row.token_label, root_pin, key_id=bytes.fromhex(row.key_id))
    except HsmError as exc:
        raise AuthorityUnavailable(f"the root key cannot be used: {exc.detail}",
                                   token=row.token_label, cause=exc.type) from exc
    return row.id, Signer(key, x509.load_der_x509_certificate(row.der))


def authority_der(session: Session, authority_id: int) -> bytes:
    """A CA certificate of ours (served at the caIssuers URL)."""
    row = session.get(AuthorityRecord, authority_id)
    if row is None or not row.der:
        raise AuthorityNotInitialised("no such CA", authority_id=authority_id)
    return row.der


@dataclass(frozen=True)
class RefreshReport:
    authority: Authority
    crl_number: int | None
    ocsp_signed: int
    responder_renewed: str | None


def renew_responder_due(session: Session, clock: Clock, authority: Authority,
                        tokens: TokenAccess, *, pin: str, actor: str
                        ) -> tuple[Authority, str | None]:
    """Renew the OCSP responder certificate (same key) once two thirds of its life are
    gone. Returns the authority to use from now on and the new serial (``None``: not due).
    Every OCSP answer must then be re-signed (:func:`pki.ocsp.presign_due` with ``force``):
    their nextUpdate is capped by the old responder certificate's end."""
    responder = authority.ocsp_signer
    if responder is None:
        return authority, None
    now = as_utc(clock.now())
    cert = responder.certificate
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    if now < cert.not_valid_before_utc + life * 2 / 3:
        return authority, None
    record = _record_for(session, cert)
    issued = issue_service_certificate(
        session, clock, authority, tokens, profile=PROFILE_OCSP,
        token_label=record.token_label, pin=pin,
        common_name=f"{authority.profile.org} OCSP Responder",
        key_type=record.key_type, actor=actor, key_id=bytes.fromhex(record.key_id))
    return _with_service_signers(session, tokens, authority, pin=pin), issued.serial


def refresh(session: Session, clock: Clock, authority: Authority, tokens: TokenAccess, *,
            pin: str, actor: str, force: bool = False) -> RefreshReport:
    """The scheduled work in one call (``tawqi ca refresh``; ``tawqi worker`` runs the same
    steps as separate jobs): renew the OCSP responder certificate once two thirds of its
    life are gone (same key), publish a CRL past half its validity, re-sign OCSP responses
    past half theirs. Returns the authority to use from now on."""
    authority, renewed = renew_responder_due(session, clock, authority, tokens, pin=pin,
                                             actor=actor)
    published = crl.publish_crl(session, clock, authority, actor=actor, trigger="schedule") \
        if force else crl.publish_due(session, clock, authority, actor=actor)
    signed = ocsp.presign_due(session, clock, authority, force=force or renewed is not None)
    return RefreshReport(authority, published.number if published else None, signed, renewed)


def _record_for(session: Session, certificate: x509.Certificate) -> CertificateRecord:
    return session.scalars(select(CertificateRecord).where(
        CertificateRecord.serial == serial_hex(certificate.serial_number))).one()


__all__ = ["InitResult", "RefreshReport", "authority_der", "init_ca", "issuing_record",
           "load_authority", "load_root_signer", "refresh", "renew_responder_due"]
