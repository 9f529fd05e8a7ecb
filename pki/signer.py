"""The one signing abstraction: a key that signs (on a token) plus its certificate chain.

The CA, the OCSP responder, the time-stamping authority and PDF signing all take a
:class:`Signer`. Its key is a cryptography private-key object; in production it is the token
layer's ``TokenPrivateKey`` (it signs on the token and refuses to export anything), in unit
tests it may be an ordinary software key: pki code cannot tell them apart and never asks for
private bytes.

This module is also the only place that converts between cryptography and asn1crypto
objects (always through DER) and the only adapter to pyHanko (:func:`pyhanko_signer`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from core.memo import Memo
from pki.der import install as _guard_der_lengths
from pki.errors import InvalidKeyType

if TYPE_CHECKING:
    from pyhanko.sign.signers import Signer as PyHankoSigner

# Every signature and time-stamp goes through this module: asn1crypto is guarded first.
_guard_der_lengths()

KEY_TYPES = ("EC-P256", "EC-P384", "RSA-2048", "RSA-3072")


def check_key_type(key_type: str) -> str:
    if key_type not in KEY_TYPES:
        raise InvalidKeyType(f"key type must be one of {', '.join(KEY_TYPES)}",
                             key_type=key_type, allowed=list(KEY_TYPES))
    return key_type


class TokenAccess(Protocol):
    """The part of ``hsm.TokenLibrary`` the CA uses (so tests and tools can stand in)."""

    def token_exists(self, label: str) -> bool: ...

    def init_token(self, label: str, so_pin: str, user_pin: str) -> Any: ...

    def generate_key_pair(self, label: str, pin: str, *, key_type: str, key_label: str,
                          key_id: bytes) -> Any: ...

    def private_key(self, label: str, pin: str, *, key_id: bytes | None = ...,
                    key_label: str | None = ...) -> Any: ...

    def store_certificate(self, label: str, pin: str | None, *, key_id: bytes, cert_der: bytes,
                          cert_label: str, replace: bool = ...) -> Any: ...

    def read_certificate(self, label: str, *, key_id: bytes) -> bytes | None: ...


SignHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def hash_for(key: Any) -> SignHash:
    """The digest we pair with a key: SHA-384 for P-384, SHA-512 for P-521, else SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        size = key.curve.key_size
        if size > 384:
            return hashes.SHA512()
        if size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def public_key_bits(certificate_or_key: x509.Certificate | Any) -> bytes:
    """The subjectPublicKey BIT STRING's bytes (what RFC 6960's issuerKeyHash hashes)."""
    key = certificate_or_key.public_key() if isinstance(certificate_or_key, x509.Certificate) \
        else certificate_or_key
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    bits: bytes = asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]
    return bits  # the leading unused-bits octet dropped


def public_key_sha1(certificate_or_key: x509.Certificate | Any) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING (an OCSP CertID's issuerKeyHash, RFC 6960)."""
    return hashlib.sha1(public_key_bits(certificate_or_key), usedforsecurity=False).digest()


# --- cryptography <-> asn1crypto, through DER, in this one place --------------------------

def to_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def from_asn1(certificate: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(certificate.dump())


def asn1_name(name: x509.Name) -> asn1_x509.Name:
    return asn1_x509.Name.load(name.public_bytes())


@dataclass(frozen=True)
class Signer:
    """A signing key with its certificate and the chain of CA certificates above it.

    ``chain`` runs from the certificate's issuer up to (and including) the root. The key
    never leaves its token: this object holds a handle, and no method returns private bytes.
    """

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise InvalidKeyType("only EC and RSA keys can sign here")
        mine = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        theirs = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if mine != theirs:
            raise InvalidKeyType("the key does not match the certificate")

    @property
    def hash_algorithm(self) -> SignHash:
        return hash_for(self.key)

    @property
    def digest_name(self) -> str:
        """The asn1crypto / pyHanko name of :attr:`hash_algorithm` (``sha256``…)."""
        return self.hash_algorithm.name

    @property
    def signature_algorithm(self) -> asn1_algos.SignedDigestAlgorithm:
        """The AlgorithmIdentifier of :meth:`sign`'s output, for hand-built structures."""
        family = "ecdsa" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "rsa"
        return asn1_algos.SignedDigestAlgorithm({"algorithm": f"{self.digest_name}_{family}"})

    @property
    def key_hash(self) -> bytes:
        return public_key_sha1(self.certificate)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with :attr:`hash_algorithm`: a DER ECDSA signature, or RSA
        PKCS#1 v1.5. One call, one signature on the token."""
        return self._sign(data, self.hash_algorithm)

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        """Sign a digest computed elsewhere (remote signing of hashes)."""
        if len(digest) != algorithm.digest_size:
            raise InvalidKeyType("the digest length does not match its algorithm",
                                 algorithm=algorithm.name)
        return self._sign(digest, Prehashed(algorithm))

    def sign_digests(self, digests: Sequence[bytes], algorithm: hashes.HashAlgorithm
                     ) -> list[bytes]:
        """:meth:`sign_digest` for a batch: the lengths checked first, then one signature
        per digest on the token with one algorithm object (a 1,000-hash ``signHash``)."""
        if any(len(d) != algorithm.digest_size for d in digests):
            raise InvalidKeyType("the digest length does not match its algorithm",
                                 algorithm=algorithm.name)
        key = self.key
        batch = getattr(key, "sign_digests", None)
        if batch is not None:  # a token key: the token layer's batch path
            signatures: list[bytes] = batch(digests, algorithm)
            return signatures
        if isinstance(key, ec.EllipticCurvePrivateKey):
            ecdsa = ec.ECDSA(Prehashed(algorithm))
            return [key.sign(d, ecdsa) for d in digests]
        pkcs1, prehashed = padding.PKCS1v15(), Prehashed(algorithm)
        return [key.sign(d, pkcs1, prehashed) for d in digests]

    def _sign(self, data: bytes, algorithm: hashes.HashAlgorithm | Prehashed) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(algorithm))
        return self.key.sign(data, padding.PKCS1v15(), algorithm)

    def full_chain(self) -> tuple[x509.Certificate, ...]:
        """This certificate, then its issuers up to the root."""
        return (self.certificate, *self.chain)

    def asn1_chain(self) -> list[asn1_x509.Certificate]:
        return [to_asn1(c) for c in self.full_chain()]


def pyhanko_signer(signer: Signer, *, extra_certs: Sequence[x509.Certificate] = (),
                   embed_roots: bool = True) -> PyHankoSigner:
    """A pyHanko ``Signer`` that signs through ``signer`` (hence on its token).

    The certificate registry holds the chain (and ``extra_certs``) so that pyHanko embeds
    them in the CMS. Signatures are ECDSA or RSA PKCS#1 v1.5 with the digest pyHanko asks
    for.
    """
    from pyhanko.sign.attributes import SigningCertificateV2Provider
    from pyhanko.sign.signers import Signer as _PyHankoSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    registry = SimpleCertificateStore.from_certs(
        [_asn1_shared(c) for c in (*signer.chain, *extra_certs)])
    key = signer.key
    is_ec = isinstance(key, ec.EllipticCurvePrivateKey)

    class _SettledSigningCertificate(SigningCertificateV2Provider):
        async def build_attr_value(self, dry_run: bool = False) -> Any:
            return _settled_signing_certificate(self.signing_cert)

    class _TokenPyHankoSigner(_PyHankoSigner):
        def _signed_attr_providers(self, *args: Any, **kwargs: Any) -> Any:
            # pyHanko's choice of signed attributes, with the signing-certificate-v2 value
            # taken from a per-certificate cache (_settled_signing_certificate).
            for provider in super()._signed_attr_providers(*args, **kwargs):
                if type(provider) is SigningCertificateV2Provider:
                    provider = _SettledSigningCertificate(provider.signing_cert)
                yield provider

        async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                                 dry_run: bool = False) -> bytes:
            algorithm = _hash_by_name(digest_algorithm)
            if dry_run:
                # A placeholder of the largest size the real signature can have.
                size = (key.key_size + 7) // 8
                return bytes(size * 2 + 9 if is_ec else size)
            return signer._sign(data, algorithm)

    return _TokenPyHankoSigner(
        signing_cert=_asn1_shared(signer.certificate), cert_registry=registry,
        embed_roots=embed_roots)


#: asn1crypto's view of the certificates pyHanko signers carry, by DER: read-only for
#: pyHanko (it embeds them), so shared between signatures, and what asn1crypto computes
#: on first use (names, key identifiers, hashes the registry indexes by) is kept with
#: them instead of being computed again at every signature. Bounded.
_ASN1_SHARED: Memo[bytes, asn1_x509.Certificate] = Memo(256)
#: pyHanko's signing-certificate-v2 value per certificate (_settled_signing_certificate).
_SIGNING_CERTIFICATES: Memo[bytes, Any] = Memo(256)


def _asn1_shared(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return shared_asn1_der(certificate.public_bytes(serialization.Encoding.DER))


def shared_asn1(certificate: asn1_x509.Certificate) -> asn1_x509.Certificate:
    """The process's shared asn1crypto object for ``certificate`` (by its DER): for
    validation, which indexes certificates by names, key identifiers and hashes that
    asn1crypto computes once per object, every verification of our files meets the same
    few certificates."""
    return shared_asn1_der(certificate.dump())


def shared_asn1_der(der: bytes) -> asn1_x509.Certificate:
    return _ASN1_SHARED.get_or_make(der, lambda: asn1_x509.Certificate.load(der))


def _settled_signing_certificate(certificate: asn1_x509.Certificate) -> Any:
    """pyHanko's ``SigningCertificateV2`` value for ``certificate``, read back from its DER.

    As pyHanko builds it, the value is a tree of freshly set asn1crypto objects: asn1crypto
    encodes such a tree again, from scratch and twice per level of nesting, each time its
    encoding is asked for, and the signed attributes are encoded half a dozen times per
    signature: about 8,100 of a B-B signature's 8,800 dump calls, half of its time in
    process before this cache. Read back from DER, the same value keeps its encoding. It
    depends only on the certificate, so it is kept per certificate (bounded), shared
    read-only between signatures."""
    from asn1crypto import tsp
    from pyhanko.sign.general import as_signing_certificate_v2

    def settle() -> Any:
        return tsp.SigningCertificateV2.load(as_signing_certificate_v2(certificate).dump())

    return _SIGNING_CERTIFICATES.get_or_make(certificate.dump(), settle)


def _hash_by_name(name: str) -> hashes.HashAlgorithm:
    table: dict[str, type[hashes.HashAlgorithm]] = {
        "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
    }
    try:
        return table[name.lower().replace("-", "")]()
    except KeyError as exc:
        raise InvalidKeyType(f"digest {name!r} is not supported", digest=name) from exc
