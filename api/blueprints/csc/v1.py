"""Cloud Signature Consortium API v1.0.4.0 (``/csc/v1``), for clients that speak it
(pyHanko's ``CSCSigner`` among them).

Thin adapters over the same steps as ``/csc/v2`` (shared with it in :mod:`api.csc_common`,
not imported from the v2 blueprint): the v1 names (``hash``, ``hashAlgo``, ``signAlgo``,
top-level ``PIN`` and ``OTP``) and answers (``authMode``, ``PIN``/``OTP`` descriptions,
``validFrom`` as GeneralizedTime), the same authorisation, rate limits, service calls and
rules. ``signatures/signDoc`` is v2 only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from api import csc_common as csc
from api.routing import ApiBlueprint, Call
from api.schema import rule
from api.wiring.flaskapp import wiring
from core.clock import as_utc
from core.errors import InvalidInput
from pki.signing.models import PURPOSE_HASH
from pki.signing.service import ECDSA_SIGN_OIDS, RSA_SIGN_OIDS, issuer_chain

bp = ApiBlueprint("csc_v1", __name__, url_prefix="/csc/v1", tag="Remote signing (CSC v1)",
                  description="Cloud Signature Consortium API v1.0.4.0: the same credentials, "
                              "authorisations and signatures as /csc/v2, with v1 names.")

SERIAL = csc.SERIAL
#: signAlgo OIDs that name their hash (v1 lets hashAlgo be omitted then).
_IMPLIED = {oid: name for oid, name in {**ECDSA_SIGN_OIDS, **RSA_SIGN_OIDS}.items() if name}


@dataclass(frozen=True)
class V1InfoOut:
    specs: str
    name: str
    logo: str
    region: str
    lang: str
    description: str
    authType: list[str]
    methods: list[str]


@dataclass(frozen=True)
class V1ListIn:
    userID: str | None = field(default=None, metadata=rule(pattern=csc.CIN))
    maxResults: int | None = field(default=None, metadata=rule(minimum=1, maximum=100))
    pageToken: str | None = field(default=None, metadata=rule(max_length=100))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class V1ListOut:
    credentialIDs: list[str]


@dataclass(frozen=True)
class V1InfoIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    certificates: Literal["none", "single", "chain"] = "single"
    certInfo: bool = False
    authInfo: bool = False
    lang: str | None = field(default=None, metadata=rule(max_length=20))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class V1CertOut:
    status: str
    certificates: list[str]
    issuerDN: str | None = None
    serialNumber: str | None = None
    subjectDN: str | None = None
    validFrom: str | None = None
    validTo: str | None = None


@dataclass(frozen=True)
class V1PinOut:
    presence: Literal["true", "false", "optional"]
    format: Literal["A", "N"]
    label: str
    description: str


@dataclass(frozen=True)
class V1OtpOut:
    presence: Literal["true", "false", "optional"]
    type: Literal["offline", "online"]
    format: Literal["A", "N"]
    label: str
    description: str
    ID: str
    provider: str


@dataclass(frozen=True)
class V1CredentialInfoOut:
    description: str
    key: csc.KeyOut
    cert: V1CertOut
    authMode: Literal["explicit", "oauth2code"]
    SCAL: str
    multisign: int
    lang: str
    PIN: V1PinOut | None = None
    OTP: V1OtpOut | None = None


@dataclass(frozen=True)
class V1SendOtpIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class V1AuthorizeIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    numSignatures: int = field(metadata=rule(minimum=1))
    hash: list[str] = field(metadata=rule(
        min_items=1, description="Base64 hashes the SAD will sign (SCAL 2: required)."))
    PIN: str = field(metadata=rule(min_length=4, max_length=32, write_only=True))
    OTP: str = field(metadata=rule(min_length=4, max_length=12, write_only=True))
    description: str | None = field(default=None, metadata=rule(max_length=500))
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class V1AuthorizeOut:
    SAD: str
    expiresIn: int


@dataclass(frozen=True)
class V1SignHashIn:
    credentialID: str = field(metadata=rule(pattern=SERIAL))
    SAD: str = field(metadata=rule(min_length=1, max_length=200, write_only=True))
    hash: list[str] = field(metadata=rule(min_items=1))
    signAlgo: str = field(metadata=rule(max_length=64))
    hashAlgo: str | None = field(default=None, metadata=rule(max_length=64))
    signAlgoParams: str | None = None
    clientData: str | None = field(default=None, metadata=rule(max_length=500))


@dataclass(frozen=True)
class V1SignHashOut:
    signatures: list[str]


def _generalized(value: datetime) -> str:
    return as_utc(value).strftime("%Y%m%d%H%M%SZ")


@bp.operation("POST", "/info", action=None, response=V1InfoOut,
              summary="What this signing service offers (CSC v1 info)")
def info(call: Call) -> V1InfoOut:
    return V1InfoOut(
        specs="1.0.4.0", name="Tawqi",
        logo=f"{call.settings.public_url.rstrip('/')}/logo.png", region="MA", lang="fr-MA",
        description="Signature électronique des autorisations — توقيع إلكتروني",
        authType=["external"],
        methods=["credentials/list", "credentials/info", "credentials/sendOTP",
                 "credentials/authorize", "signatures/signHash"])


@bp.operation("POST", "/credentials/list", action="signing.credentials.read", body=V1ListIn,
              response=V1ListOut, summary="A holder's hosted signing credentials (v1)")
def credentials_list(call: Call, body: V1ListIn) -> V1ListOut:
    found = csc.find_credentials(call, body.userID, only_valid=False)
    if body.maxResults is not None:
        found = found[:body.maxResults]
    return V1ListOut([c.id for c in found])


@bp.operation("POST", "/credentials/info", action="signing.credentials.read", body=V1InfoIn,
              response=V1CredentialInfoOut, summary="One credential (v1): key, certificate, "
                                                  "PIN and OTP")
def credentials_info(call: Call, body: V1InfoIn) -> V1CredentialInfoOut:
    remote = wiring().remote()
    credential = remote.credential(call.session, body.credentialID)
    csc.credential_scope(call, call.session, credential)
    now = as_utc(call.clock.now())
    v2 = csc.credential_info(credential, issuer_chain(call.session, credential), at=now,
                             certificates=body.certificates, cert_info=body.certInfo,
                             auth_info=False, max_batch=remote.policy.max_batch)
    cert = V1CertOut(
        status=v2.cert.status, certificates=v2.cert.certificates,
        issuerDN=v2.cert.issuerDN, serialNumber=v2.cert.serialNumber,
        subjectDN=v2.cert.subjectDN,
        validFrom=_generalized(credential.not_before) if body.certInfo else None,
        validTo=_generalized(credential.not_after) if body.certInfo else None)
    pin = otp = None
    if body.authInfo:
        pin = V1PinOut("true", "N", "PIN", "The PIN of the signing key")
        otp = V1OtpOut("true", "online", "N", "Code", "The code sent by SMS "
                     "(credentials/sendOTP)", "sms", "Tawqi")
    return V1CredentialInfoOut(description=v2.description, key=v2.key, cert=cert,
                             authMode="explicit", SCAL=v2.SCAL, multisign=v2.multisign,
                             lang=v2.lang, PIN=pin, OTP=otp)


@bp.operation("POST", "/credentials/sendOTP", action="signing.authorize", body=V1SendOtpIn,
              rate_limit="otp", transactional=False,
              rate_subject=lambda args: csc.credential_bucket(args["body"].credentialID),
              errors=(404, 409, 503),
              summary="Send the holder a one-time code by SMS (v1: no content)")
def send_otp(call: Call, body: V1SendOtpIn) -> None:
    csc.load_credential(call, body.credentialID)
    wiring().remote().send_otp(body.credentialID, client=call.user.key, actor=call.actor)


@bp.operation("POST", "/credentials/authorize", action="signing.authorize",
              body=V1AuthorizeIn, response=V1AuthorizeOut, rate_limit="pin", transactional=False,
              rate_subject=lambda args: csc.credential_bucket(args["body"].credentialID),
              errors=(403, 404, 409, 423, 503),
              summary="PIN + one-time code: a single-use SAD for these hashes (v1)")
def authorize(call: Call, body: V1AuthorizeIn) -> V1AuthorizeOut:
    """v1 has no hash algorithm here: the hash size tells SHA-256, -384 or -512."""
    oid = csc.guess_hash_oid(body.hash)
    sad, expires_in, _authorization = csc.grant(
        call, credential_id=body.credentialID, pin=body.PIN, otp=body.OTP,
        hashes_=body.hash, hash_oid=oid, purpose=PURPOSE_HASH,
        num_signatures=body.numSignatures, description=body.description)
    return V1AuthorizeOut(sad, expires_in)


@bp.operation("POST", "/signatures/signHash", action="signing.sign", body=V1SignHashIn,
              response=V1SignHashOut, transactional=False, errors=(403, 404, 409, 503),
              summary="Sign a batch of hashes with a SAD (v1)")
def sign_hash(call: Call, body: V1SignHashIn) -> V1SignHashOut:
    if body.signAlgoParams:
        raise InvalidInput("signAlgoParams: only ECDSA and RSA PKCS#1 v1.5 are offered",
                           field="signAlgoParams")
    hash_oid = body.hashAlgo
    if hash_oid is None:
        implied = _IMPLIED.get(body.signAlgo)
        if implied is None:
            raise InvalidInput("hashAlgo is required when signAlgo does not name the hash",
                               field="hashAlgo")
        hash_oid = csc.HASH_OID_BY_NAME[implied]
    return V1SignHashOut(csc.sign_hashes(call, credential_id=body.credentialID, sad=body.SAD,
                                       hashes_=body.hash, hash_oid=hash_oid,
                                       sign_algo=body.signAlgo))


__all__ = ["bp"]
