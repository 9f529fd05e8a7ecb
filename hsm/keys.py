"""Private-key objects that live on a token and sign there.

:class:`TokenECPrivateKey` and :class:`TokenRSAPrivateKey` subclass cryptography's
``EllipticCurvePrivateKey`` / ``RSAPrivateKey``, so cryptography's own builders
(``CertificateBuilder``, ``CertificateRevocationListBuilder``, ``OCSPResponseBuilder``,
``CertificateSigningRequestBuilder``) sign with them directly: the builders call ``sign()``.

Invariants: these objects never hold or return private key material (``private_bytes``,
``private_numbers``, ``exchange`` and ``decrypt`` raise :class:`OperationRefused`); they are
not picklable; copying returns the same object. The data is hashed in Python, the token
signs the digest (CKM_ECDSA, CKM_RSA_PKCS over a DigestInfo, CKM_RSA_PKCS_PSS), because
modules such as SoftHSM2 lack the combined hash-and-sign mechanisms for ECDSA. The token's
ECDSA output r || s is re-encoded as DER with cryptography's ``encode_dss_signature``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, NoReturn, Protocol

from asn1crypto.algos import DigestInfo
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.hazmat.primitives.asymmetric import padding as _padding
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding
from cryptography.utils import Buffer
from pkcs11 import MGF, Mechanism

from hsm.errors import OperationRefused


class _TokenSigner(Protocol):
    def _token_sign(self, token_label: str, key_id: bytes, mechanism: Mechanism,
                    param: Any, data: bytes) -> bytes: ...

    def _token_sign_many(self, token_label: str, key_id: bytes, mechanism: Mechanism,
                         param: Any, items: list[bytes]) -> list[bytes]: ...


# name -> (PKCS#11 hash mechanism, MGF1 with that hash, DigestInfo prefix)
_HASHES: dict[str, tuple[Mechanism, MGF, bytes]] = {}
# name -> hashlib constructor (the signing hot path: cheaper than hashlib.new(name))
_HASHLIB: dict[str, Callable[[bytes], Any]] = {}
for _name, _mech, _mgf, _size, _ctor in (
    ("sha224", Mechanism.SHA224, MGF.SHA224, 28, hashlib.sha224),
    ("sha256", Mechanism.SHA256, MGF.SHA256, 32, hashlib.sha256),
    ("sha384", Mechanism.SHA384, MGF.SHA384, 48, hashlib.sha384),
    ("sha512", Mechanism.SHA512, MGF.SHA512, 64, hashlib.sha512),
):
    _encoded = DigestInfo({"digest_algorithm": {"algorithm": _name},
                           "digest": b"\0" * _size}).dump()
    _HASHES[_name] = (_mech, _mgf, _encoded[:-_size])
    _HASHLIB[_name] = _ctor


def _hash_entry(algorithm: hashes.HashAlgorithm) -> tuple[Mechanism, MGF, bytes]:
    entry = _HASHES.get(algorithm.name)
    if entry is None:
        raise UnsupportedAlgorithm(f"Token keys do not sign with {algorithm.name}.")
    return entry


def _check_digests(digests: Sequence[bytes], algorithm: hashes.HashAlgorithm) -> None:
    _hash_entry(algorithm)
    if any(len(d) != algorithm.digest_size for d in digests):
        raise ValueError("The provided data must be the same length as the hash algorithm's "
                         "digest size.")


def _digest(data: bytes, algorithm: hashes.HashAlgorithm | utils.Prehashed
            ) -> tuple[bytes, hashes.HashAlgorithm]:
    """Hash ``data`` (or check the size of a pre-hashed digest); return digest and hash."""
    if isinstance(algorithm, utils.Prehashed):
        hash_algorithm: hashes.HashAlgorithm = algorithm._algorithm
        _hash_entry(hash_algorithm)
        if len(data) != algorithm.digest_size:
            raise ValueError("The provided data must be the same length as the hash "
                             "algorithm's digest size.")
        return bytes(data), hash_algorithm
    constructor = _HASHLIB.get(algorithm.name)
    if constructor is None:
        raise UnsupportedAlgorithm(f"Token keys do not sign with {algorithm.name}.")
    return constructor(data).digest(), algorithm


def _der(raw: bytes) -> bytes:
    """A token's ECDSA signature (r || s, PKCS#11) as DER ``Ecdsa-Sig-Value``."""
    half = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                      int.from_bytes(raw[half:], "big"))


class TokenKey:
    """What both token key classes share. Holds a label, an ID and a public key, never a
    secret. Signing goes through the :class:`~hsm.library.TokenLibrary` that made the key
    (its session pool, under the module lock)."""

    token_label: str
    key_id: bytes
    key_label: str

    def __init__(self, signer: _TokenSigner, token_label: str, key_id: bytes,
                 key_label: str) -> None:
        self._signer = signer
        self.token_label = token_label
        self.key_id = key_id
        self.key_label = key_label
        #: The PIN check this key was handed out before (TokenLibrary.private_key_soon):
        #: no signature is made until it has succeeded.
        self._pending: Future[Any] | None = None

    def wait_for_pin_check(self) -> None:
        """Wait for the PIN check this key was handed out before, if any, and raise its
        error (PinIncorrect, PinLocked, ...); at once for a key from ``private_key``."""
        pending = self._pending
        if pending is not None:
            pending.result()
            self._pending = None

    def _token(self) -> _TokenSigner:
        self.wait_for_pin_check()
        return self._signer

    def _refuse(self, what: str) -> NoReturn:
        raise OperationRefused(f"{what} is not available for a key held on a token.",
                               operation=what)

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption
                      ) -> bytes:
        self._refuse("private_bytes")

    def __reduce__(self) -> NoReturn:
        raise TypeError("Token keys cannot be pickled.")

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} token={self.token_label!r} "
                f"id={self.key_id.hex()} label={self.key_label!r}>")


class TokenECPrivateKey(TokenKey, ec.EllipticCurvePrivateKey):
    """An EC private key on a token (ECDSA only)."""

    def __init__(self, signer: _TokenSigner, token_label: str, key_id: bytes,
                 key_label: str, public_key: ec.EllipticCurvePublicKey) -> None:
        super().__init__(signer, token_label, key_id, key_label)
        self._public_key = public_key

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: Buffer,
             signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """ECDSA over ``data`` with the given hash; returns a DER ``Ecdsa-Sig-Value``."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("Token EC keys sign with ECDSA only.")
        if getattr(signature_algorithm, "deterministic_signing", False):
            raise UnsupportedAlgorithm("Deterministic ECDSA is not available on tokens.")
        digest, _ = _digest(bytes(data), signature_algorithm.algorithm)
        return _der(self._token()._token_sign(self.token_label, self.key_id,
                                              Mechanism.ECDSA, None, digest))

    def sign_digests(self, digests: Sequence[bytes], algorithm: hashes.HashAlgorithm
                     ) -> list[bytes]:
        """ECDSA over each of ``digests`` (pre-hashed with ``algorithm``), in order: what
        ``sign(d, ECDSA(Prehashed(algorithm)))`` returns for each, with the token layer's
        per-signature work done once per slice of the batch."""
        _check_digests(digests, algorithm)
        return [_der(raw) for raw in self._token()._token_sign_many(
            self.token_label, self.key_id, Mechanism.ECDSA, None, [bytes(d) for d in digests])]

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey
                 ) -> bytes:
        self._refuse("exchange")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._refuse("private_numbers")

    def __copy__(self) -> TokenECPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenECPrivateKey:
        return self


class TokenRSAPrivateKey(TokenKey, rsa.RSAPrivateKey):
    """An RSA private key on a token (PKCS#1 v1.5 and PSS signatures only)."""

    def __init__(self, signer: _TokenSigner, token_label: str, key_id: bytes,
                 key_label: str, public_key: rsa.RSAPublicKey) -> None:
        super().__init__(signer, token_label, key_id, key_label)
        self._public_key = public_key

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    def sign(self, data: bytes, padding: AsymmetricPadding,
             algorithm: hashes.HashAlgorithm | utils.Prehashed | utils.NoDigestInfo
             ) -> bytes:
        """RSA signature over ``data``: PKCS#1 v1.5 or PSS (MGF1) with SHA-2.

        With ``utils.NoDigestInfo`` (PKCS#1 v1.5 only) ``data`` is signed as given, without
        a DigestInfo around it.
        """
        if isinstance(algorithm, utils.NoDigestInfo):
            if not isinstance(padding, _padding.PKCS1v15):
                raise UnsupportedAlgorithm("NoDigestInfo needs PKCS#1 v1.5 padding.")
            return self._token()._token_sign(self.token_label, self.key_id,
                                            Mechanism.RSA_PKCS, None, bytes(data))
        digest, hash_algorithm = _digest(bytes(data), algorithm)
        hash_mech, _, prefix = _hash_entry(hash_algorithm)
        if isinstance(padding, _padding.PKCS1v15):
            return self._token()._token_sign(self.token_label, self.key_id,
                                            Mechanism.RSA_PKCS, None, prefix + digest)
        if isinstance(padding, _padding.PSS):
            mgf = padding.mgf
            if not isinstance(mgf, _padding.MGF1):
                raise UnsupportedAlgorithm("PSS needs MGF1.")
            _, mgf_id, _ = _hash_entry(mgf._algorithm)
            param = (hash_mech, mgf_id, self._pss_salt_length(padding, hash_algorithm))
            return self._token()._token_sign(self.token_label, self.key_id,
                                            Mechanism.RSA_PKCS_PSS, param, digest)
        raise UnsupportedAlgorithm(f"Token RSA keys do not sign with {padding.name}.")

    def sign_digests(self, digests: Sequence[bytes], algorithm: hashes.HashAlgorithm
                     ) -> list[bytes]:
        """PKCS#1 v1.5 over each of ``digests`` (pre-hashed with ``algorithm``), in order:
        what ``sign(d, PKCS1v15(), Prehashed(algorithm))`` returns for each."""
        _check_digests(digests, algorithm)
        _, _, prefix = _hash_entry(algorithm)
        return self._token()._token_sign_many(self.token_label, self.key_id,
                                             Mechanism.RSA_PKCS, None,
                                             [prefix + bytes(d) for d in digests])

    def _pss_salt_length(self, pss: _padding.PSS, algorithm: hashes.HashAlgorithm) -> int:
        salt = pss._salt_length
        em_len = (self.key_size - 1 + 7) // 8
        if isinstance(salt, int):
            if salt < 0 or salt > em_len - algorithm.digest_size - 2:
                raise ValueError("PSS salt length out of range for this key.")
            return salt
        if isinstance(salt, _padding._MaxLength):
            return em_len - algorithm.digest_size - 2
        if isinstance(salt, _padding._DigestLength):
            return algorithm.digest_size
        raise ValueError("PSS salt length AUTO can only be used when verifying.")

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        self._refuse("decrypt")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        self._refuse("private_numbers")

    def __copy__(self) -> TokenRSAPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenRSAPrivateKey:
        return self


#: A private key held on a token; returned by :meth:`TokenLibrary.private_key`.
TokenPrivateKey = TokenECPrivateKey | TokenRSAPrivateKey
