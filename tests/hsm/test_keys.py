"""Token keys: never readable, sign like cryptography keys, work in cryptography's builders."""

from __future__ import annotations

import copy
import datetime
import os
import pickle
import re
import subprocess

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from hsm import (
    OperationRefused,
    TokenECPrivateKey,
    TokenLibrary,
    TokenPrivateKey,
    TokenRSAPrivateKey,
)
from tests.hsm_fixtures import HsmToken

pytestmark = pytest.mark.hsm

NOW = datetime.datetime(2026, 3, 16, 9, 30, tzinfo=datetime.UTC)
DATA = b"Tawqi: permit 2026/0042, commune de Tiznit"


def _key(token: HsmToken, key_type: str, key_id: bytes = b"\x01") -> TokenPrivateKey:
    library, label, _, pin = token
    library.generate_key_pair(label, pin, key_type=key_type, key_label="signing",
                              key_id=key_id)
    return library.private_key(label, pin, key_id=key_id)


@pytest.fixture
def ec_key(hsm_token: HsmToken) -> TokenECPrivateKey:
    key = _key(hsm_token, "EC-P256")
    assert isinstance(key, TokenECPrivateKey)
    return key


@pytest.fixture
def rsa_key(hsm_token: HsmToken) -> TokenRSAPrivateKey:
    key = _key(hsm_token, "RSA-3072", b"\x02")
    assert isinstance(key, TokenRSAPrivateKey)
    return key


def test_key_classes_subclass_cryptography(ec_key: TokenECPrivateKey,
                                           rsa_key: TokenRSAPrivateKey) -> None:
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert isinstance(ec_key, TokenPrivateKey) and isinstance(rsa_key, TokenPrivateKey)
    assert isinstance(ec_key.curve, ec.SECP256R1) and ec_key.key_size == 256
    assert rsa_key.key_size == 3072


def test_private_key_value_cannot_be_read(hsm_token: HsmToken) -> None:
    """Reading CKA_VALUE (EC) or the private exponent (RSA) is refused by the token."""
    _key(hsm_token, "EC-P256", b"\x01")
    _key(hsm_token, "RSA-3072", b"\x02")
    library, label, _, pin = hsm_token
    library.close()
    token = pkcs11.lib(library.module_path).get_token(token_label=label)
    with token.open(user_pin=pin) as session:
        keys = list(session.get_objects({pkcs11.Attribute.CLASS:
                                         pkcs11.ObjectClass.PRIVATE_KEY}))
        assert len(keys) == 2
        for key in keys:
            assert key[pkcs11.Attribute.SENSITIVE] is True
            assert key[pkcs11.Attribute.EXTRACTABLE] is False
            assert key[pkcs11.Attribute.ALWAYS_SENSITIVE] is True
            assert key[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
            assert key[pkcs11.Attribute.PRIVATE] is True
            assert key[pkcs11.Attribute.TOKEN] is True
            assert key[pkcs11.Attribute.SIGN] is True
            assert key[pkcs11.Attribute.DECRYPT] is False
            secret = (pkcs11.Attribute.VALUE if key.key_type == pkcs11.KeyType.EC
                      else pkcs11.Attribute.PRIVATE_EXPONENT)
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                key[secret]
            with pytest.raises(pkcs11.PKCS11Error):
                key[pkcs11.Attribute.EXTRACTABLE] = True


def test_pkcs11_tool_lists_the_expected_attributes(hsm_token: HsmToken) -> None:
    _key(hsm_token, "EC-P256", b"\xca\xfe")
    _key(hsm_token, "RSA-3072", b"\xbe\xef")
    library, label, _, pin = hsm_token
    library.close()
    listing = subprocess.run(
        ["pkcs11-tool", "--module", library.module_path, "--token-label", label,
         "--list-objects", "--login", "--pin", pin],
        capture_output=True, text=True, check=True, env=os.environ).stdout
    blocks = re.split(r"\n(?=\S)", listing.strip())
    private = [b for b in blocks if b.startswith("Private Key Object")]
    public = [b for b in blocks if b.startswith("Public Key Object")]
    assert len(private) == 2 and len(public) == 2
    for kind, key_id in (("EC", "cafe"), ("RSA", "beef")):
        (priv,) = [b for b in private if f"ID:         {key_id}" in b]
        (pub,) = [b for b in public if f"ID:         {key_id}" in b]
        assert kind in priv.splitlines()[0]
        assert re.search(r"Usage:\s+sign\n", priv + "\n")
        assert "sensitive, always sensitive, never extractable" in priv
        assert re.search(r"Usage:\s+verify", pub)


@pytest.mark.parametrize("hash_algorithm", [hashes.SHA256(), hashes.SHA384()])
def test_ecdsa_signatures_verify(ec_key: TokenECPrivateKey,
                                 hash_algorithm: hashes.HashAlgorithm) -> None:
    signature = ec_key.sign(DATA, ec.ECDSA(hash_algorithm))
    utils.decode_dss_signature(signature)  # DER, not r||s
    ec_key.public_key().verify(signature, DATA, ec.ECDSA(hash_algorithm))


def test_ecdsa_prehashed(ec_key: TokenECPrivateKey) -> None:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(DATA)
    signature = ec_key.sign(digest.finalize(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    ec_key.public_key().verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ValueError):
        ec_key.sign(b"short", ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def _digests(algorithm: hashes.HashAlgorithm, count: int) -> list[bytes]:
    found = []
    for index in range(count):
        digest = hashes.Hash(algorithm)
        digest.update(DATA + str(index).encode())
        found.append(digest.finalize())
    return found


def test_ecdsa_batch_matches_one_by_one(ec_key: TokenECPrivateKey) -> None:
    """A batch longer than one slice of the module lock: every signature in order, each
    what ``sign`` gives for its digest (DER, verifying under the public key)."""
    digests = _digests(hashes.SHA256(), 150)
    signatures = ec_key.sign_digests(digests, hashes.SHA256())
    assert len(signatures) == len(digests)
    prehashed = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    for digest, signature in zip(digests, signatures, strict=True):
        utils.decode_dss_signature(signature)
        ec_key.public_key().verify(signature, digest, prehashed)
    with pytest.raises(ValueError):
        ec_key.sign_digests([digests[0], b"short"], hashes.SHA256())


def test_rsa_batch_matches_one_by_one(rsa_key: TokenRSAPrivateKey) -> None:
    digests = _digests(hashes.SHA384(), 3)
    signatures = rsa_key.sign_digests(digests, hashes.SHA384())
    for digest, signature in zip(digests, signatures, strict=True):
        assert signature == rsa_key.sign(digest, padding.PKCS1v15(),
                                         utils.Prehashed(hashes.SHA384()))


def test_batch_after_a_wrong_pin_needs_the_pin_again(hsm_token: HsmToken) -> None:
    """A wrong PIN logs the token out: a batch with a key handed out before is refused,
    as one signature is."""
    from hsm import LoginRequired, PinIncorrect

    library, label, _, pin = hsm_token
    key = _key(hsm_token, "EC-P256", b"\x05")
    with pytest.raises(PinIncorrect):
        library.private_key(label, pin + "9", key_id=b"\x05")
    with pytest.raises(LoginRequired):
        key.sign_digests(_digests(hashes.SHA256(), 2), hashes.SHA256())  # type: ignore[union-attr]


def test_a_new_key_under_a_known_id_is_read_again(hsm_token: HsmToken) -> None:
    """The key's public half is kept per token and key ID after a first look-up; when the
    token's objects change (destroyed, a new key pair under the same ID), the new key's
    public half is what the next key object carries."""
    library, label, _, pin = hsm_token
    first = _key(hsm_token, "EC-P256", b"\x06")
    again = library.private_key(label, pin, key_id=b"\x06")
    assert again.public_key().public_numbers() == first.public_key().public_numbers()
    library.destroy_objects(label, pin)
    second = _key(hsm_token, "EC-P256", b"\x06")
    assert second.public_key().public_numbers() != first.public_key().public_numbers()
    signature = library.private_key(label, pin, key_id=b"\x06").sign(
        DATA, ec.ECDSA(hashes.SHA256()))
    second.public_key().verify(signature, DATA, ec.ECDSA(hashes.SHA256()))


def test_ecdsa_p384(hsm_token: HsmToken) -> None:
    key = _key(hsm_token, "EC-P384", b"\x03")
    signature = key.sign(DATA, ec.ECDSA(hashes.SHA384()))
    key.public_key().verify(signature, DATA, ec.ECDSA(hashes.SHA384()))


PADDINGS = {
    "pkcs1v15": lambda h: padding.PKCS1v15(),
    "pss-digest": lambda h: padding.PSS(padding.MGF1(h), padding.PSS.DIGEST_LENGTH),
    "pss-max": lambda h: padding.PSS(padding.MGF1(h), padding.PSS.MAX_LENGTH),
    "pss-20": lambda h: padding.PSS(padding.MGF1(h), 20),
}


@pytest.mark.parametrize("pad", sorted(PADDINGS))
@pytest.mark.parametrize("hash_algorithm", [hashes.SHA256(), hashes.SHA384()])
def test_rsa_signatures_verify(rsa_key: TokenRSAPrivateKey, pad: str,
                               hash_algorithm: hashes.HashAlgorithm) -> None:
    scheme = PADDINGS[pad](hash_algorithm)
    signature = rsa_key.sign(DATA, scheme, hash_algorithm)
    assert len(signature) == 384
    rsa_key.public_key().verify(signature, DATA, scheme, hash_algorithm)


def test_rsa_prehashed_and_no_digest_info(rsa_key: TokenRSAPrivateKey) -> None:
    digest = hashes.Hash(hashes.SHA384())
    digest.update(DATA)
    value = digest.finalize()
    signature = rsa_key.sign(value, padding.PKCS1v15(), utils.Prehashed(hashes.SHA384()))
    rsa_key.public_key().verify(signature, DATA, padding.PKCS1v15(), hashes.SHA384())
    raw = rsa_key.sign(b"raw bytes", padding.PKCS1v15(), utils.NoDigestInfo())
    assert rsa_key.public_key().recover_data_from_signature(
        raw, padding.PKCS1v15(), None) == b"raw bytes"


def test_unsupported_algorithms_are_refused(ec_key: TokenECPrivateKey,
                                            rsa_key: TokenRSAPrivateKey) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        ec_key.sign(DATA, ec.ECDSA(hashes.MD5()))
    with pytest.raises(UnsupportedAlgorithm):
        rsa_key.sign(DATA, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
                     hashes.SHA256())
    with pytest.raises(ValueError):
        rsa_key.sign(DATA, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                     hashes.SHA256())


def test_private_material_is_refused(ec_key: TokenECPrivateKey,
                                     rsa_key: TokenRSAPrivateKey) -> None:
    for key in (ec_key, rsa_key):
        with pytest.raises(OperationRefused):
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        with pytest.raises(OperationRefused):
            key.private_numbers()
        with pytest.raises(TypeError):
            pickle.dumps(key)
        assert copy.copy(key) is key and copy.deepcopy(key) is key
        assert "pin" not in repr(key).lower()
    with pytest.raises(OperationRefused):
        ec_key.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(OperationRefused):
        rsa_key.decrypt(b"x" * 384, padding.PKCS1v15())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "MA")])


@pytest.mark.parametrize("key_fixture", ["ec_key", "rsa_key"])
def test_cryptography_builders_sign_with_token_keys(request: pytest.FixtureRequest,
                                                    key_fixture: str) -> None:
    """CertificateBuilder, CertificateRevocationListBuilder, OCSPResponseBuilder and the CSR
    builder of cryptography 50 accept our subclasses and call their sign()."""
    key: TokenPrivateKey = request.getfixturevalue(key_fixture)
    holder = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("Tawqi Test CA"))
               .issuer_name(_name("Tawqi Test CA")).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(key, hashes.SHA256()))
    ca_cert.verify_directly_issued_by(ca_cert)

    cert = (x509.CertificateBuilder().subject_name(_name("Holder")).issuer_name(ca_cert.subject)
            .public_key(holder.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=30))
            .sign(key, hashes.SHA384()))
    cert.verify_directly_issued_by(ca_cert)

    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
           .last_update(NOW).next_update(NOW + datetime.timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                    .serial_number(cert.serial_number)
                                    .revocation_date(NOW).build())
           .sign(key, hashes.SHA256()))
    assert crl.is_signature_valid(key.public_key())

    response = (ocsp.OCSPResponseBuilder()
                .add_response(cert=cert, issuer=ca_cert, algorithm=hashes.SHA256(),
                              cert_status=ocsp.OCSPCertStatus.GOOD, this_update=NOW,
                              next_update=NOW + datetime.timedelta(hours=4),
                              revocation_time=None, revocation_reason=None)
                .responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
                .sign(key, hashes.SHA256()))
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(response.signature, response.tbs_response_bytes,
                      ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                      hashes.SHA256())

    csr = x509.CertificateSigningRequestBuilder().subject_name(_name("CSR")).sign(
        key, hashes.SHA256())
    assert csr.is_signature_valid


def test_certificate_builder_with_rsa_pss(rsa_key: TokenRSAPrivateKey) -> None:
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    cert = (x509.CertificateBuilder().subject_name(_name("PSS CA")).issuer_name(_name("PSS CA"))
            .public_key(rsa_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=1))
            .sign(rsa_key, hashes.SHA256(), rsa_padding=pss))
    cert.verify_directly_issued_by(cert)



def test_a_key_handed_out_before_its_pin_check_signs_after_it(hsm_token: HsmToken) -> None:
    """private_key_soon: the key comes back at once; its signatures verify."""
    library, label, _, pin = hsm_token
    _key(hsm_token, "EC-P256", b"\x07")  # the public half is now known to the library
    key = library.private_key_soon(label, pin, key_id=b"\x07")
    assert isinstance(key, TokenECPrivateKey)
    signature = key.sign(DATA, ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, DATA, ec.ECDSA(hashes.SHA256()))
    key.wait_for_pin_check()  # done already: returns at once


def test_a_key_handed_out_before_a_wrong_pin_signs_nothing(hsm_token: HsmToken) -> None:
    """The wrong PIN's error comes with the first signature (and from
    wait_for_pin_check), it is counted like any wrong PIN, and the token is logged out:
    nothing is signed with the login a previous right PIN left."""
    from hsm import PinIncorrect

    library, label, _, pin = hsm_token
    _key(hsm_token, "EC-P256", b"\x08")
    key = library.private_key_soon(label, pin + "1", key_id=b"\x08")
    with pytest.raises(PinIncorrect) as raised:
        key.sign(DATA, ec.ECDSA(hashes.SHA256()))
    assert raised.value.extras["attempts_left"] == library.max_attempts - 1
    with pytest.raises(PinIncorrect):
        key.wait_for_pin_check()
    with pytest.raises(PinIncorrect):
        library.private_key_soon(label, pin + "1", key_id=b"\x08").sign_digests(
            _digests(hashes.SHA256(), 3), hashes.SHA256())  # type: ignore[union-attr]
    library.private_key(label, pin, key_id=b"\x08")  # the right PIN clears the count


def test_an_unseen_key_is_fetched_with_its_pin_check(hsm_token: HsmToken) -> None:
    """A key this library never looked up (its public half unknown): private_key_soon
    checks the PIN first, as private_key does."""
    from hsm import PinIncorrect

    library, label, _, pin = hsm_token
    _key(hsm_token, "EC-P256", b"\x09")
    fresh = TokenLibrary(library.module_path)
    try:
        with pytest.raises(PinIncorrect):
            fresh.private_key_soon(label, pin + "2", key_id=b"\x09")
        key = fresh.private_key_soon(label, pin, key_id=b"\x09")
        key.sign(DATA, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    finally:
        fresh.close()
