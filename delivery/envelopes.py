"""Secret envelopes: a PIN or one-time code kept only encrypted while it waits to be sent.

The key is an AES-256 key on the service's own token (non-extractable, created by
:func:`provision_envelope_key`); sealing and opening happen on the token layer
(``hsm.TokenLibrary.encrypt/decrypt``). The ciphertext is bound by its AAD to the envelope's
id, purpose and holder, so a blob copied into another row does not open. Once every message
carrying it has been sent, :func:`destroy` erases the ciphertext: from then on nobody, the
service included, can recover the secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock
from delivery.errors import EnvelopeUnavailable, TokenLayerUnavailable
from delivery.models import (
    ENVELOPE_PURPOSES,
    OUTBOX_DEAD,
    OUTBOX_PENDING,
    OUTBOX_SENDING,
    OutboxMessage,
    SecretEnvelope,
)
from hsm import HsmError, TokenLibrary


@runtime_checkable
class Sealer(Protocol):
    """Authenticated encryption under a key that never leaves the token layer."""

    key_label: str

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, blob: bytes, aad: bytes) -> bytes: ...


class TokenSealer:
    """A :class:`Sealer` over ``hsm.TokenLibrary`` (AES-256-GCM under keys derived on the
    service's token)."""

    def __init__(self, tokens: TokenLibrary, token_label: str, token_pin: str,
                 key_label: str) -> None:
        self._tokens = tokens
        self._label = token_label
        self._pin = token_pin
        self.key_label = key_label

    def __repr__(self) -> str:
        return f"<TokenSealer token={self._label!r} key={self.key_label!r}>"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        try:
            return self._tokens.encrypt(self._label, self._pin, self.key_label, plaintext,
                                        aad=aad)
        except HsmError as exc:
            raise TokenLayerUnavailable("the token layer could not seal the secret",
                                        reason=exc.type) from exc

    def open(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self._tokens.decrypt(self._label, self._pin, self.key_label, blob, aad=aad)
        except HsmError as exc:
            raise TokenLayerUnavailable("the token layer could not open the secret",
                                        reason=exc.type) from exc


def provision_envelope_key(tokens: TokenLibrary, *, token_label: str, token_pin: str,
                           key_label: str, so_pin: str = "") -> None:
    """Create the service token (if ``so_pin`` is given and it is missing) and its AES key
    (if missing). Idempotent."""
    if not tokens.token_exists(token_label):
        if not so_pin:
            raise TokenLayerUnavailable(
                f"the envelope token {token_label!r} does not exist and no SO PIN was given "
                "to create it", token=token_label)
        tokens.init_token(token_label, so_pin, token_pin)
    tokens.ensure_secret_key(token_label, token_pin, key_label)


def _aad(envelope_id: str, purpose: str, holder_id: int) -> bytes:
    return f"tawqi/envelope/v1/{envelope_id}/{purpose}/{holder_id}".encode()


@dataclass(frozen=True)
class SealedSecret:
    """A secret encrypted on the token layer, not stored yet (:func:`store_sealed`)."""

    envelope_id: str
    purpose: str
    holder_id: int
    key_label: str
    ciphertext: bytes = field(repr=False)


def seal_secret(sealer: Sealer, *, purpose: str, holder_id: int, secret: str) -> SealedSecret:
    """Encrypt ``secret`` on the token layer (no database: a batch seals before its
    transaction). Only the ciphertext is kept."""
    if purpose not in ENVELOPE_PURPOSES:
        raise ValueError(f"unknown envelope purpose {purpose!r}")
    envelope_id = str(uuid.uuid4())
    blob = sealer.seal(secret.encode("utf-8"), _aad(envelope_id, purpose, holder_id))
    return SealedSecret(envelope_id, purpose, holder_id, sealer.key_label, blob)


def store_sealed(session: Session, clock: Clock, sealed: SealedSecret) -> SecretEnvelope:
    envelope = SecretEnvelope(id=sealed.envelope_id, purpose=sealed.purpose,
                              holder_id=sealed.holder_id, key_label=sealed.key_label,
                              ciphertext=sealed.ciphertext, created_at=clock.now(),
                              destroyed_reason="")
    session.add(envelope)
    session.flush()
    return envelope


def seal(session: Session, clock: Clock, sealer: Sealer, *, purpose: str, holder_id: int,
         secret: str) -> SecretEnvelope:
    """Encrypt ``secret`` on the token layer and store only the ciphertext."""
    return store_sealed(session, clock, seal_secret(sealer, purpose=purpose,
                                                    holder_id=holder_id, secret=secret))


def open_envelope(sealer: Sealer, envelope_id: str, purpose: str, holder_id: int,
                  blob: bytes | None) -> str:
    """The secret in clear, for the moment of sending. Never store or log the result."""
    if blob is None:
        raise EnvelopeUnavailable("the secret was already delivered and destroyed",
                                  envelope=envelope_id)
    return sealer.open(blob, _aad(envelope_id, purpose, holder_id)).decode("utf-8")


def count_sealed(session: Session) -> int:
    """How many envelopes still hold a ciphertext (secrets waiting to be sent)."""
    return int(session.scalar(select(func.count(SecretEnvelope.id))
                              .where(SecretEnvelope.ciphertext.is_not(None))) or 0)


def destroy(session: Session, clock: Clock, envelope_id: str, *, reason: str,
            actor: str) -> bool:
    """Erase the ciphertext (idempotent); return whether this call destroyed it."""
    envelope = session.scalar(select(SecretEnvelope).where(SecretEnvelope.id == envelope_id)
                              .with_for_update())
    if envelope is None or envelope.ciphertext is None:
        return False
    envelope.ciphertext = None
    envelope.destroyed_at = clock.now()
    envelope.destroyed_reason = reason
    session.flush()
    record(session, clock, actor=actor, action="delivery.envelope.destroyed",
           object_type="secret_envelope", object_id=envelope_id,
           summary={"purpose": envelope.purpose, "holder_id": envelope.holder_id,
                    "reason": reason})
    return True


def purge_dead(session: Session, clock: Clock, *, retention_days: int, actor: str) -> int:
    """Erase the envelopes nobody will send any more: still sealed, created more than
    ``retention_days`` ago, whose every message is dead (none pending or being sent) and was
    last due before that cutoff. Until then ``tawqi outbox retry`` can revive them; after,
    the holder needs a PIN reset. An envelope with no message yet (a device token's PIN
    waiting for the hand-over) is never purged. Returns how many were erased."""
    cutoff = clock.now() - timedelta(days=retention_days)
    carried = OutboxMessage.envelope_id == SecretEnvelope.id
    candidates = session.scalars(
        select(SecretEnvelope.id)
        .where(SecretEnvelope.ciphertext.is_not(None), SecretEnvelope.created_at < cutoff,
               exists().where(and_(carried, OutboxMessage.status == OUTBOX_DEAD)),
               ~exists().where(and_(carried, OutboxMessage.status.in_(
                   (OUTBOX_PENDING, OUTBOX_SENDING)))),
               ~exists().where(and_(carried, OutboxMessage.next_attempt_at >= cutoff)))
        .order_by(SecretEnvelope.created_at)).all()
    return sum(destroy(session, clock, envelope_id, reason="purged: undeliverable",
                       actor=actor) for envelope_id in candidates)
