"""The PIN sealed between authorisation and signature, and the SAD's fingerprint.

The service keeps only a SAD's SHA-256 (:func:`sad_hash`). The PIN waits sealed
(AES-256-GCM) under a key derived from the SAD itself (HKDF, salted with the
authorisation's id), with the authorisation's binding (id, certificate, client, digests)
as associated data: the database alone cannot open the box, and a box moved to another
row does not open.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pki.signing.errors import SadInvalid
from pki.signing.models import SigningAuthorization


def sad_hash(sad: str) -> str:
    return hashlib.sha256(sad.encode("ascii", "replace")).hexdigest()


def _box_key(sad: str, authorization_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=authorization_id.encode(),
                info=b"tawqi/sad/pin/v1").derive(sad.encode("ascii"))


def _box_aad(row: SigningAuthorization) -> bytes:
    return f"{row.id}|{row.certificate_id}|{row.client}|{row.digests_hash}".encode()


def seal_pin(sad: str, row: SigningAuthorization, pin: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_box_key(sad, row.id)).encrypt(nonce, pin.encode("utf-8"),
                                                         _box_aad(row))


def open_pin(sad: str, row: SigningAuthorization, box: bytes) -> str:
    from cryptography.exceptions import InvalidTag

    try:
        return AESGCM(_box_key(sad, row.id)).decrypt(box[:12], box[12:],
                                                     _box_aad(row)).decode("utf-8")
    except (InvalidTag, ValueError) as exc:
        raise SadInvalid("the SAD does not open its authorisation") from exc


__all__ = ["open_pin", "sad_hash", "seal_pin"]
