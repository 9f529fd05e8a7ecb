"""Time-stamping the audit chain's head with our own TSA, and checking such time-stamps.

:class:`HeadStamper` asks :func:`pki.tsa.timestamp` (the TSA key on the service token) for
an RFC 3161 token whose messageImprint is the head hash itself (SHA-256, 32 bytes), so
``openssl ts -verify -digest <head hash> -in token -token_in`` checks it outside Tawqi.
:class:`TsaTokenVerifier` checks a token against a fixed list of trusted TSA certificates:
the signer certificate must be one of them (byte for byte), the TSTInfo's imprint must be
the head hash, the messageDigest attribute must match the TSTInfo and the signature over
the signed attributes must verify with that certificate's key. The chain-side logic lives
in :mod:`core.anchors`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from asn1crypto import cms as asn1_cms
from asn1crypto import tsp as asn1_tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.anchors import InvalidTimeStamp
from core.clock import Clock, as_utc
from pki import tsa
from pki.errors import AuthorityUnavailable
from pki.models import PROFILE_TSA, CertificateRecord
from pki.profiles import ARC_TSA, Profile
from pki.signer import Signer

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


def _head_bytes(head_hash: str) -> bytes:
    try:
        digest = bytes.fromhex(head_hash)
    except ValueError as exc:
        raise InvalidTimeStamp("the head hash is not hexadecimal") from exc
    if len(digest) != 32:
        raise InvalidTimeStamp("the head hash is not a SHA-256")
    return digest


class HeadStamper:
    """A :class:`core.anchors.Stamp`: one TSA signature per call, the TSA certificate
    embedded in the token."""

    def __init__(self, signer: Signer | None, clock: Clock, profile: Profile) -> None:
        if signer is None:
            raise AuthorityUnavailable("the TSA key is not loaded: no time-stamp possible")
        self.signer = signer
        self.clock = clock
        self.policy_oid = profile.policy(ARC_TSA)

    def __call__(self, head_hash: str) -> tuple[bytes, datetime]:
        request = asn1_tsp.TimeStampReq({
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                "hashed_message": _head_bytes(head_hash)},
            "nonce": secrets.randbits(63),
            "cert_req": True,
        }).dump()
        result = tsa.timestamp(self.signer, self.clock, request, policy_oid=self.policy_oid)
        if not result.granted or result.gen_time is None:
            raise AuthorityUnavailable("our TSA refused to time-stamp the audit head",
                                       failure=result.failure)
        response = asn1_tsp.TimeStampResp.load(result.der)
        return response["time_stamp_token"].dump(), result.gen_time


def trusted_tsa_certificates(session: Session) -> list[x509.Certificate]:
    """Every TSA certificate in our registry (revoked or expired ones too: they still
    vouch for the time-stamps they made while valid)."""
    rows = session.scalars(select(CertificateRecord.der)
                           .where(CertificateRecord.profile == PROFILE_TSA,
                                  CertificateRecord.der.is_not(None))).all()
    return [x509.load_der_x509_certificate(der) for der in rows if der]


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


class TsaTokenVerifier:
    """A :class:`core.anchors.TokenVerifier` trusting exactly the given TSA certificates."""

    def __init__(self, trusted: Iterable[x509.Certificate]) -> None:
        self.trusted = {c.public_bytes(serialization.Encoding.DER): c for c in trusted}

    def __call__(self, token: bytes, head_hash: str) -> datetime:
        expected = _head_bytes(head_hash)
        try:
            info = asn1_cms.ContentInfo.load(token, strict=True)
            if info["content_type"].native != "signed_data":
                raise InvalidTimeStamp("the token is not a CMS SignedData")
            signed = info["content"]
            encap = signed["encap_content_info"]
            if encap["content_type"].native != "tst_info":
                raise InvalidTimeStamp("the token does not carry a TSTInfo")
            tst_der = encap["content"].parsed.dump()
            tst = asn1_tsp.TSTInfo.load(tst_der)
            imprint = tst["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            gen_time = as_utc(tst["gen_time"].native)
            signer_infos = list(signed["signer_infos"])
            certificates = [c.chosen.dump() for c in signed["certificates"]] \
                if signed["certificates"].native is not None else []
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidTimeStamp(f"the token cannot be parsed: {exc}") from exc
        if algorithm != "sha256" or hashed != expected:
            raise InvalidTimeStamp("the time-stamp is over another hash than the head's")
        if len(signer_infos) != 1:
            raise InvalidTimeStamp("the token must have exactly one signer")
        signer_info = signer_infos[0]
        cert = self._signer_certificate(signer_info, certificates)
        self._check_signature(signer_info, tst_der, cert)
        if not cert.not_valid_before_utc <= gen_time <= cert.not_valid_after_utc:
            raise InvalidTimeStamp("the time-stamp falls outside its TSA certificate's "
                                   "validity")
        return gen_time

    def _signer_certificate(self, signer_info: asn1_cms.SignerInfo,
                            embedded: list[bytes]) -> x509.Certificate:
        sid = signer_info["sid"]
        if sid.name != "issuer_and_serial_number":
            raise InvalidTimeStamp("the signer is not named by issuer and serial")
        issuer = sid.chosen["issuer"].dump()
        serial = sid.chosen["serial_number"].native
        for der, cert in self.trusted.items():
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer:
                if embedded and der not in embedded:
                    raise InvalidTimeStamp("the embedded TSA certificate is not ours")
                return cert
        raise InvalidTimeStamp("the token was not signed by a trusted TSA certificate")

    @staticmethod
    def _check_signature(signer_info: asn1_cms.SignerInfo, tst_der: bytes,
                         cert: x509.Certificate) -> None:
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        algorithm = _HASHES.get(digest_name)
        if algorithm is None:
            raise InvalidTimeStamp(f"unsupported digest {digest_name}")
        attrs = signer_info["signed_attrs"]
        digests = [a["values"][0].native for a in attrs
                   if a["type"].native == "message_digest"]
        if digests != [hashlib.new(digest_name, tst_der).digest()]:
            raise InvalidTimeStamp("the signed messageDigest does not match the TSTInfo")
        # The signature covers the attributes as a DER SET OF: same bytes, universal tag.
        signed_bytes = b"\x31" + attrs.dump()[1:]
        signature = signer_info["signature"].native
        key = cert.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, signed_bytes, ec.ECDSA(algorithm))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed_bytes, padding.PKCS1v15(), algorithm)
            else:
                raise InvalidTimeStamp("unsupported TSA key type")
        except InvalidSignature as exc:
            raise InvalidTimeStamp("the TSA signature does not verify") from exc
