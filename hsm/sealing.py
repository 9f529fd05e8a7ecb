"""Sealed secrets: AES-256-GCM under a non-extractable key on a token (the PINs and codes
waiting in delivery's envelopes). :class:`~hsm.library.TokenLibrary` is the front
(``ensure_secret_key``, ``encrypt``, ``decrypt``); the work is here.

Blob: version byte, 12-byte random nonce, ciphertext and 16-byte tag. With a
``sealing_module`` (the main module is p11-kit's client, whose RPC in p11-kit 0.24 cannot
carry CKM_AES_GCM) the work runs on that module instead.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from hsm import _module as _mod
from hsm.errors import DecryptionFailed, InvalidRequest, KeyNotFound, TokenNotFound
from hsm.pool import PooledSession, module_error

if TYPE_CHECKING:
    from hsm.library import TokenLibrary

GCM_NONCE_BYTES = 12
GCM_TAG_BITS = 128
BLOB_VERSION = b"\x01"


def secret_key(entry: PooledSession, key_label: str) -> Any:
    key = entry.secret_keys.get(key_label)
    if key is None:
        # Consume the search fully: an open search keeps the session busy.
        found = list(entry.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                                Attribute.LABEL: key_label}))
        if not found:
            raise KeyNotFound("No secret key has this label.", key_label=key_label)
        key = entry.secret_keys[key_label] = found[0]
    return key


def ensure_secret_key(lib: TokenLibrary, label: str, pin: str, key_label: str) -> None:
    """Make sure an AES-256 key (token, private, sensitive, not extractable, encrypt and
    decrypt only) labelled ``key_label`` exists on the token."""
    lib._login(label, pin)
    with lib._pool.locked() as state:
        entry = lib._pool.entry(state, label)
        try:
            try:
                secret_key(entry, key_label)
                return
            except KeyNotFound:
                pass
            entry.secret_keys[key_label] = entry.session.generate_key(
                KeyType.AES, 256, label=key_label, store=True,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template={
                    Attribute.TOKEN: True, Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                    Attribute.WRAP: False, Attribute.UNWRAP: False,
                    Attribute.SIGN: False, Attribute.VERIFY: False,
                    Attribute.DERIVE: False,
                })
        except p11.PKCS11Error as exc:
            raise module_error(exc, "generating a secret key") from exc


def _on_sealing_module(lib: TokenLibrary, operation: str, *args: Any, **kwargs: Any) -> Any:
    """Run encrypt/decrypt on the sealing module. Its state is read when it is
    initialised, so a token or key made since (through the main module) is found by
    initialising it again, once."""
    sealing = lib._sealing
    if sealing is None:  # pragma: no cover - callers check
        raise InvalidRequest("No sealing module.")
    try:
        return getattr(sealing, operation)(*args, **kwargs)
    except (TokenNotFound, KeyNotFound):
        _mod.load_module(sealing.module_path).reinitialize()
        return getattr(sealing, operation)(*args, **kwargs)


def encrypt(lib: TokenLibrary, label: str, pin: str, key_label: str, plaintext: bytes,
            aad: bytes = b"") -> bytes:
    """AES-256-GCM on the token. Blob: version byte, 12-byte random nonce, ciphertext
    and 16-byte tag. Random nonces: keep a key under 2**32 messages.

    With ``sealing_module`` set (the main module is p11-kit's client, whose RPC in
    p11-kit 0.24 cannot carry CKM_AES_GCM), this runs on that module instead."""
    if lib._sealing is not None:
        return bytes(_on_sealing_module(lib, "encrypt", label, pin, key_label, plaintext,
                                        aad=aad))
    lib._login(label, pin)
    nonce = os.urandom(GCM_NONCE_BYTES)
    with lib._pool.locked() as state:
        entry = lib._pool.entry(state, label)
        try:
            key = secret_key(entry, key_label)
            sealed = key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                 mechanism_param=pkcs11.GCMParams(nonce, aad or None,
                                                                  GCM_TAG_BITS))
        except p11.PKCS11Error as exc:
            raise module_error(exc, "encrypting") from exc
    return BLOB_VERSION + nonce + bytes(sealed)


def decrypt(lib: TokenLibrary, label: str, pin: str, key_label: str, blob: bytes,
            aad: bytes = b"") -> bytes:
    """Reverse :meth:`encrypt`; raise :class:`DecryptionFailed` if the blob, the AAD or
    the key do not match."""
    if lib._sealing is not None:
        return bytes(_on_sealing_module(lib, "decrypt", label, pin, key_label, blob, aad=aad))
    if (len(blob) < 1 + GCM_NONCE_BYTES + GCM_TAG_BITS // 8
            or blob[:1] != BLOB_VERSION):
        raise DecryptionFailed("Not a sealed blob of this version.")
    nonce = blob[1:1 + GCM_NONCE_BYTES]
    sealed = blob[1 + GCM_NONCE_BYTES:]
    lib._login(label, pin)
    with lib._pool.locked() as state:
        entry = lib._pool.entry(state, label)
        key = secret_key(entry, key_label)
        try:
            return bytes(key.decrypt(sealed, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=pkcs11.GCMParams(
                                         nonce, aad or None, GCM_TAG_BITS)))
        except (p11.EncryptedDataInvalid, p11.EncryptedDataLenRange,
                p11.FunctionFailed, p11.SignatureInvalid, p11.DataInvalid,
                p11.GeneralError) as exc:
            # SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR.
            raise DecryptionFailed("The sealed blob did not authenticate.") from exc
        except p11.PKCS11Error as exc:
            raise module_error(exc, "decrypting") from exc


__all__ = ["BLOB_VERSION", "decrypt", "encrypt", "ensure_secret_key", "secret_key"]
