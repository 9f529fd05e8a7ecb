"""The time-stamping authority (RFC 3161), signing with the TSA key through the one Signer.

:func:`timestamp` turns a DER ``TimeStampReq`` into a DER ``TimeStampResp``: granted with a
CMS SignedData over TSTInfo (signed attributes contentType, signingTime, messageDigest and
ESS signingCertificateV2, sorted as DER's SET OF demands), or rejection with a failure code
for what we refuse (unknown or weak hash, wrong imprint length, another policy, extensions).
When the request asks for certificates, the token carries the TSA certificate and its
issuing chain up to the root, so that an offline validator can build the path.
Time-stamps are not audited one by one: they change no state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509

from core.clock import Clock, as_utc
from pki.authority import random_serial
from pki.signer import Signer, to_asn1

#: Accepted message-imprint algorithms and their digest sizes (SHA-1 refused: ETSI
#: EN 319 422 and common sense).
ACCEPTED_HASHES = {"sha256": 32, "sha384": 48, "sha512": 64}

MAX_REQUEST_BYTES = 4096


@dataclass(frozen=True)
class TimeStampResult:
    der: bytes
    granted: bool
    serial: int | None = None
    gen_time: datetime | None = None
    failure: str | None = None


def _rejection(failure: str, text: str) -> TimeStampResult:
    status = asn1_tsp.PKIStatusInfo({
        "status": "rejection",
        "status_string": [text],
        "fail_info": asn1_tsp.PKIFailureInfo({failure}),
    }).dump()
    # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }; asn1crypto's schema
    # insists on the token, so the token-less SEQUENCE is written by hand.
    der = _sequence(status)
    return TimeStampResult(der, False, failure=failure)


def _sequence(content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        header = bytes([length])
    else:
        octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([0x80 | len(octets)]) + octets
    return b"\x30" + header + content


def timestamp(signer: Signer, clock: Clock, request_der: bytes, *, policy_oid: str,
              accuracy_seconds: int = 1) -> TimeStampResult:
    """Answer one time-stamp request. Never raises for bad input: a rejection is an
    answer. One signature on the TSA token per granted request."""
    if len(request_der) > MAX_REQUEST_BYTES:
        return _rejection("bad_request", "request too large")
    try:
        request = asn1_tsp.TimeStampReq.load(request_der, strict=True)
        version = request["version"].native
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        digest = imprint["hashed_message"].native
        requested_policy = request["req_policy"].native
        nonce = request["nonce"].native
        cert_req = bool(request["cert_req"].native)
        extensions = request["extensions"].native
    except (ValueError, TypeError, KeyError):
        return _rejection("bad_data_format", "not a DER TimeStampReq")
    if version != "v1":
        return _rejection("bad_request", "only version 1 requests")
    if algorithm not in ACCEPTED_HASHES:
        return _rejection("bad_alg", "message imprint hash must be SHA-256, -384 or -512")
    if not isinstance(digest, bytes) or len(digest) != ACCEPTED_HASHES[algorithm]:
        return _rejection("bad_data_format", "message imprint length does not match its hash")
    if requested_policy is not None and requested_policy != policy_oid:
        return _rejection("unaccepted_policy", "this TSA issues under its own policy only")
    if extensions:
        return _rejection("unaccepted_extensions", "no request extension is supported")

    gen_time = as_utc(clock.now()).replace(microsecond=0)
    serial = random_serial()
    tsa_cert = to_asn1(signer.certificate)
    info: dict[str, object] = {
        "version": "v1",
        "policy": policy_oid,
        "message_imprint": imprint,
        "serial_number": serial,
        "gen_time": gen_time,
        "accuracy": {"seconds": accuracy_seconds},
        "tsa": asn1_x509.GeneralName(name="directory_name", value=tsa_cert.subject),
    }
    if nonce is not None:
        info["nonce"] = nonce
    tst_info = asn1_tsp.TSTInfo(info).dump()
    digest_name = signer.digest_name
    content_digest = hashlib.new(digest_name, tst_info).digest()
    cert_hash = hashlib.sha256(tsa_cert.dump()).digest()
    attributes = [
        asn1_cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
        asn1_cms.CMSAttribute({"type": "signing_time",
                               "values": [asn1_cms.Time(name="utc_time",
                                                        value=asn1_core.UTCTime(gen_time))]}),
        asn1_cms.CMSAttribute({"type": "message_digest", "values": [content_digest]}),
        asn1_cms.CMSAttribute({"type": "signing_certificate_v2", "values": [{
            "certs": [{
                "cert_hash": cert_hash,
                "issuer_serial": {
                    "issuer": [asn1_x509.GeneralName(name="directory_name",
                                                     value=tsa_cert.issuer)],
                    "serial_number": tsa_cert.serial_number,
                },
            }],
        }]}),
    ]
    # DER: the members of a SET OF are sorted by their encodings.
    attributes.sort(key=lambda attribute: attribute.dump())
    signed_attrs = asn1_cms.CMSAttributes(attributes)
    signature = signer.sign(signed_attrs.dump())
    digest_algorithm = asn1_algos.DigestAlgorithm({"algorithm": digest_name})
    signer_info = asn1_cms.SignerInfo({
        "version": "v1",
        "sid": asn1_cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": tsa_cert.issuer, "serial_number": tsa_cert.serial_number}),
        "digest_algorithm": digest_algorithm,
        "signed_attrs": signed_attrs,
        "signature_algorithm": signer.signature_algorithm,
        "signature": signature,
    })
    signed_data: dict[str, object] = {
        "version": "v3",
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": {"content_type": "tst_info",
                               "content": asn1_core.ParsableOctetString(tst_info)},
        "signer_infos": [signer_info],
    }
    if cert_req:
        # The TSA certificate and the CAs above it, so that a validator holding only the
        # root as trust anchor builds the TSA's chain offline (PAdES B-T for decades).
        signed_data["certificates"] = [tsa_cert, *(to_asn1(c) for c in signer.chain)]
    token = asn1_cms.ContentInfo({"content_type": "signed_data",
                                  "content": asn1_cms.SignedData(signed_data)})
    der = asn1_tsp.TimeStampResp({"status": {"status": "granted"},
                                  "time_stamp_token": token}).dump()
    return TimeStampResult(der, True, serial=serial, gen_time=gen_time)
