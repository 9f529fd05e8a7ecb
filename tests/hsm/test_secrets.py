"""Sealed secrets: AES-256-GCM under one-message keys derived by a non-extractable token key."""

from __future__ import annotations

import pkcs11
import pytest

from hsm import DecryptionFailed, KeyNotFound
from tests.hsm_fixtures import HsmToken

pytestmark = pytest.mark.hsm


def test_round_trip(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.ensure_secret_key(label, pin, "pin-vault")
    library.ensure_secret_key(label, pin, "pin-vault")  # idempotent
    blob = library.encrypt(label, pin, "pin-vault", b"739104", aad=b"holder:42")
    assert b"739104" not in blob
    assert library.decrypt(label, pin, "pin-vault", blob, aad=b"holder:42") == b"739104"
    again = library.encrypt(label, pin, "pin-vault", b"739104", aad=b"holder:42")
    assert again != blob  # fresh nonce each time
    empty = library.encrypt(label, pin, "pin-vault", b"")
    assert library.decrypt(label, pin, "pin-vault", empty) == b""


def test_wrong_aad_or_tampering_fails(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.ensure_secret_key(label, pin, "vault")
    blob = library.encrypt(label, pin, "vault", b"secret", aad=b"a")
    with pytest.raises(DecryptionFailed):
        library.decrypt(label, pin, "vault", blob, aad=b"b")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionFailed):
        library.decrypt(label, pin, "vault", tampered, aad=b"a")
    with pytest.raises(DecryptionFailed):
        library.decrypt(label, pin, "vault", b"\x03" + blob[1:], aad=b"a")
    with pytest.raises(DecryptionFailed):
        library.decrypt(label, pin, "vault", b"short", aad=b"a")


def test_another_key_cannot_open_the_blob(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.ensure_secret_key(label, pin, "one")
    library.ensure_secret_key(label, pin, "two")
    blob = library.encrypt(label, pin, "one", b"secret")
    with pytest.raises(DecryptionFailed):
        library.decrypt(label, pin, "two", blob)
    with pytest.raises(KeyNotFound):
        library.encrypt(label, pin, "three", b"secret")


def test_secret_key_is_not_extractable(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.ensure_secret_key(label, pin, "vault")
    library.close()
    token = pkcs11.lib(library.module_path).get_token(token_label=label)
    with token.open(user_pin=pin) as session:
        key = session.get_key(pkcs11.ObjectClass.SECRET_KEY, label="vault")
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.PRIVATE] is True
        assert key[pkcs11.Attribute.TOKEN] is True
        assert key[pkcs11.Attribute.VALUE_LEN] == 32
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]


def test_blobs_sealed_on_the_token_before_version_2_still_open(hsm_token: HsmToken) -> None:
    """Version 1 blobs were AES-GCM computed on the token (a module loaded directly)."""
    library, label, _, pin = hsm_token
    library.ensure_secret_key(label, pin, "vault")
    library.close()
    nonce = bytes(range(12))
    token = pkcs11.lib(library.module_path).get_token(token_label=label)
    with token.open(user_pin=pin, rw=True) as session:
        legacy = session.generate_key(pkcs11.KeyType.AES, 256, label="vault", store=True)
        sealed = legacy.encrypt(b"PIN 1234", mechanism=pkcs11.Mechanism.AES_GCM,
                                mechanism_param=pkcs11.GCMParams(nonce, b"req-7", 128))
    blob = b"\x01" + nonce + bytes(sealed)
    assert library.decrypt(label, pin, "vault", blob, aad=b"req-7") == b"PIN 1234"
    with pytest.raises(DecryptionFailed):
        library.decrypt(label, pin, "vault", blob, aad=b"req-8")
    # new blobs still use the HMAC key of the same label
    assert library.decrypt(label, pin, "vault",
                           library.encrypt(label, pin, "vault", b"x")) == b"x"
