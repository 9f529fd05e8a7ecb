"""What the CSC v2 (``/csc/v2``) and v1 (``/csc/v1``) blueprints share: the field patterns,
the credential's answer shapes, and the steps both versions run the same way (finding and
scoping a credential, authorising, signing hashes).

Not a blueprint: each version's blueprint imports this module, never the other blueprint.
PINs and codes pass through here on their way to the service and are never echoed or logged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from sqlalchemy.orm import Session

from api.policy import Scope
from api.routing import Call
from api.schema import ValidationFailed
from api.wiring.flaskapp import wiring
from core.errors import InvalidInput
from delivery import holders
from delivery.errors import InvalidHolder
from delivery.validation import CIN_SCHEMA_PATTERN
from pki.signing.models import PURPOSE_DOCUMENT
from pki.signing.ports import HolderContact
from pki.signing.service import (
    HASH_OID_BY_NAME,
    HASH_OIDS,
    Credential,
    decode_hashes,
    parse_hash_algorithm,
)

CIN = CIN_SCHEMA_PATTERN
SERIAL = r"^[0-9a-fA-F]{1,64}$"
SHA256_OID = HASH_OID_BY_NAME["sha256"]


@dataclass(frozen=True)
class KeyOut:
    status: Literal["enabled", "disabled"]
    algo: list[str]
    len: int
    curve: str | None


@dataclass(frozen=True)
class CertOut:
    status: Literal["valid", "expired", "revoked", "suspended", "not-yet-valid"]
    certificates: list[str]
    issuerDN: str | None = None
    serialNumber: str | None = None
    subjectDN: str | None = None
    validFrom: datetime | None = None
    validTo: datetime | None = None


@dataclass(frozen=True)
class AuthObjectOut:
    type: str
    id: str
    format: str
    label: str
    description: str
    generator: str | None = None


@dataclass(frozen=True)
class AuthOut:
    mode: Literal["explicit"]
    expression: str
    objects: list[AuthObjectOut]


@dataclass(frozen=True)
class CredentialInfoOut:
    credentialID: str
    description: str
    key: KeyOut
    cert: CertOut
    SCAL: str
    multisign: int
    lang: str
    auth: AuthOut | None = None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def credential_scope(call: Call, session: Session, credential: Credential, *,
                      authorised: bool = False) -> HolderContact:
    remote = wiring().remote()
    contact = remote.contact(session, credential)
    call.authorize(Scope(holder_id=contact.holder_id, holder_authorised=authorised))
    return contact


def load_credential(call: Call, credential_id: str, *, authorised: bool = False
                     ) -> tuple[Credential, HolderContact]:
    with call.runtime.unit_of_work() as session:
        credential = wiring().remote().credential(session, credential_id)
        contact = credential_scope(call, session, credential, authorised=authorised)
        return credential, contact


def credential_info(credential: Credential, chain: tuple[x509.Certificate, ...], *,
                    at: datetime, certificates: str, cert_info: bool, auth_info: bool,
                    max_batch: int) -> CredentialInfoOut:
    from cryptography.hazmat.primitives import serialization

    certs = []
    if certificates in ("single", "chain"):
        certs.append(credential.certificate)
    if certificates == "chain":
        certs.extend(chain)
    state = credential.state_at(at)
    public = credential.certificate.public_key()
    curve = getattr(getattr(public, "curve", None), "name", None)
    cert = CertOut(
        status=state,  # type: ignore[arg-type]
        certificates=[b64(c.public_bytes(serialization.Encoding.DER)) for c in certs],
        issuerDN=credential.certificate.issuer.rfc4514_string() if cert_info else None,
        serialNumber=credential.id if cert_info else None,
        subjectDN=credential.certificate.subject.rfc4514_string() if cert_info else None,
        validFrom=credential.not_before if cert_info else None,
        validTo=credential.not_after if cert_info else None)
    auth = AuthOut("explicit", "PIN AND OTP", [
        AuthObjectOut("Password", "PIN", "N", "PIN", "The PIN of the signing key"),
        AuthObjectOut("Password", "OTP", "N", "Code", "The code sent by SMS "
                      "(credentials/sendOTP)", generator="SMS")]) if auth_info else None
    return CredentialInfoOut(
        credentialID=credential.id,
        description=f"{credential.certificate.subject.rfc4514_string()} ({credential.key_type})",
        key=KeyOut("enabled" if state == "valid" else "disabled",
                   credential.sign_algorithms(), credential.key_length, curve),
        cert=cert, SCAL="2", multisign=max_batch, lang="fr-MA", auth=auth)


def find_credentials(call: Call, cin: str | None, *, only_valid: bool) -> list[Credential]:
    """The credentials of the holder ``cin`` names (a holder's own when omitted), after
    checking the caller's reach: the one listing step behind v1 and v2."""
    if cin is None:
        holder_id = call.user.holder_id
        holder = holders.get_holder(call.session, holder_id) if holder_id else None
        if holder is None:
            raise ValidationFailed("userID (the holder's CIN) is required",
                                   errors=[{"field": "userID", "message": "is required"}])
        cin = holder.cin
    try:
        holder = holders.find_by_cin(call.session, cin)
    except InvalidHolder as exc:
        raise ValidationFailed("userID is not a CIN",
                               errors=[{"field": "userID", "message": exc.detail}]) from exc
    call.authorize(Scope(holder_id=holder.id if holder else -1))
    return wiring().remote().credentials(call.session, cin, only_valid=only_valid)


def credential_bucket(credential_id: str) -> str:
    """The rate-limit subject of a credential, however its serial is spelt."""
    return f"cred:{credential_id.strip().lower()}"


def guess_hash_oid(values: list[str]) -> str:
    """The hash algorithm of base64 ``values`` from their size (CSC v1 authorize names
    none): 32, 48 or 64 bytes."""
    by_size = {size: oid for oid, (_name, size) in HASH_OIDS.items()}
    first = values[0] if values else ""
    size = len(first.rstrip("=")) * 3 // 4
    return by_size.get(size, SHA256_OID)


def grant(call: Call, *, credential_id: str, pin: str, otp: str, hashes_: list[str],
          hash_oid: str, purpose: str, num_signatures: int | None, description: str | None
          ) -> tuple[str, int, str]:
    """The one authorisation step behind v1 and v2 ``credentials/authorize``: checks the
    caller's reach, decodes the hashes, asks the service. Returns the SAD, its lifetime in
    seconds and the authorisation's id."""
    load_credential(call, credential_id)
    remote = wiring().remote()
    if purpose == PURPOSE_DOCUMENT and hash_oid != SHA256_OID:
        raise InvalidInput("documentDigests are SHA-256")
    name, size = parse_hash_algorithm(hash_oid)
    digests = decode_hashes(hashes_, size, limit=remote.policy.max_batch)
    found = remote.authorize(credential_id, pin=pin, otp=otp, digests=digests,
                             hash_algorithm=name, purpose=purpose, client=call.user.key,
                             actor=call.actor, num_signatures=num_signatures,
                             description=description or "")
    expires = found.expires_at or call.clock.now()
    return (found.sad, max(0, int((expires - call.clock.now()).total_seconds())),
            found.authorization_id)


def sign_hashes(call: Call, *, credential_id: str, sad: str, hashes_: list[str],
                hash_oid: str, sign_algo: str | None) -> list[str]:
    """The one ``signHash`` step behind v1 and v2."""
    known = load_credential(call, credential_id, authorised=True)
    remote = wiring().remote()
    name, size = parse_hash_algorithm(hash_oid)
    digests = decode_hashes(hashes_, size, limit=remote.policy.max_batch)
    signatures = remote.sign_hashes(credential_id, sad=sad, digests=digests,
                                    hash_algorithm=name, sign_algorithm=sign_algo,
                                    client=call.user.key, actor=call.actor, known=known)
    return [b64(s) for s in signatures]


__all__ = [
    "CIN",
    "HASH_OID_BY_NAME",
    "SERIAL",
    "SHA256_OID",
    "CertOut",
    "CredentialInfoOut",
    "KeyOut",
    "b64",
    "credential_bucket",
    "credential_info",
    "credential_scope",
    "find_credentials",
    "grant",
    "guess_hash_oid",
    "load_credential",
    "sign_hashes",
]
