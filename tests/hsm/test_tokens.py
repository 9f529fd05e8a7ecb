"""Token lifecycle, objects and certificates, against SoftHSM2."""

from __future__ import annotations

import datetime
import os
import secrets

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hsm import (
    InvalidRequest,
    KeyAlreadyExists,
    KeyNotFound,
    ModuleUnavailable,
    PinPolicyViolation,
    TokenAlreadyExists,
    TokenLibrary,
    TokenNotFound,
)
from hsm.pool import SessionPool
from tests.hsm_fixtures import HsmToken

pytestmark = pytest.mark.hsm


def _self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str
                 ) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime(2026, 3, 16, tzinfo=datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))


def test_init_token_and_find_it(softhsm_library: TokenLibrary) -> None:
    assert not softhsm_library.token_exists("holder-1")
    softhsm_library.init_token("holder-1", "so-" + secrets.token_hex(4), "482915")
    assert softhsm_library.token_exists("holder-1")
    softhsm_library.check_pin("holder-1", "482915")
    assert not softhsm_library.is_locked("holder-1")


def test_many_tokens_resolve_by_label(softhsm_library: TokenLibrary) -> None:
    labels = [f"h{i:03d}" for i in range(12)]
    for label in labels:
        softhsm_library.init_token(label, "so-pin-x", "482915")
    for label in reversed(labels):
        softhsm_library.check_pin(label, "482915")
    assert all(softhsm_library.token_exists(label) for label in labels)


def test_label_cache_is_not_rescanned_on_a_hit(softhsm_library: TokenLibrary,
                                               hsm_token: HsmToken,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    softhsm_library.check_pin(hsm_token.label, hsm_token.user_pin)
    softhsm_library.release(hsm_token.label)
    scans: list[int] = []
    original = SessionPool.rescan  # the library's pool (hsm/pool.py) keeps the label cache
    monkeypatch.setattr(SessionPool, "rescan",
                        lambda self, state: (scans.append(1), original(self, state))[1])
    for _ in range(5):
        softhsm_library.check_pin(hsm_token.label, hsm_token.user_pin)
        softhsm_library.release(hsm_token.label)
    assert scans == []
    assert not softhsm_library.token_exists("no-such-token")
    assert scans == [1]  # a miss refreshes the map once


def test_init_token_refuses_an_existing_label(hsm_token: HsmToken) -> None:
    with pytest.raises(TokenAlreadyExists) as caught:
        hsm_token.library.init_token(hsm_token.label, "another-so", "739104")
    assert caught.value.status == 409


def test_init_token_enforces_the_pin_policy(softhsm_library: TokenLibrary) -> None:
    with pytest.raises(PinPolicyViolation):
        softhsm_library.init_token("weak", "so-pin-x", "123456")
    assert not softhsm_library.token_exists("weak")


@pytest.mark.parametrize("label", ["", " padded", "x" * 33, "é" * 17])
def test_labels_are_validated(softhsm_library: TokenLibrary, label: str) -> None:
    with pytest.raises(InvalidRequest):
        softhsm_library.init_token(label, "so-pin-x", "482915")


def test_unknown_token(softhsm_library: TokenLibrary) -> None:
    with pytest.raises(TokenNotFound) as caught:
        softhsm_library.check_pin("nobody", "482915")
    assert caught.value.status == 404 and caught.value.type == "token-not-found"
    with pytest.raises(TokenNotFound):
        softhsm_library.public_key("nobody", key_id=b"\x01")


def test_missing_module_file(tmp_path: os.PathLike[str]) -> None:
    library = TokenLibrary(os.path.join(tmp_path, "no-such-module.so"))
    with pytest.raises(ModuleUnavailable) as caught:
        library.token_exists("any")
    assert caught.value.status == 503
    assert caught.value.to_dict()["type"] == "hsm-module-unavailable"


@pytest.mark.parametrize("key_type", ["EC-P256", "EC-P384", "RSA-2048", "RSA-3072"])
def test_generate_key_pair_returns_the_public_key(hsm_token: HsmToken, key_type: str) -> None:
    library, label, _, pin = hsm_token
    public = library.generate_key_pair(label, pin, key_type=key_type, key_label="signing",
                                       key_id=b"\x10\x01")
    assert public == library.public_key(label, key_id=b"\x10\x01")
    key = library.private_key(label, pin, key_id=b"\x10\x01")
    assert key.public_key() == public
    assert key.key_label == "signing" and key.key_id == b"\x10\x01"
    assert key.token_label == label
    expected_size = {"EC-P256": 256, "EC-P384": 384, "RSA-2048": 2048, "RSA-3072": 3072}
    assert key.key_size == expected_size[key_type]


def test_unknown_key_type(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    with pytest.raises(InvalidRequest):
        library.generate_key_pair(label, pin, key_type="DSA-1024", key_label="k",
                                  key_id=b"\x01")


def test_key_ids_are_unique(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="a", key_id=b"\x01")
    with pytest.raises(KeyAlreadyExists):
        library.generate_key_pair(label, pin, key_type="EC-P256", key_label="b",
                                  key_id=b"\x01")


def test_missing_key(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    with pytest.raises(KeyNotFound):
        library.private_key(label, pin, key_id=b"\x99")
    with pytest.raises(KeyNotFound):
        library.public_key(label, key_id=b"\x99")
    with pytest.raises(InvalidRequest):
        library.private_key(label, pin)


def test_find_key_by_label(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="ocsp",
                              key_id=b"\x07")
    assert library.private_key(label, pin, key_label="ocsp").key_id == b"\x07"


def test_store_and_read_certificate(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\xaa")
    key = library.private_key(label, pin, key_id=b"\xaa")
    assert library.read_certificate(label, key_id=b"\xaa") is None
    first = _self_signed(key, "first").public_bytes(serialization.Encoding.DER)
    library.store_certificate(label, pin, key_id=b"\xaa", cert_der=first, cert_label="k")
    assert library.read_certificate(label, key_id=b"\xaa") == first
    second = _self_signed(key, "second").public_bytes(serialization.Encoding.DER)
    library.store_certificate(label, pin, key_id=b"\xaa", cert_der=second, cert_label="k")
    assert library.read_certificate(label, key_id=b"\xaa") == second
    with pytest.raises(InvalidRequest):
        library.store_certificate(label, pin, key_id=b"\xaa", cert_der=b"junk",
                                  cert_label="k")


def test_certificate_written_without_the_pin(hsm_token: HsmToken) -> None:
    """A renewed certificate goes onto a holder's token in a public session: the service
    does not know the holder's PIN."""
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\xac")
    key = library.private_key(label, pin, key_id=b"\xac")
    first = _self_signed(key, "first").public_bytes(serialization.Encoding.DER)
    library.store_certificate(label, pin, key_id=b"\xac", cert_der=first, cert_label="k")
    renewed = _self_signed(key, "renewed").public_bytes(serialization.Encoding.DER)
    library.close()  # a fresh process: nothing logged in
    library.store_certificate(label, None, key_id=b"\xac", cert_der=renewed, cert_label="k")
    assert library.read_certificate(label, key_id=b"\xac") == renewed
    assert not library.logged_in(label)


def test_certificate_is_a_public_object_with_its_attributes(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\xab")
    cert = _self_signed(library.private_key(label, pin, key_id=b"\xab"), "attrs")
    library.store_certificate(label, pin, key_id=b"\xab",
                              cert_der=cert.public_bytes(serialization.Encoding.DER),
                              cert_label="cert")
    library.close()
    token = pkcs11.lib(library.module_path).get_token(token_label=label)
    with token.open() as session:  # no login: public objects only
        (obj,) = list(session.get_objects({pkcs11.Attribute.CLASS:
                                           pkcs11.ObjectClass.CERTIFICATE}))
        assert obj[pkcs11.Attribute.ID] == b"\xab"
        assert obj[pkcs11.Attribute.LABEL] == "cert"
        assert obj[pkcs11.Attribute.SUBJECT] == cert.subject.public_bytes()
        assert obj[pkcs11.Attribute.PRIVATE] is False


def test_destroy_objects(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="a", key_id=b"\x01")
    library.generate_key_pair(label, pin, key_type="RSA-2048", key_label="b", key_id=b"\x02")
    library.ensure_secret_key(label, pin, "seal")
    assert library.destroy_objects(label, pin) == 5
    with pytest.raises(KeyNotFound):
        library.private_key(label, pin, key_id=b"\x01")
    assert library.destroy_objects(label, pin) == 0


def test_close_then_use_again(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.close()
    library.close()
    library.check_pin(label, pin)
