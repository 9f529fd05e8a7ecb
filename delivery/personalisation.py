"""Personalisation: a key on the holder's token, its certificate, and a PIN only the holder
will learn.

The service sets a fresh random PIN, seals it at once in an envelope (encrypted on the
token layer) and uses it to initialise the token and have pki generate the key on it and
certify it. The PIN then exists nowhere in clear; it leaves in the holder's SMS and email
when the token is handed over (device) or activated (hosted), and the envelope is destroyed.

The token and certificate work sits behind :class:`Personaliser` so that the state machine
does not depend on how pki issues; :class:`TokenPersonaliser` is the real one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from core.audit import deferred
from core.clock import Clock
from core.db import exclusive, transaction
from delivery import envelopes
from delivery.envelopes import Sealer
from delivery.errors import IllegalTransition
from delivery.holders import HolderProfile, get_holder, profile
from delivery.models import ENVELOPE_INITIAL_PIN, KIND_RENEWAL, CertificateRequest, Mandate
from delivery.policy import DeliveryPolicy
from delivery.requests import allowed_steps, get_request, move
from hsm import TokenLibrary, generate_pin

if TYPE_CHECKING:
    from pki.authority import Authority
    from pki.profiles import HolderIdentity


@dataclass(frozen=True)
class PersonalisedToken:
    token_label: str
    certificate_serial: str
    not_after: datetime | None
    fingerprint: str = ""
    written_to_token: bool = True


@runtime_checkable
class Personaliser(Protocol):
    def personalise(self, session: Session, clock: Clock, *, holder: HolderProfile,
                    token_label: str, pin: str, actor: str) -> PersonalisedToken:
        """Initialise the token ``token_label`` with user PIN ``pin``, generate the holder's
        key on it and issue its certificate (in ``session``'s transaction). Never store or
        log ``pin``."""
        ...

    def renew(self, session: Session, clock: Clock, *, serial: str, actor: str
              ) -> PersonalisedToken:
        """Certify the key of certificate ``serial`` again and write the new certificate to
        its token (no PIN needed: a certificate is a public object)."""
        ...

    def supersede(self, session: Session, clock: Clock, *, serial: str, actor: str) -> None:
        """Revoke certificate ``serial`` as superseded."""
        ...

    def hold(self, session: Session, clock: Clock, *, serial: str, actor: str,
             note: str) -> None:
        """Suspend certificate ``serial`` (certificateHold)."""
        ...

    def revoke(self, session: Session, clock: Clock, *, serial: str, reason: str,
               actor: str) -> None:
        """Revoke certificate ``serial`` with an RFC 5280 reason (if not revoked yet)."""
        ...

    def wipe(self, token_label: str) -> int:
        """Destroy every object on the token (as security officer: the holder's PIN is not
        needed); return how many."""
        ...


@dataclass(frozen=True)
class TokenKey:
    """A key pair generated ON a fresh token, not certified yet (the private half never
    leaves the token; ``public_key`` is its SubjectPublicKeyInfo, DER)."""

    token_label: str
    key_id: bytes
    public_key: bytes
    key_type: str


@runtime_checkable
class BatchPersonaliser(Protocol):
    """A :class:`Personaliser` whose token work can run before the database transaction
    that records it (:mod:`delivery.preparation` personalises in batches that way)."""

    def create_tokens(self, tokens: Sequence[tuple[str, str]]) -> None:
        """Initialise a fresh token per ``(label, user PIN)``. Two processes must not run
        this at once (they would pick the same free slot): the caller serialises it."""
        ...

    def generate_key(self, token_label: str, pin: str) -> TokenKey:
        """Generate the holder's key pair on the token (one login, kept for
        :meth:`certify`). Never store or log ``pin``."""
        ...

    def certify(self, session: Session, clock: Clock, *, holder: HolderProfile,
                key: TokenKey, actor: str) -> PersonalisedToken:
        """Certify ``key`` in ``session``'s transaction; the certificate is not on the token
        yet (``written_to_token=False``): :meth:`write_certificates` after the commit."""
        ...

    def write_certificates(self, serials: Sequence[str], *, sessions: sessionmaker[Session],
                           clock: Clock, actor: str, fresh: bool) -> int:
        """Write the (committed) certificates ``serials`` to their tokens, outside any
        transaction but short reads and the record of each outcome; return how many were
        written."""
        ...

    def release(self, token_label: str) -> None:
        """Log the token out and close its session."""
        ...

    def wipe(self, token_label: str) -> int: ...

    def token_labels(self, prefix: str) -> list[str]:
        """The labels of the initialised tokens starting with ``prefix``."""
        ...


class TokenPersonaliser:
    """The real :class:`Personaliser`: ``hsm`` initialises the token, ``pki`` generates the
    key on it, certifies it and writes the certificate back."""

    def __init__(self, tokens: TokenLibrary, *, so_pin: str, authority: Authority,
                 key_type: str = "EC-P256") -> None:
        self.tokens = tokens
        self._so_pin = so_pin
        self.authority = authority
        self.key_type = key_type

    def __repr__(self) -> str:
        return f"<TokenPersonaliser key_type={self.key_type!r}>"

    def personalise(self, session: Session, clock: Clock, *, holder: HolderProfile,
                    token_label: str, pin: str, actor: str) -> PersonalisedToken:
        from pki.issuance import issue_holder_certificate

        identity = _identity(holder)
        # Two processes behind one token server must not pick the same free slot.
        with exclusive(session, "tawqi.token-init"):
            self.tokens.init_token(token_label, self._so_pin, pin)
        try:
            issued = issue_holder_certificate(
                session, clock, self.authority, self.tokens, token_label=token_label,
                token_pin=pin, holder=identity, key_type=self.key_type, actor=actor)
        finally:
            self.tokens.release(token_label)
        return PersonalisedToken(token_label, issued.serial, issued.not_after,
                                 issued.fingerprint)

    # The batch path (BatchPersonaliser): the token work first, the certificate later.

    def create_tokens(self, tokens: Sequence[tuple[str, str]]) -> None:
        self.tokens.init_tokens(self._so_pin, tokens)

    def generate_key(self, token_label: str, pin: str) -> TokenKey:
        from cryptography.hazmat.primitives import serialization

        from pki.issuance import HOLDER_KEY_LABEL

        key_id = secrets.token_bytes(8)
        public = self.tokens.generate_key_pair(token_label, pin, key_type=self.key_type,
                                               key_label=HOLDER_KEY_LABEL, key_id=key_id)
        spki = public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        return TokenKey(token_label, key_id, spki, self.key_type)

    def certify(self, session: Session, clock: Clock, *, holder: HolderProfile,
                key: TokenKey, actor: str) -> PersonalisedToken:
        from pki.issuance import certify_token_key

        issued = certify_token_key(session, clock, self.authority,
                                   token_label=key.token_label, key_id=key.key_id,
                                   public_key=key.public_key, key_type=key.key_type,
                                   holder=_identity(holder), actor=actor)
        return PersonalisedToken(key.token_label, issued.serial, issued.not_after,
                                 issued.fingerprint, written_to_token=False)

    def write_certificates(self, serials: Sequence[str], *, sessions: sessionmaker[Session],
                           clock: Clock, actor: str, fresh: bool) -> int:
        from pki.issuance import issued_certificate, record_written, store_on_token

        with transaction(sessions) as session:
            issued = [issued_certificate(session, serial) for serial in serials]
        outcomes = [store_on_token(self.tokens, one, fresh=fresh) for one in issued]
        if not fresh:  # tokens opened for this (a resumed run): close their sessions
            for one in issued:
                self.tokens.release(one.token_label)
        with transaction(sessions) as session, deferred(session):
            for one, error in zip(issued, outcomes, strict=True):
                record_written(session, clock, one.serial, token_label=one.token_label,
                               error=error, actor=actor)
        return sum(1 for error in outcomes if error is None)

    def release(self, token_label: str) -> None:
        self.tokens.release(token_label)

    def renew(self, session: Session, clock: Clock, *, serial: str, actor: str
              ) -> PersonalisedToken:
        from pki.issuance import renew

        issued = renew(session, clock, self.authority, self.tokens, serial, actor=actor)
        return PersonalisedToken(issued.token_label, issued.serial, issued.not_after,
                                 issued.fingerprint)

    def supersede(self, session: Session, clock: Clock, *, serial: str, actor: str) -> None:
        self.revoke(session, clock, serial=serial, reason="superseded", actor=actor)

    def hold(self, session: Session, clock: Clock, *, serial: str, actor: str,
             note: str) -> None:
        from pki.lifecycle import certificate_status, suspend

        if certificate_status(session, serial).status == "issued":
            suspend(session, clock, self.authority, serial, actor=actor, note=note)

    def revoke(self, session: Session, clock: Clock, *, serial: str, reason: str,
               actor: str) -> None:
        from pki.lifecycle import certificate_status, revoke

        if certificate_status(session, serial).status in ("issued", "suspended"):
            revoke(session, clock, self.authority, serial, reason, actor=actor)

    def token_labels(self, prefix: str) -> list[str]:
        return self.tokens.token_labels(prefix)

    def wipe(self, token_label: str) -> int:
        # The SO sets a throw-away user PIN (never kept) to log in and destroy the objects.
        throwaway = self.tokens.reset_pin(token_label, self._so_pin)
        try:
            return self.tokens.destroy_objects(token_label, throwaway)
        finally:
            del throwaway
            self.tokens.release(token_label)


def _identity(holder: HolderProfile) -> HolderIdentity:
    from pki.profiles import HolderIdentity

    return HolderIdentity(cin=holder.cin, given_name=holder.given_name_fr,
                          surname=holder.surname_fr, title=holder.title_fr,
                          organization=holder.organisation_fr)


TOKEN_LABEL_PREFIX = "tawqi-r"
_TOKEN_LABEL = re.compile(r"tawqi-r([0-9]+)-[0-9a-f]{6}")


def new_token_label(request_id: int) -> str:
    """A PKCS#11 label (at most 32 characters) unique to this personalisation attempt: a
    failed attempt may leave an initialised token behind, which a retry must not reuse
    (:func:`delivery.preparation.wipe_orphans` finds such tokens by their request id)."""
    return f"{TOKEN_LABEL_PREFIX}{request_id}-{secrets.token_hex(3)}"


def label_request_id(label: str) -> int | None:
    """The request id in a label :func:`new_token_label` made, else None."""
    match = _TOKEN_LABEL.fullmatch(label)
    return int(match.group(1)) if match else None


def personalise_request(session: Session, clock: Clock, request_id: int, *,
                        personaliser: Personaliser, sealer: Sealer, actor: str,
                        policy: DeliveryPolicy) -> CertificateRequest:
    """Personalise an approved request's token (device or hosted).

    Order: check the step, seal a fresh PIN (so the token layer is known to work before a
    token is initialised), personalise, then record the token, the certificate and the
    envelope, and move to ``personalised``. If the transaction then fails, the token stays
    initialised but unknown to the database (a new attempt uses a new label).
    """
    request = get_request(session, request_id, lock=True)
    if "personalise" not in allowed_steps(request):
        raise IllegalTransition(f"cannot personalise request {request.id}: it is "
                                f"{request.status}", request_id=request.id,
                                status=request.status, step="personalise",
                                allowed=allowed_steps(request))
    if request.kind == KIND_RENEWAL and request.follows_request_id is not None:
        return _personalise_renewal(session, clock, request, personaliser=personaliser,
                                    actor=actor)
    holder = get_holder(session, request.holder_id)
    pin = generate_pin(policy.pin_length)
    envelope = envelopes.seal(session, clock, sealer, purpose=ENVELOPE_INITIAL_PIN,
                              holder_id=holder.id, secret=pin)
    label = new_token_label(request.id)
    mandate = session.get_one(Mandate, request.mandate_id)
    token = personaliser.personalise(session, clock, holder=profile(session, holder, mandate),
                                     token_label=label, pin=pin, actor=actor)
    del pin
    _record(session, clock, request, token, envelope.id, actor=actor)
    return request


def _record(session: Session, clock: Clock, request: CertificateRequest,
            token: PersonalisedToken, envelope_id: str, *, actor: str) -> None:
    request.token_label = token.token_label
    request.certificate_serial = token.certificate_serial
    request.certificate_not_after = token.not_after
    request.pin_envelope_id = envelope_id
    request.pin_change_required = True
    move(session, clock, request, "personalise", actor=actor,
         summary={"token_label": token.token_label,
                  "certificate_serial": token.certificate_serial})


def personalise_with_key(session: Session, clock: Clock, request_id: int, *,
                         personaliser: BatchPersonaliser, key: TokenKey,
                         envelope: envelopes.SealedSecret, actor: str
                         ) -> CertificateRequest | None:
    """Record the personalisation of an approved request whose token work was done before
    this transaction (:mod:`delivery.preparation`): ``key`` was generated on a fresh token
    initialised with the PIN sealed in ``envelope``. Stores the envelope, certifies the key
    (the certificate written to the token) and moves the request to ``personalised``.

    Returns ``None``, changing nothing, when the request cannot be personalised any more
    (another worker did it, or it was cancelled): the caller wipes that token."""
    request = get_request(session, request_id, lock=True)
    if "personalise" not in allowed_steps(request) or request.kind == KIND_RENEWAL:
        return None
    if envelope.holder_id != request.holder_id or envelope.purpose != ENVELOPE_INITIAL_PIN:
        raise IllegalTransition(f"the sealed PIN is not for request {request.id}'s holder",
                                request_id=request.id, step="personalise")
    holder = get_holder(session, request.holder_id)
    mandate = session.get_one(Mandate, request.mandate_id)
    stored = envelopes.store_sealed(session, clock, envelope)
    token = personaliser.certify(session, clock, holder=profile(session, holder, mandate),
                                 key=key, actor=actor)
    _record(session, clock, request, token, stored.id, actor=actor)
    return request


def _personalise_renewal(session: Session, clock: Clock, request: CertificateRequest, *,
                         personaliser: Personaliser, actor: str) -> CertificateRequest:
    """A renewal: the key already on the holder's token is certified again and the new
    certificate written next to it. No new token, no PIN: the token stays with the renewed
    request until this one is activated (then the credential carries over)."""
    old = get_request(session, request.follows_request_id or 0)
    if not old.certificate_serial or not old.token_label:
        raise IllegalTransition(f"request {old.id} holds no credential to renew",
                                request_id=request.id, step="personalise")
    token = personaliser.renew(session, clock, serial=old.certificate_serial, actor=actor)
    request.certificate_serial = token.certificate_serial
    request.certificate_not_after = token.not_after
    move(session, clock, request, "personalise", actor=actor,
         summary={"token_label": token.token_label, "renews": old.certificate_serial,
                  "certificate_serial": token.certificate_serial})
    return request
