"""Remote signing with hosted keys, in the spirit of the Cloud Signature Consortium API v2.

A *credential* is a holder's certificate whose key lives in the service's HSM (a ``hosted``
token); its ID is the certificate serial (lowercase hex). The flow:

1. :meth:`RemoteSigning.send_otp`: a one-time code goes by SMS to the holder's registered
   mobile (through the seam :class:`CodeSender`; the service keeps only an argon2id hash).
2. :meth:`RemoteSigning.authorize`: the code, then the holder's PIN (checked on the token,
   so wrong PINs count towards its lockout), then a **signature activation datum** (SAD)
   is returned: single-use, short-lived (``sad_ttl``), bound to the credential, to the client
   that asked for it, and to the exact hashes (``signHash``) or the document digest
   (``signDoc``) it authorises, and to their number.
3. :meth:`RemoteSigning.sign_hashes` / :meth:`RemoteSigning.sign_document` check the request
   (the whole document, for a PDF) and the SAD, sign on the token, then use the SAD up in
   the transaction that records the signature: a failure before that commit (bad input, a
   token error, a process that dies) leaves the SAD usable until it expires, and of two
   concurrent uses exactly one commits.

Invariants: the PIN is never stored in clear. Between 2 and 3 it waits sealed (AES-256-GCM)
under a key derived from the SAD itself (HKDF): the service keeps only the SAD's SHA-256, so
its database alone cannot open the box; the box is erased when the SAD is used (or spent
by misuse), and an expired SAD's box is useless. A code is single-use, expires and allows
``otp_max_attempts`` guesses; a wrong code is committed before the error is raised and stops
the flow before the PIN is tried (so nobody without the phone can burn PIN attempts). A
certificate that is suspended, revoked, expired or not yet valid signs nothing (checked at
authorisation and again at signing). Every authorisation, use and signature writes an audit event.

Flask-free: the API hands in a session factory, the token layer, the holder directory and
the code sender; PIN checks run outside any database transaction (SQLite holds one write
lock).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.audit import deferred, record
from core.clock import Clock, as_utc
from core.db import transaction
from hsm import PinIncorrect, PinLocked
from pki.models import (
    PROFILE_HOLDER,
    STATUS_ISSUED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    AuthorityRecord,
    CertificateRecord,
)
from pki.signer import Signer
from pki.signing.errors import (
    BatchTooLarge,
    CredentialNotFound,
    CredentialUnusable,
    InvalidSigningRequest,
    OtpClosed,
    OtpInvalid,
    SadInvalid,
    SadMismatch,
)
from pki.signing.models import (
    OTP_FAILED,
    OTP_OPEN,
    OTP_USED,
    PURPOSE_DOCUMENT,
    PURPOSE_HASH,
    SAD_ACTIVE,
    SAD_USED,
    SignatureRecord,
    SigningAuthorization,
    SigningChallenge,
)
from pki.signing.pades import PadesRequest, PadesService, SignedPdf
from pki.signing.ports import CodeSender, HolderContact, HolderDirectory, SigningTokens
from pki.signing.sealing import open_pin, sad_hash, seal_pin

# --------------------------------------------------------------------------- constants

#: CSC hashAlgorithmOID values we accept, and the digest size of each.
HASH_OIDS: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.2.1": ("sha256", 32),
    "2.16.840.1.101.3.4.2.2": ("sha384", 48),
    "2.16.840.1.101.3.4.2.3": ("sha512", 64),
}
HASH_OID_BY_NAME = {name: oid for oid, (name, _size) in HASH_OIDS.items()}
#: CSC signAlgo values: the algorithm of the credential's key (the hash is given apart).
ECDSA_SIGN_OIDS = {
    "1.2.840.10045.2.1": None,  # id-ecPublicKey: hash from hashAlgorithmOID
    "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}
RSA_SIGN_OIDS = {
    "1.2.840.113549.1.1.1": None,  # rsaEncryption: PKCS#1 v1.5 with hashAlgorithmOID
    "1.2.840.113549.1.1.11": "sha256", "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}

CODE_DIGITS = 6
SAD_BYTES = 32
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class RemoteSigningPolicy:
    sad_ttl: timedelta = timedelta(minutes=5)
    otp_ttl: timedelta = timedelta(minutes=5)
    otp_max_attempts: int = 5
    max_batch: int = 1000
    #: The prefix of a signature's status page (``{TAWQI_PUBLIC_URL}/s/``): a visible stamp
    #: then carries the page's URL as a QR code. None: no QR code, no record.
    status_url: str | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.otp_max_attempts < 1:
            raise ValueError("max_batch and otp_max_attempts must be at least 1")
        if self.sad_ttl <= timedelta(0) or self.otp_ttl <= timedelta(0):
            raise ValueError("lifetimes must be positive")

    @classmethod
    def from_settings(cls, settings: Any) -> RemoteSigningPolicy:
        return cls(sad_ttl=timedelta(seconds=settings.sad_ttl_seconds),
                   otp_ttl=timedelta(minutes=settings.signing_otp_ttl_minutes),
                   otp_max_attempts=settings.otp_max_attempts,
                   max_batch=settings.sign_hash_max_batch,
                   status_url=settings.public_url.rstrip("/") + "/s/")


@dataclass(frozen=True)
class Credential:
    """A holder's certificate and where its key is. Never holds key material."""

    id: str
    record_id: int
    authority_id: int
    certificate: x509.Certificate
    status: str
    cin: str
    token_label: str
    key_id: bytes
    key_type: str

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def state_at(self, at: datetime) -> str:
        """valid | suspended | revoked | expired | not-yet-valid (CSC ``cert/status``)."""
        if self.status == STATUS_REVOKED:
            return "revoked"
        if self.status == STATUS_SUSPENDED:
            return "suspended"
        if at < self.not_before:
            return "not-yet-valid"
        if at > self.not_after:
            return "expired"
        return "valid" if self.status == STATUS_ISSUED else self.status

    @property
    def is_ec(self) -> bool:
        return isinstance(self.certificate.public_key(), ec.EllipticCurvePublicKey)

    @property
    def key_length(self) -> int:
        return int(getattr(self.certificate.public_key(), "key_size", 0))

    def sign_algorithms(self) -> list[str]:
        return list(ECDSA_SIGN_OIDS if self.is_ec else RSA_SIGN_OIDS)


@dataclass(frozen=True)
class OtpChallengeInfo:
    challenge_id: str
    expires_at: datetime
    phone_hint: str


@dataclass(frozen=True)
class Authorization:
    """Returned once: the SAD itself is shown only here."""

    sad: str = ""
    expires_at: datetime | None = None
    authorization_id: str = ""

    def __repr__(self) -> str:
        return f"Authorization(id={self.authorization_id!r}, expires_at={self.expires_at!r})"


#: A credential and its holder as a caller read them for its scope check in this request.
Known = tuple[Credential, HolderContact]


def digests_hash(digests: Sequence[bytes]) -> str:
    """The order-independent fingerprint of a set of digests a SAD authorises."""
    joined = b"".join(sorted(digests))
    return hashlib.sha256(len(digests).to_bytes(4, "big") + joined).hexdigest()


def _material(challenge_id: str, code: str) -> str:
    return f"signing:{challenge_id}:{code}"


def parse_hash_algorithm(oid: str) -> tuple[str, int]:
    found = HASH_OIDS.get(oid)
    if found is None:
        raise InvalidSigningRequest("hashAlgorithmOID must be SHA-256, SHA-384 or SHA-512",
                                    allowed=list(HASH_OIDS))
    return found


def decode_hashes(values: Sequence[str], size: int, *, limit: int) -> list[bytes]:
    """Base64 (standard or URL-safe) digests of ``size`` bytes, at most ``limit``."""
    if not values:
        raise InvalidSigningRequest("give at least one hash")
    if len(values) > limit:
        raise BatchTooLarge(f"at most {limit} hashes per request", limit=limit,
                            given=len(values))
    found = []
    for index, value in enumerate(values):
        # binascii checks the alphabet and the padding in C (base64.b64decode's validate
        # runs a regular expression per value: most of a 1,000-hash batch's decoding).
        try:
            if "-" in value or "_" in value:
                value = value.replace("-", "+").replace("_", "/")
            raw = binascii.a2b_base64(value + "=" * (-len(value) % 4), strict_mode=True)
        except (ValueError, TypeError) as exc:
            raise InvalidSigningRequest(f"hashes[{index}] is not base64",
                                        index=index) from exc
        if len(raw) != size:
            raise InvalidSigningRequest(f"hashes[{index}] is {len(raw)} bytes, not {size}",
                                        index=index)
        found.append(raw)
    return found


# --------------------------------------------------------------------------- service


class RemoteSigning:
    """Credentials, codes, SADs and signatures. One instance per application."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, tokens: SigningTokens,
                 *, directory: HolderDirectory, codes: CodeSender,
                 chain: Callable[[Session, Credential], tuple[x509.Certificate, ...]],
                 policy: RemoteSigningPolicy | None = None) -> None:
        self.sessions = sessions
        self.clock = clock
        self.tokens = tokens
        self.directory = directory
        self.codes = codes
        self.chain = chain
        self.policy = policy or RemoteSigningPolicy()
        self._label_locks: dict[str, threading.Lock] = {}
        self._chains: dict[int, tuple[x509.Certificate, ...]] = {}
        self._guard = threading.Lock()

    # ----------------------------------------------------------------- credentials

    @staticmethod
    def _credential(row: CertificateRecord) -> Credential:
        if row.der is None or row.cin is None:
            raise CredentialNotFound("no such credential", credential_id=row.serial)
        return Credential(id=row.serial, record_id=row.id, authority_id=row.authority_id,
                          certificate=x509.load_der_x509_certificate(row.der),
                          status=row.status, cin=row.cin, token_label=row.token_label,
                          key_id=bytes.fromhex(row.key_id), key_type=row.key_type)

    def credential(self, session: Session, credential_id: str) -> Credential:
        serial = str(credential_id).strip().lower()
        row = session.scalars(select(CertificateRecord).where(
            CertificateRecord.serial == serial,
            CertificateRecord.profile == PROFILE_HOLDER)).one_or_none()
        if row is None or row.der is None:
            raise CredentialNotFound("no such credential", credential_id=serial[:64])
        return self._credential(row)

    def credentials(self, session: Session, cin: str, *, only_valid: bool = False
                    ) -> list[Credential]:
        """The holder's hosted credentials, newest first."""
        rows = session.scalars(select(CertificateRecord).where(
            CertificateRecord.cin == cin.strip().upper(),
            CertificateRecord.profile == PROFILE_HOLDER,
            CertificateRecord.status.in_((STATUS_ISSUED, STATUS_SUSPENDED, STATUS_REVOKED)))
            .order_by(CertificateRecord.id.desc()))
        now = as_utc(self.clock.now())
        found = []
        for row in rows:
            contact = self.directory.contact(session, row.cin or "", row.serial)
            if contact is None or not contact.hosted:
                continue
            credential = self._credential(row)
            if only_valid and credential.state_at(now) != "valid":
                continue
            found.append(credential)
        return found

    def contact(self, session: Session, credential: Credential) -> HolderContact:
        found = self.directory.contact(session, credential.cin, credential.id)
        if found is None or not found.hosted:
            raise CredentialNotFound("this credential is not hosted by the service",
                                     credential_id=credential.id)
        return found

    def _check_usable(self, session: Session, credential: Credential,
                      contact: HolderContact | None = None) -> HolderContact:
        """Raise unless the certificate is valid now and its holder ready to sign;
        ``contact``: the holder as read in this request already (not read again)."""
        state = credential.state_at(as_utc(self.clock.now()))
        if state != "valid":
            raise CredentialUnusable(f"the certificate is {state}: it signs nothing",
                                     credential_id=credential.id, status=state)
        if contact is None:
            contact = self.contact(session, credential)
        elif not contact.hosted:
            raise CredentialNotFound("this credential is not hosted by the service",
                                     credential_id=credential.id)
        if not contact.ready:
            raise CredentialUnusable("the holder is not ready to sign: "
                                     + "; ".join(contact.reasons),
                                     credential_id=credential.id,
                                     reasons=list(contact.reasons))
        return contact

    # ----------------------------------------------------------------- one-time codes

    def send_otp(self, credential_id: str, *, client: str, actor: str,
                 purpose_fr: str = "une signature électronique",
                 purpose_ar: str = "توقيع إلكتروني"
                 ) -> OtpChallengeInfo:
        """Send a fresh code (superseding any open one for this credential and client)."""
        with transaction(self.sessions) as session:
            credential = self.credential(session, credential_id)
            contact = self._check_usable(session, credential)
            now = as_utc(self.clock.now())
            for old in session.scalars(select(SigningChallenge).where(
                    SigningChallenge.certificate_id == credential.record_id,
                    SigningChallenge.client == client,
                    SigningChallenge.status == OTP_OPEN).with_for_update()):
                old.status, old.closed_at = OTP_FAILED, now
            challenge_id = str(uuid.uuid4())
            code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
            expires = now + self.policy.otp_ttl
            session.add(SigningChallenge(
                id=challenge_id, certificate_id=credential.record_id, client=client,
                code_hash=_HASHER.hash(_material(challenge_id, code)), status=OTP_OPEN,
                attempts=0, max_attempts=self.policy.otp_max_attempts, created_at=now,
                expires_at=expires))
            session.flush()
            minutes = max(1, int(self.policy.otp_ttl.total_seconds() // 60))
            hint = self.codes.send(session, self.clock, contact=contact,
                                   challenge_id=challenge_id, code=code, ttl_minutes=minutes,
                                   purpose_fr=purpose_fr, purpose_ar=purpose_ar)
            del code
            record(session, self.clock, actor=actor, action="signing.otp.sent",
                   object_type="credential", object_id=credential.id,
                   summary={"challenge": challenge_id, "client": client,
                            "expires_at": expires.isoformat()})
            return OtpChallengeInfo(challenge_id, expires, hint)

    def _consume_code(self, credential: Credential, client: str, code: str, actor: str
                      ) -> None:
        """Check the client's open code for the credential; commit a wrong guess first."""
        failure: Exception | None = None
        with transaction(self.sessions) as session:
            challenge = session.scalars(select(SigningChallenge).where(
                SigningChallenge.certificate_id == credential.record_id,
                SigningChallenge.client == client,
                SigningChallenge.status == OTP_OPEN)
                .order_by(SigningChallenge.created_at.desc()).limit(1)
                .with_for_update()).one_or_none()
            now = as_utc(self.clock.now())
            if challenge is None or as_utc(challenge.expires_at) <= now:
                if challenge is not None:
                    challenge.status, challenge.closed_at = OTP_FAILED, now
                    record(session, self.clock, actor=actor, action="signing.otp.expired",
                           object_type="credential", object_id=credential.id,
                           summary={"challenge": challenge.id})
                failure = OtpClosed("no valid one-time code: ask for a new one",
                                    credential_id=credential.id)
            elif self._verify_code(challenge, code):
                challenge.status, challenge.closed_at = OTP_USED, now
                record(session, self.clock, actor=actor, action="signing.otp.verified",
                       object_type="credential", object_id=credential.id,
                       summary={"challenge": challenge.id})
            else:
                challenge.attempts += 1
                left = challenge.max_attempts - challenge.attempts
                if left <= 0:
                    challenge.status, challenge.closed_at = OTP_FAILED, now
                record(session, self.clock, actor=actor, action="signing.otp.wrong",
                       object_type="credential", object_id=credential.id,
                       summary={"challenge": challenge.id, "attempts_left": max(left, 0)})
                failure = (OtpInvalid("wrong one-time code", attempts_left=left) if left > 0
                           else OtpClosed("too many wrong codes: ask for a new one",
                                          credential_id=credential.id))
        if failure is not None:
            raise failure

    @staticmethod
    def _verify_code(challenge: SigningChallenge, code: str) -> bool:
        code = str(code or "").strip()
        if not code.isdigit() or len(code) != CODE_DIGITS:
            return False
        try:
            return _HASHER.verify(challenge.code_hash, _material(challenge.id, code))
        except (VerificationError, InvalidHashError):
            return False

    # ----------------------------------------------------------------- authorisation

    def authorize(self, credential_id: str, *, pin: str, otp: str, digests: Sequence[bytes],
                  hash_algorithm: str, purpose: str, client: str, actor: str,
                  num_signatures: int | None = None, description: str = "") -> Authorization:
        """Code, then PIN (on the token), then a SAD bound to ``digests``."""
        if purpose not in (PURPOSE_HASH, PURPOSE_DOCUMENT):
            raise InvalidSigningRequest("unknown purpose")
        if not digests:
            raise InvalidSigningRequest("a SAD authorises at least one hash")
        if len(digests) > self.policy.max_batch:
            raise BatchTooLarge(f"at most {self.policy.max_batch} hashes per SAD",
                                limit=self.policy.max_batch, given=len(digests))
        if len(set(digests)) != len(digests):
            raise InvalidSigningRequest("the hashes must be distinct")
        count = len(digests) if num_signatures is None else num_signatures
        if count != len(digests):
            raise InvalidSigningRequest("numSignatures must equal the number of hashes",
                                        num_signatures=count, hashes=len(digests))
        with transaction(self.sessions) as session:
            credential = self.credential(session, credential_id)
            self._check_usable(session, credential)
        if not isinstance(pin, str) or not pin:
            raise InvalidSigningRequest("the PIN is required")
        self._consume_code(credential, client, otp, actor)
        # The PIN on the token, outside any transaction (wrong PINs are counted by hsm).
        with self._label_lock(credential.token_label):
            self.tokens.private_key(credential.token_label, pin, key_id=credential.key_id)
        sad = base64.urlsafe_b64encode(secrets.token_bytes(SAD_BYTES)).decode().rstrip("=")
        with transaction(self.sessions) as session:
            credential = self.credential(session, credential_id)
            self._check_usable(session, credential)
            now = as_utc(self.clock.now())
            row = SigningAuthorization(
                id=str(uuid.uuid4()), sad_hash=sad_hash(sad),
                certificate_id=credential.record_id, client=client, purpose=purpose,
                hash_algorithm=hash_algorithm, digests_hash=digests_hash(digests),
                num_signatures=count, description=description[:500], status=SAD_ACTIVE,
                created_at=now, expires_at=now + self.policy.sad_ttl)
            row.pin_box = seal_pin(sad, row, pin)
            session.add(row)
            session.flush()
            record(session, self.clock, actor=actor, action="signing.authorized",
                   object_type="credential", object_id=credential.id,
                   summary={"authorization": row.id, "client": client, "purpose": purpose,
                            "signatures": count, "hash_algorithm": hash_algorithm,
                            "expires_at": row.expires_at.isoformat()})
            return Authorization(sad, row.expires_at, row.id)

    def _open(self, credential_id: str, sad: str, *, client: str,
              purposes: tuple[str, ...], digests: Sequence[bytes], hash_algorithm: str,
              actor: str, known: Known | None = None) -> tuple[Credential, str, str]:
        """Check the SAD and open its PIN box; return the credential, the PIN and the SAD's
        id. The SAD stays active: :meth:`_spend` uses it up in the transaction that records
        the signature, so a signature that fails (bad document, token error, a worker that
        dies) leaves it usable until it expires.

        A SAD presented for other hashes, another credential or by another client is
        spent on the spot (and audited): whoever holds it may be replaying it.
        ``purposes``: what the SAD may have been asked for (a SAD for ``hashes`` also
        signs documents whose SHA-256 are exactly those hashes, as CSC v2 has it).
        ``known``: the credential and its holder as the caller read them in this request
        (for its scope check): checked again here (state now, holder ready) without being
        read again."""
        if not isinstance(sad, str) or not sad or len(sad) > 200:
            raise SadInvalid("a SAD is required")
        failure: Exception | None = None
        with transaction(self.sessions) as session:
            row = session.scalars(select(SigningAuthorization).where(
                SigningAuthorization.sad_hash == sad_hash(sad))
                .with_for_update()).one_or_none()
            now = as_utc(self.clock.now())
            serial = str(credential_id).strip().lower()
            if known is not None and known[0].id == serial:
                credential, contact = known
            else:
                credential, contact = self.credential(session, credential_id), None
            if row is None or row.status != SAD_ACTIVE or row.pin_box is None:
                raise SadInvalid("unknown or already used SAD: authorise again")
            if as_utc(row.expires_at) <= now:
                raise SadInvalid("the SAD expired: authorise again",
                                 expired_at=as_utc(row.expires_at).isoformat())
            if not hmac.compare_digest(row.client, client) or \
                    row.certificate_id != credential.record_id:
                failure = SadInvalid("this SAD was issued for another client or credential")
            elif row.purpose not in purposes or row.hash_algorithm != hash_algorithm or \
                    row.num_signatures != len(digests) or \
                    not hmac.compare_digest(row.digests_hash, digests_hash(digests)):
                failure = SadMismatch("the SAD authorises other hashes: it is now spent",
                                      authorization=row.id)
            if failure is not None:
                self._refuse(session, row, credential, client, actor, type(failure).__name__)
            else:
                self._check_usable(session, credential, contact)
                return credential, open_pin(sad, row, row.pin_box), row.id
        raise failure

    def _refuse(self, session: Session, row: SigningAuthorization, credential: Credential,
                client: str, actor: str, reason: str) -> None:
        """Spend the SAD without a signature (misuse, or a PIN the token no longer takes)."""
        row.status, row.used_at, row.pin_box = SAD_USED, as_utc(self.clock.now()), None
        record(session, self.clock, actor=actor, action="signing.authorization.refused",
               object_type="credential", object_id=credential.id,
               summary={"authorization": row.id, "client": client, "reason": reason})

    def _spend(self, session: Session, authorization: str, credential: Credential, *,
               client: str, purpose: str, signatures: int, actor: str) -> None:
        """Use the SAD up, in the caller's transaction (the one recording the signature).

        A conditional UPDATE: of two requests racing with one SAD, exactly one finds it
        active (PostgreSQL re-checks the row after the winner commits; SQLite runs one
        write transaction at a time); the other gets ``SadInvalid`` and its signature is
        dropped unseen."""
        now = as_utc(self.clock.now())
        spent = session.execute(
            update(SigningAuthorization)
            .where(SigningAuthorization.id == authorization,
                   SigningAuthorization.status == SAD_ACTIVE)
            .values(status=SAD_USED, used_at=now, pin_box=None)
            .execution_options(synchronize_session=False))
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise SadInvalid("this SAD was used meanwhile: authorise again")
        record(session, self.clock, actor=actor, action="signing.authorization.used",
               object_type="credential", object_id=credential.id,
               summary={"authorization": authorization, "client": client,
                        "purpose": purpose, "signatures": signatures})

    def _token_refused(self, authorization: str, credential: Credential,
                       client: str, actor: str, error: Exception) -> None:
        """The token no longer takes the PIN sealed in the SAD (it was changed or locked
        since): retrying would only burn PIN attempts, so the SAD is spent."""
        with transaction(self.sessions) as session:
            row = session.scalars(select(SigningAuthorization).where(
                SigningAuthorization.id == authorization,
                SigningAuthorization.status == SAD_ACTIVE).with_for_update()).one_or_none()
            if row is not None:
                self._refuse(session, row, credential, client, actor, type(error).__name__)

    @contextmanager
    def _label_lock(self, label: str) -> Any:
        with self._guard:
            lock = self._label_locks.setdefault(label, threading.Lock())
        with lock:
            yield

    def _signer(self, credential: Credential, pin: str, *, soon: bool = False) -> Signer:
        """The credential's key with its chain, the PIN checked by the token (``soon``:
        the check still under way; the first signature waits for it)."""
        key = self.tokens.private_key_soon(credential.token_label, pin,
                                           key_id=credential.key_id) if soon \
            else self.tokens.private_key(credential.token_label, pin,
                                         key_id=credential.key_id)
        chain = self._chains.get(credential.authority_id)
        if chain is None:  # CA certificates never change: read them once
            with transaction(self.sessions) as session:
                chain = self._chains[credential.authority_id] = self.chain(session, credential)
        return Signer(key, credential.certificate, chain)

    # ----------------------------------------------------------------- signing

    def sign_hashes(self, credential_id: str, *, sad: str, digests: Sequence[bytes],
                    hash_algorithm: str, sign_algorithm: str | None, client: str,
                    actor: str, known: Known | None = None) -> list[bytes]:
        """Sign each digest (DER ECDSA or RSA PKCS#1 v1.5), in the order given.
        ``known``: see :meth:`_open`."""
        if len(digests) > self.policy.max_batch:
            raise BatchTooLarge(f"at most {self.policy.max_batch} hashes per request",
                                limit=self.policy.max_batch, given=len(digests))
        algorithm = _hash_algorithm(hash_algorithm)
        credential, pin, authorization = self._open(
            credential_id, sad, client=client, purposes=(PURPOSE_HASH,), digests=digests,
            hash_algorithm=hash_algorithm, actor=actor, known=known)
        _check_sign_algorithm(credential, sign_algorithm, hash_algorithm)
        try:
            with self._label_lock(credential.token_label):
                signer = self._signer(credential, pin)
                del pin
                signatures = signer.sign_digests(digests, algorithm)
        except (PinIncorrect, PinLocked) as exc:
            self._token_refused(authorization, credential, client, actor, exc)
            raise
        # deferred: the two events appended in one go (one statement, one head update)
        with transaction(self.sessions) as session, deferred(session):
            self._spend(session, authorization, credential, client=client,
                        purpose=PURPOSE_HASH, signatures=len(digests), actor=actor)
            record(session, self.clock, actor=actor, action="signing.hashes.signed",
                   object_type="credential", object_id=credential.id,
                   summary={"authorization": authorization, "client": client,
                            "count": len(signatures), "hash_algorithm": hash_algorithm})
        return signatures

    def sign_document(self, credential_id: str, *, sad: str, document: bytes,
                      request: PadesRequest, pades: PadesService, client: str,
                      actor: str, document_name: str | None = None,
                      known: Known | None = None) -> SignedPdf:
        """PAdES-sign ``document``, which the SAD authorised by its SHA-256."""
        return self.sign_documents(credential_id, sad=sad, documents=[(document, request)],
                                   pades=pades, client=client, actor=actor,
                                   names=[document_name], known=known)[0]

    def sign_documents(self, credential_id: str, *, sad: str,
                       documents: Sequence[tuple[bytes, PadesRequest]], pades: PadesService,
                       client: str, actor: str,
                       names: Sequence[str | None] | None = None,
                       known: Known | None = None) -> list[SignedPdf]:
        """PAdES-sign each document, in the order given; the SAD authorised exactly their
        SHA-256 digests (as ``documentDigests`` or as SHA-256 ``hashes``). All or nothing:
        the SAD is used up once, after the last signature.

        A visible stamp gets a QR code of the signature's status page
        (``policy.status_url`` + a random id) and the signature a :class:`SignatureRecord`
        (with the file's name from ``names``, if given)."""
        if not documents:
            raise InvalidSigningRequest("give at least one document")
        if len(documents) > self.policy.max_batch:
            raise BatchTooLarge(f"at most {self.policy.max_batch} documents per request",
                                limit=self.policy.max_batch, given=len(documents))
        public_ids: list[str | None] = []
        linked = []
        for document, request in documents:
            public_id = None
            if request.stamp is not None and self.policy.status_url:
                public_id = secrets.token_urlsafe(16)  # 128 random bits: unguessable
                request = replace(request, stamp=replace(
                    request.stamp, link=self.policy.status_url + public_id))
            public_ids.append(public_id)
            linked.append((document, request))
        documents = linked
        # Every document is parsed and checked first: a broken upload spends no SAD (the
        # parsed document is then signed, not parsed again).
        checked = [pades.check(document, request) for document, request in documents]
        digests = [hashlib.sha256(document).digest() for document, _request in documents]
        credential, pin, authorization = self._open(
            credential_id, sad, client=client, purposes=(PURPOSE_DOCUMENT, PURPOSE_HASH),
            digests=digests, hash_algorithm="sha256", actor=actor, known=known)
        try:
            with self._label_lock(credential.token_label):
                # The token checks the PIN while the stamp and the signed revision are
                # prepared (about 2 ms of a signature); the signature itself waits for it.
                signer = self._signer(credential, pin, soon=True)
                del pin
                try:
                    signed = [pades.sign(document, signer, request, check)
                              for (document, request), check in zip(documents, checked,
                                                                    strict=True)]
                except Exception:
                    # A PIN the token refused comes first, as if it had been checked
                    # before the document (the SAD is then spent below).
                    waiting = getattr(signer.key, "wait_for_pin_check", None)
                    if waiting is not None:
                        waiting()
                    raise
        except (PinIncorrect, PinLocked) as exc:
            self._token_refused(authorization, credential, client, actor, exc)
            raise
        with transaction(self.sessions) as session, deferred(session):
            self._spend(session, authorization, credential, client=client,
                        purpose=PURPOSE_DOCUMENT, signatures=len(signed), actor=actor)
            for digest, done in zip(digests, signed, strict=True):
                record(session, self.clock, actor=actor, action="signing.document.signed",
                       object_type="credential", object_id=credential.id,
                       summary={"authorization": authorization, "client": client,
                                "level": done.level.value, "field": done.field_name,
                                "document_in": digest.hex(), "document_out": done.sha256})
            for k, ((_document, request), public_id) in enumerate(
                    zip(documents, public_ids, strict=True)):
                stamp = request.stamp
                if public_id is None or stamp is None:
                    continue
                name = names[k] if names is not None and k < len(names) else None
                session.add(SignatureRecord(
                    public_id=public_id, certificate_id=credential.record_id,
                    serial=credential.id, signed_at=signed[k].signed_at,
                    name_fr=stamp.name_fr, name_ar=stamp.name_ar, title_fr=stamp.title_fr,
                    title_ar=stamp.title_ar, organisation_fr=stamp.organisation_fr,
                    organisation_ar=stamp.organisation_ar,
                    document_name=(name or "")[:200] or None))
                signed[k] = replace(signed[k], public_id=public_id)
        return signed

    def sign_digests_cms(self, credential_id: str, *, sad: str, digests: Sequence[bytes],
                         hash_algorithm: str, timestamper: Any | None, client: str,
                         actor: str, known: Known | None = None) -> list[bytes]:
        """A detached PAdES CMS signature (DER ``ContentInfo``) over each document digest,
        in the order given: CSC v2 ``signDoc`` with ``documentDigests``, for a client that
        prepared the PDF's byte range itself. ``timestamper`` (a pyHanko ``TimeStamper``)
        adds a signature time-stamp (B-T); without it the signature is B-B."""
        if len(digests) > self.policy.max_batch:
            raise BatchTooLarge(f"at most {self.policy.max_batch} hashes per request",
                                limit=self.policy.max_batch, given=len(digests))
        _hash_algorithm(hash_algorithm)
        credential, pin, authorization = self._open(
            credential_id, sad, client=client, purposes=(PURPOSE_HASH, PURPOSE_DOCUMENT),
            digests=digests, hash_algorithm=hash_algorithm, actor=actor, known=known)
        try:
            with self._label_lock(credential.token_label):
                signer = self._signer(credential, pin)
                del pin
                signatures = [cms_signature(signer, digest, hash_algorithm, timestamper)
                              for digest in digests]
        except (PinIncorrect, PinLocked) as exc:
            self._token_refused(authorization, credential, client, actor, exc)
            raise
        # deferred: the two events appended in one go (one statement, one head update)
        with transaction(self.sessions) as session, deferred(session):
            self._spend(session, authorization, credential, client=client,
                        purpose=PURPOSE_HASH, signatures=len(digests), actor=actor)
            record(session, self.clock, actor=actor, action="signing.hashes.signed",
                   object_type="credential", object_id=credential.id,
                   summary={"authorization": authorization, "client": client,
                            "count": len(signatures), "hash_algorithm": hash_algorithm,
                            "format": "cms"})
        return signatures


def cms_signature(signer: Signer, digest: bytes, hash_algorithm: str,
                  timestamper: Any | None) -> bytes:
    """A detached CMS ``SignedData`` (PAdES attributes) over ``digest``, signed on the token
    through the project's pyHanko adapter."""
    import asyncio

    from pki.signer import pyhanko_signer

    adapter = pyhanko_signer(signer)
    signed = asyncio.run(adapter.async_sign(digest, hash_algorithm, use_pades=True,
                                            timestamper=timestamper))
    der: bytes = signed.dump()
    return der


def issuer_chain(session: Session, credential: Credential) -> tuple[x509.Certificate, ...]:
    """The CA certificates above ``credential``, from our records (issuing CA, then up)."""
    chain: list[x509.Certificate] = []
    authority = session.get(AuthorityRecord, credential.authority_id)
    while authority is not None and len(chain) < 5:
        chain.append(x509.load_der_x509_certificate(authority.der))
        authority = session.get(AuthorityRecord, authority.parent_id) \
            if authority.parent_id else None
    return tuple(chain)


def _hash_algorithm(name: str) -> hashes.HashAlgorithm:
    table: dict[str, type[hashes.HashAlgorithm]] = {
        "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
    try:
        return table[name]()
    except KeyError as exc:
        raise InvalidSigningRequest("unsupported hash algorithm", algorithm=name) from exc


def _check_sign_algorithm(credential: Credential, oid: str | None, hash_name: str) -> None:
    if oid is None:
        return
    table = ECDSA_SIGN_OIDS if credential.is_ec else RSA_SIGN_OIDS
    if oid not in table:
        raise InvalidSigningRequest("signAlgo does not match the credential's key",
                                    allowed=list(table))
    implied = table[oid]
    if implied is not None and implied != hash_name:
        raise InvalidSigningRequest("signAlgo names another hash than hashAlgorithmOID")


__all__ = [
    "Authorization",
    "Credential",
    "Known",
    "OtpChallengeInfo",
    "RemoteSigning",
    "RemoteSigningPolicy",
    "cms_signature",
    "decode_hashes",
    "digests_hash",
    "issuer_chain",
    "parse_hash_algorithm",
]
