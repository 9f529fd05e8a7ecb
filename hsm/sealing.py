"""Sealed secrets (the PINs and codes waiting in delivery's envelopes) under a
non-extractable key on a token. :class:`~hsm.library.TokenLibrary` is the front
(``ensure_secret_key``, ``encrypt``, ``decrypt``); the work is here.

Why not AES-GCM on the token: p11-kit 0.24's RPC (the token server every process goes
through) refuses every AES mechanism, while it carries CKM_SHA256_HMAC. So the token
holds a 256-bit HMAC key (generic secret, sensitive, not extractable, sign only) and each
message gets its own AES-256-GCM key, ``HMAC(token key, context || salt)`` with a fresh
32-byte random salt, used once in this process and dropped. Whoever can open a blob must
still log in to the token and use its key, as before; no process needs the token files.

Blob v2: ``0x02``, salt (32 bytes), nonce (12 bytes), ciphertext and 16-byte tag.
Blob v1 (before): ``0x01``, nonce, ciphertext and tag, AES-GCM computed on the token; still
opened where the module carries CKM_AES_GCM (a module loaded directly), never written.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import pkcs11
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from hsm.errors import DecryptionFailed, KeyNotFound
from hsm.pool import PooledSession, module_error

if TYPE_CHECKING:
    from hsm.library import TokenLibrary

BLOB_VERSION = b"\x02"
LEGACY_BLOB_VERSION = b"\x01"
SALT_BYTES = 32
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
# Binds each derived key to this use, so the token key can never yield one of another's.
KDF_CONTEXT = b"tawqi/sealed-secret/v2\x00"


def secret_key(entry: PooledSession, key_label: str,
               key_type: KeyType = KeyType.GENERIC_SECRET) -> Any:
    cache_key = f"{key_type.name}:{key_label}"
    key = entry.secret_keys.get(cache_key)
    if key is None:
        # Consume the search fully: an open search keeps the session busy.
        found = list(entry.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                                Attribute.KEY_TYPE: key_type,
                                                Attribute.LABEL: key_label}))
        if not found:
            raise KeyNotFound("No secret key has this label.", key_label=key_label)
        key = entry.secret_keys[cache_key] = found[0]
    return key


def ensure_secret_key(lib: TokenLibrary, label: str, pin: str, key_label: str) -> None:
    """Make sure a 256-bit HMAC key (token, private, sensitive, not extractable, sign only)
    labelled ``key_label`` exists on the token."""
    lib._login(label, pin)
    with lib._pool.locked() as state:
        entry = lib._pool.entry(state, label)
        try:
            try:
                secret_key(entry, key_label)
                return
            except KeyNotFound:
                pass
            entry.secret_keys[f"{KeyType.GENERIC_SECRET.name}:{key_label}"] = \
                entry.session.generate_key(
                    KeyType.GENERIC_SECRET, 256, label=key_label, store=True,
                    capabilities=MechanismFlag.SIGN,
                    template={
                        Attribute.TOKEN: True, Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                        Attribute.SIGN: True, Attribute.VERIFY: False,
                        Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                        Attribute.WRAP: False, Attribute.UNWRAP: False,
                        Attribute.DERIVE: False,
                    })
        except p11.PKCS11Error as exc:
            raise module_error(exc, "generating a secret key") from exc


_TRIES = 12  # as the signing path: about 0.8 s in all


def _message_key(lib: TokenLibrary, label: str, pin: str, key_label: str,
                 salt: bytes) -> bytes:
    """The one-message key: HMAC on the token. The service token is logged in once (PIN
    checked) and then used as it is, like a signing key: through the token server the
    login is shared by every process, and checking the PIN again on each message (a
    logout, then a login) voided the other processes' sealing under way. When another
    process logs the token in again (its own first use), the key's handle goes stale: it is
    looked up again, without a login of ours (which would do the same to them); the PIN is
    checked again only when the login itself stays lost."""
    lib._raise_if_locked_recently(label)
    failure: Exception | None = None
    for attempt in range(_TRIES):
        if attempt:
            time.sleep(min(0.002 * 2 ** attempt, 0.1))
        if not lib.logged_in(label) or attempt >= _TRIES // 2:
            lib._login(label, pin)
        with lib._pool.locked() as state:
            entry = lib._pool.entry(state, label)
            try:
                key = secret_key(entry, key_label)
                return bytes(key.sign(KDF_CONTEXT + salt, mechanism=Mechanism.SHA256_HMAC))
            except (p11.UserNotLoggedIn, p11.ObjectHandleInvalid, p11.KeyHandleInvalid,
                    p11.GeneralError, KeyNotFound) as exc:
                # Another client of the module logged the token out and in again: the
                # handle is stale (look the key up again), or the login is briefly lost (a
                # secret key is invisible while logged out: wait for it).
                entry.secret_keys.clear()
                failure = exc
            except p11.PKCS11Error as exc:
                raise module_error(exc, "deriving a message key") from exc
    if isinstance(failure, KeyNotFound):
        raise failure
    if isinstance(failure, p11.PKCS11Error):
        raise module_error(failure, "deriving a message key") from failure
    raise module_error(p11.GeneralError(), "deriving a message key")


def encrypt(lib: TokenLibrary, label: str, pin: str, key_label: str, plaintext: bytes,
            aad: bytes = b"") -> bytes:
    """Seal ``plaintext`` (blob v2, see the module's docstring)."""
    salt = os.urandom(SALT_BYTES)
    nonce = os.urandom(GCM_NONCE_BYTES)
    message_key = _message_key(lib, label, pin, key_label, salt)
    return BLOB_VERSION + salt + nonce + AESGCM(message_key).encrypt(nonce, plaintext, aad)


def decrypt(lib: TokenLibrary, label: str, pin: str, key_label: str, blob: bytes,
            aad: bytes = b"") -> bytes:
    """Reverse :meth:`encrypt`; raise :class:`DecryptionFailed` if the blob, the AAD or
    the key do not match."""
    if blob[:1] == LEGACY_BLOB_VERSION:
        return _decrypt_legacy(lib, label, pin, key_label, blob, aad)
    header = 1 + SALT_BYTES + GCM_NONCE_BYTES
    if len(blob) < header + GCM_TAG_BYTES or blob[:1] != BLOB_VERSION:
        raise DecryptionFailed("Not a sealed blob of a known version.")
    salt, nonce = blob[1:1 + SALT_BYTES], blob[1 + SALT_BYTES:header]
    message_key = _message_key(lib, label, pin, key_label, salt)
    try:
        return AESGCM(message_key).decrypt(nonce, blob[header:], aad)
    except InvalidTag as exc:
        raise DecryptionFailed("The sealed blob did not authenticate.") from exc


def _decrypt_legacy(lib: TokenLibrary, label: str, pin: str, key_label: str, blob: bytes,
                    aad: bytes) -> bytes:
    if len(blob) < 1 + GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise DecryptionFailed("Not a sealed blob of a known version.")
    nonce, sealed = blob[1:1 + GCM_NONCE_BYTES], blob[1 + GCM_NONCE_BYTES:]
    lib._login(label, pin)
    with lib._pool.locked() as state:
        entry = lib._pool.entry(state, label)
        key = secret_key(entry, key_label, KeyType.AES)
        try:
            return bytes(key.decrypt(sealed, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=pkcs11.GCMParams(
                                         nonce, aad or None, GCM_TAG_BYTES * 8)))
        except (p11.EncryptedDataInvalid, p11.EncryptedDataLenRange,
                p11.FunctionFailed, p11.SignatureInvalid, p11.DataInvalid,
                p11.GeneralError) as exc:
            # SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR.
            raise DecryptionFailed("The sealed blob did not authenticate.") from exc
        except p11.MechanismInvalid as exc:
            raise DecryptionFailed(
                "This blob was sealed with AES-GCM on the token, which this module's "
                "transport cannot carry; open it with the module loaded directly.") from exc
        except p11.PKCS11Error as exc:
            raise module_error(exc, "decrypting") from exc


__all__ = ["BLOB_VERSION", "decrypt", "encrypt", "ensure_secret_key", "secret_key"]
