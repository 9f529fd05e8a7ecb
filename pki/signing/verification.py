"""Verification of signed PDFs: one report per signature, with ETSI indications.

Any PDF is accepted, ours or not. For each signature field pyHanko runs the AdES validation
of ETSI EN 319 102-1 (``ades_lta_validation``: the document time-stamps are the evidence
record, the DSS and the signature's own revocation data are local knowledge, then the
signature is validated at the current time and, when that is not enough, in the past with
the proofs of existence the time-stamps give). Its result becomes the report's indication
(``TOTAL-PASSED``, ``INDETERMINATE``, ``TOTAL-FAILED``) and sub-indication (ETSI TS 119
102-1 names, e.g. ``HASH_FAILURE``, ``NO_CERTIFICATE_CHAIN_FOUND``, ``REVOKED_NO_POE``).

One rule is ours, for PDF: a signature whose cryptography is intact but whose document was
changed afterwards beyond what PDF allows after a signature (more signatures, form filling,
validation data; see pyHanko's difference analysis) is reported ``TOTAL-FAILED`` /
``HASH_FAILURE``: what the reader sees is not what was signed.

Beside the indication, the report states the certificate's status at signing time (the
time-stamp's time, else the claimed time) and now, both computed by path validation with
all the revocation data known: the file's, our CA's current data for our own certificates,
the operator's directory, what the caller uploaded and, when allowed, what was fetched
(:mod:`pki.signing.revinfo`). When the signer's path fails only for want of revocation data,
the sub-indication is ``TRY_LATER`` (EN 319 102-1 5.2.6.4). A signature whose value is not a
readable CMS signature is a ``TOTAL-FAILED`` / ``FORMAT_FAILURE`` entry of the report.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from asn1crypto import cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESStatus, AdESSubIndic
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.validation import EmbeddedPdfSignature
from pyhanko.sign.validation.ades import (
    AdESBasicValidationResult,
    ades_basic_validation,
    ades_lta_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.pdf_embedded import enumerate_sig_fields
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.status import (
    ModificationInfo,
    PdfSignatureStatus,
    SignatureCoverageLevel,
    StandardCMSSignatureStatus,
)
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from core.clock import Clock, as_utc
from core.memo import Memo
from pki.signer import from_asn1, shared_asn1, to_asn1
from pki.signing.pades import RevocationData, RevocationSource, read_pdf
from pki.signing.revinfo import CappedFetcherBackend, FetchPolicy, read_directory

log = logging.getLogger(__name__)
# pyHanko logs every failed check of a validation with its traceback (at WARNING): here a
# failed check is an expected outcome, and the report carries it.
for _name in ("pyhanko.sign.validation.generic_cms", "pyhanko.sign.validation.ades",
              "pyhanko_certvalidator"):
    logging.getLogger(_name).setLevel(logging.ERROR)

Indication = Literal["TOTAL-PASSED", "INDETERMINATE", "TOTAL-FAILED"]
CertStatus = Literal["good", "revoked", "suspended", "expired", "not-yet-valid", "unknown",
                     "untrusted"]

_INDICATION: dict[AdESStatus, Indication] = {
    AdESStatus.PASSED: "TOTAL-PASSED",
    AdESStatus.INDETERMINATE: "INDETERMINATE",
    AdESStatus.FAILED: "TOTAL-FAILED",
}
_TST_ATTRIBUTE = "1.2.840.113549.1.9.16.2.14"  # id-aa-signatureTimeStampToken
_SEMANTICS_ID = re.compile(r"^(IDC|PAS|PNO)([A-Z]{2})[-:](.+)$")


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class SignerIdentity:
    """Who signed, as the signing certificate says (EN 319 412-2 subject)."""

    name: str | None
    given_name: str | None
    surname: str | None
    cin: str | None
    serial_number: str | None
    title: str | None
    organisation: str | None
    country: str | None
    issuer: str
    certificate_serial: str
    not_before: datetime
    not_after: datetime
    sha256: str


@dataclass(frozen=True)
class CertificateStatus:
    """The signing certificate's status at ``at``, with the revocation details if any."""

    at: datetime
    status: CertStatus
    detail: str | None = None
    revoked_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Coverage:
    """What the signature covers: the whole file, or its revision and what came after."""

    scope: Literal["whole-document", "revision", "partial"]
    # none | signatures-and-form-filling | validation-data | annotations | other
    changes_after: str
    changes_allowed: bool
    detail: str


@dataclass(frozen=True)
class SignatureReport:
    field_name: str
    signer: SignerIdentity
    level: str
    claimed_signing_time: datetime | None
    timestamp_time: datetime | None
    timestamp_authority: str | None
    coverage: Coverage
    integrity: bool
    digest_algorithm: str | None
    signature_algorithm: str | None
    certificate_at_signing: CertificateStatus
    certificate_now: CertificateStatus
    indication: Indication
    sub_indication: str | None
    reasons: tuple[str, ...] = ()

    @property
    def indication_uri(self) -> str:
        return f"urn:etsi:019102:mainindication:{self.indication.lower()}"

    @property
    def sub_indication_uri(self) -> str | None:
        if self.sub_indication is None:
            return None
        return f"urn:etsi:019102:subindication:{self.sub_indication}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["indication_uri"] = self.indication_uri
        data["sub_indication_uri"] = self.sub_indication_uri
        data["reasons"] = list(self.reasons)
        return data


@dataclass(frozen=True)
class VerificationReport:
    sha256: str
    size: int
    validated_at: datetime
    signatures: tuple[SignatureReport, ...] = field(default_factory=tuple)

    @property
    def signed(self) -> bool:
        """Whether the file holds any signature (readable or not)."""
        return bool(self.signatures)

    @property
    def indication(self) -> Indication | None:
        """The worst indication of all signatures (None: the document is not signed)."""
        if not self.signatures:
            return None
        order: list[Indication] = ["TOTAL-FAILED", "INDETERMINATE", "TOTAL-PASSED"]
        return min((s.indication for s in self.signatures), key=order.index)

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size,
                "validated_at": self.validated_at, "signed": self.signed,
                "signature_count": len(self.signatures),
                "indication": self.indication,
                "signatures": [s.to_dict() for s in self.signatures]}


# --------------------------------------------------------------------------- helpers


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def signer_identity(cert: asn1_x509.Certificate) -> SignerIdentity:
    parsed = from_asn1(cert)
    subject = parsed.subject
    serial_number = _attr(subject, NameOID.SERIAL_NUMBER)
    cin = None
    if serial_number:
        match = _SEMANTICS_ID.match(serial_number)
        if match and match.group(1) == "IDC":
            cin = match.group(3)
    return SignerIdentity(
        name=_attr(subject, NameOID.COMMON_NAME),
        given_name=_attr(subject, NameOID.GIVEN_NAME), surname=_attr(subject, NameOID.SURNAME),
        cin=cin, serial_number=serial_number, title=_attr(subject, NameOID.TITLE),
        organisation=_attr(subject, NameOID.ORGANIZATION_NAME),
        country=_attr(subject, NameOID.COUNTRY_NAME),
        issuer=parsed.issuer.rfc4514_string(),
        certificate_serial=format(parsed.serial_number, "x"),
        not_before=parsed.not_valid_before_utc, not_after=parsed.not_valid_after_utc,
        sha256=cert.sha256.hex())


def _coverage(info: ModificationInfo) -> Coverage:
    level = info.coverage
    if level == SignatureCoverageLevel.ENTIRE_FILE:
        return Coverage("whole-document", "none", True,
                        "the signature covers the whole file")
    if level != SignatureCoverageLevel.ENTIRE_REVISION:
        return Coverage("partial", "other", False,
                        "the signed byte range does not cover a whole revision")
    modification = info.modification_level
    allowed = bool(info.docmdp_ok)
    names = {
        None: ("unknown", "the later revisions could not be analysed"),
        ModificationLevel.NONE: ("none", "later revisions change nothing visible"),
        ModificationLevel.LTA_UPDATES: ("validation-data",
                                        "later revisions add validation data and "
                                        "time-stamps only"),
        ModificationLevel.FORM_FILLING: ("signatures-and-form-filling",
                                         "later revisions add signatures or fill forms"),
        ModificationLevel.ANNOTATIONS: ("annotations", "later revisions add annotations"),
        ModificationLevel.OTHER: ("other", "later revisions change the document's content"),
    }
    key, text = names.get(modification, ("other", "later revisions change the document"))
    return Coverage("revision", key, allowed and key != "unknown", text)


def _level(embedded: EmbeddedPdfSignature, reader: PdfFileReader,
           timestamped: bool) -> str:
    subfilter = str(embedded.sig_object.get("/SubFilter", ""))
    if subfilter != "/ETSI.CAdES.detached":
        return "PKCS#7 (" + subfilter.lstrip("/") + ")" if subfilter else "unknown"
    if not timestamped:
        return "PAdES-B-B"
    level = "PAdES-B-T"
    dss = reader.root.get("/DSS")
    if dss is not None:
        dss = dss.get_object()
        if dss.get("/OCSPs") or dss.get("/CRLs"):
            level = "PAdES-B-LT"
    later_timestamps = [ts for ts in reader.embedded_timestamp_signatures
                        if ts.signed_revision > embedded.signed_revision]
    if later_timestamps and level == "PAdES-B-LT":
        level = "PAdES-B-LTA"
    return level


def _revocation_in_file(reader: PdfFileReader, embedded: EmbeddedPdfSignature
                        ) -> RevocationData:
    ocsps: list[bytes] = []
    crls: list[bytes] = []
    dss = reader.root.get("/DSS")
    if dss is not None:
        dss = dss.get_object()
        for ref in dss.get("/OCSPs", ()):
            ocsps.append(ref.get_object().data)
        for ref in dss.get("/CRLs", ()):
            crls.append(ref.get_object().data)
    # Adobe-style revocation data inside the signed attributes.
    try:
        signed_attrs = embedded.signer_info["signed_attrs"]
        for attr in signed_attrs:
            if attr["type"].dotted == "1.2.840.113583.1.1.8":
                for value in attr["values"]:
                    for item in value["ocsp"] or ():
                        ocsps.append(item.dump())
                    for item in value["crl"] or ():
                        crls.append(item.dump())
    except (KeyError, ValueError, TypeError):
        pass
    return RevocationData(tuple(ocsps), tuple(crls))


def _dss_certs(reader: PdfFileReader) -> list[asn1_x509.Certificate]:
    found = []
    dss = reader.root.get("/DSS")
    if dss is not None:
        for ref in dss.get_object().get("/Certs", ()):
            try:
                found.append(asn1_x509.Certificate.load(ref.get_object().data))
            except (ValueError, TypeError):
                continue
    return found


def _responder_certs(known: RevocationData) -> list[asn1_x509.Certificate]:
    """Certificates carried inside OCSP responses (delegated responders)."""
    found: list[asn1_x509.Certificate] = []
    for data in known.ocsps:
        parsed = _ocsp(data)
        if parsed is None:
            continue
        try:
            basic = parsed["response_bytes"]["response"].parsed
            found.extend(basic["certs"] or ())
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    return found


def _embedded_certs(embedded: EmbeddedPdfSignature) -> list[asn1_x509.Certificate]:
    found = [*embedded.other_embedded_certs, embedded.signer_cert]
    for token in _timestamp_tokens(embedded):
        for choice in token["content"]["certificates"] or ():
            if choice.name == "certificate":
                found.append(choice.chosen)
    return found


def _timestamp_tokens(embedded: EmbeddedPdfSignature) -> list[cms.ContentInfo]:
    tokens: list[cms.ContentInfo] = []
    unsigned = embedded.signer_info["unsigned_attrs"]
    if isinstance(unsigned, asn1_core.Void):
        return tokens
    for attr in unsigned:  # (never .native: it would decode every token in full)
        if attr["type"].dotted == _TST_ATTRIBUTE:
            tokens.extend(attr["values"])
    return tokens


def _token_time(token: cms.ContentInfo) -> datetime | None:
    try:
        info = token["content"]["encap_content_info"]["content"].parsed
        found: datetime = info["gen_time"].native
        return found
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _reason_name(reason: Any) -> str | None:
    if reason is None:
        return None
    native = getattr(reason, "native", reason)
    return str(native)


# --------------------------------------------------------------------------- verifier


class Verifier:
    """Verifies every signature of a PDF and returns a :class:`VerificationReport`.

    ``trust_roots``: the anchors (our root; more by configuration; roots only: an
    intermediate given here becomes an anchor and ends every path that reaches it).
    ``revocation``: current revocation data for our certificates (the CA's CRLs and
    pre-signed OCSP responses). ``revocation_dir``: a directory of CRLs and OCSP responses the
    operator supplies, read at each verification. ``allow_fetching``: let pyHanko fetch CRLs,
    OCSP responses and issuer certificates over the network, within ``fetch_policy``
    (timeout, response size, request count; off by default: verification then depends on no
    outside service).
    """

    def __init__(self, clock: Clock, *, trust_roots: Sequence[x509.Certificate],
                 revocation: RevocationSource | None = None, allow_fetching: bool = False,
                 fetch_policy: FetchPolicy | None = None,
                 revocation_dir: str | None = None,
                 max_bytes: int = 20 * 1024 * 1024, max_signatures: int = 50) -> None:
        self.clock = clock
        self.trust_roots = [to_asn1(c) for c in trust_roots]
        self.revocation = revocation
        self.allow_fetching = allow_fetching
        self.fetch_policy = fetch_policy or FetchPolicy()
        self.revocation_dir = revocation_dir
        self.max_bytes = max_bytes
        self.max_signatures = max_signatures
        self._policy: CertValidationPolicySpec | None = None

    def _cert_policy(self) -> CertValidationPolicySpec:
        """The anchors and the revocation policy: the same for every file, built once (the
        trust manager keeps what it learns of the roots between verifications)."""
        if self._policy is None:
            self._policy = CertValidationPolicySpec(
                trust_manager=SimpleTrustManager.build(trust_roots=self.trust_roots),
                # ETSI EN 319 102-1 5.2.5.4: revocation data is fresh if issued within its
                # own validity of the control time; data issued after that time still
                # speaks for it.
                revinfo_policy=CertRevTrustPolicy(
                    REQUIRE_REVINFO,
                    freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION))
        return self._policy

    def verify(self, data: bytes, *, revocation: RevocationData | None = None
               ) -> VerificationReport:
        """Verify ``data``; ``revocation``: CRLs and OCSP responses the caller supplies."""
        reader = read_pdf(data, max_bytes=self.max_bytes)
        now = as_utc(self.clock.now())
        supplied = read_directory(self.revocation_dir) + (revocation or RevocationData())
        # One backend per file: one cache and one request budget for all its signatures.
        backend = CappedFetcherBackend(self.fetch_policy) if self.allow_fetching else None
        signatures = asyncio.run(self._verify_all(reader, now, supplied, backend))
        return VerificationReport(sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                  validated_at=now, signatures=tuple(signatures))

    async def _verify_all(self, reader: PdfFileReader, now: datetime,
                          supplied: RevocationData, backend: CappedFetcherBackend | None
                          ) -> list[SignatureReport]:
        from pki.signing.errors import InvalidDocument

        try:
            fields = list(enumerate_sig_fields(reader, filled_status=True))
        except Exception as exc:
            raise InvalidDocument("the signature fields cannot be read",
                                  reason=type(exc).__name__) from exc
        if len(fields) > self.max_signatures:
            raise InvalidDocument(f"more than {self.max_signatures} signatures",
                                  limit=self.max_signatures)
        readable: list[EmbeddedPdfSignature] = []
        broken: list[SignatureReport] = []
        for name, sig_obj, sig_field in fields:
            try:
                kind = sig_obj.get_object().get("/Type", "/Sig")
            except Exception:
                kind = "/Sig"
            if kind == "/DocTimeStamp":
                continue
            try:
                readable.append(EmbeddedPdfSignature(reader, sig_field, name))
            except Exception as exc:
                # A signature value that is not a CMS signature (corrupted, truncated, not
                # DER): this signature fails, the others are still verified.
                log.info("signature %s unreadable: %r", name, exc)
                broken.append(_format_failure(name or "(unnamed)", now,
                                              "the signature value is not a readable CMS "
                                              "signature"))
        readable.sort(key=lambda sig: sig.signed_revision)
        reports = [await self._verify_one(reader, sig, now, supplied, backend)
                   for sig in readable]
        return reports + broken

    def _knowledge(self, reader: PdfFileReader, embedded: EmbeddedPdfSignature,
                   supplied: RevocationData
                   ) -> tuple[RevocationData, list[asn1_x509.Certificate]]:
        """Revocation data and certificates known for ``embedded``: the file's (signature,
        time-stamp, DSS), the operator's and the caller's, then our CA's current data for
        the certificates found."""
        certs = _embedded_certs(embedded) + _dss_certs(reader)
        known = _revocation_in_file(reader, embedded) + supplied
        if self.revocation is not None:
            known = known + self.revocation.revocation_data([from_asn1(c) for c in certs])
        certs += _responder_certs(known)
        unique: dict[bytes, asn1_x509.Certificate] = {}
        for cert in certs:
            # The process's shared object for each (what pyHanko's registry computes of a
            # certificate is then computed once, not at every verification).
            unique.setdefault(cert.dump(), cert)
        return known, [shared_asn1(cert) for cert in unique.values()]

    def _spec(self, known: RevocationData, certs: list[asn1_x509.Certificate],
              now: datetime, backend: CappedFetcherBackend | None
              ) -> PdfSignatureValidationSpec:
        policy = self._cert_policy()
        # Fetching happens for the validation at the current time only (5.3, 5.5); the past
        # validations of the long-term process use what is known.
        rule = RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH if backend is not None \
            else RevinfoOnlineFetchingRule.LOCAL_ONLY
        ocsps = [parsed for parsed in map(_ocsp, known.ocsps) if parsed is not None]
        crls = [parsed for parsed in map(_crl, known.crls) if parsed is not None]
        knowledge = LocalKnowledge(
            known_ocsps=[c for r in ocsps for c in OCSPContainer.load_multi(r)],
            known_crls=[CRLContainer(c) for c in crls],
            known_certs=[*certs, *self.trust_roots])
        # Everything we hold exists now, at the validation time of our clock (pyHanko would
        # otherwise take the system's time, which a test's frozen clock is not).
        knowledge = replace(knowledge,
                            known_poes=list(knowledge.assert_existence_known_at(now)))
        return PdfSignatureValidationSpec(
            signature_validation_spec=SignatureValidationSpec(
                cert_validation_policy=policy,
                revinfo_gathering_policy=RevocationInfoGatheringSpec(
                    online_fetching_rule=rule, fetcher_backend=backend),
                local_knowledge=knowledge),
            diff_policy=DEFAULT_DIFF_POLICY)

    async def _verify_one(self, reader: PdfFileReader, embedded: EmbeddedPdfSignature,
                          now: datetime, supplied: RevocationData,
                          backend: CappedFetcherBackend | None) -> SignatureReport:
        field_name = embedded.field_name or "(unnamed)"
        try:
            identity = signer_identity(embedded.signer_cert)
        except Exception:
            return _format_failure(field_name, now, "the signing certificate is missing "
                                   "or unreadable")
        timestamped = bool(_timestamp_tokens(embedded))
        reasons: list[str] = []
        try:
            embedded.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
            integrity_info = embedded.summarise_integrity_info()
            known, certs = self._knowledge(reader, embedded, supplied)
            if backend is not None:
                backend.know(known, now)  # no OCSP request where these settle it
            spec = self._spec(known, certs, now, backend)
            # A validation at the current time, not a point-in-time one, when fetching is
            # allowed: pyHanko only fetches for the former.
            timing = ValidationTimingInfo(now, now, backend is None)
            result: AdESBasicValidationResult[Any]
            if timestamped:
                # B-T and up: validation with time (5.5); when that does not pass, the
                # long-term process (5.6: document time-stamps, past validation).
                result = await ades_with_time_validation(
                    embedded.signed_data, spec.signature_validation_spec,
                    timing_info=timing, raw_digest=embedded.compute_digest(),
                    extra_status_kwargs=integrity_info, status_cls=PdfSignatureStatus)
                if result.ades_subindic.status is not AdESStatus.PASSED:
                    result = await ades_lta_validation(embedded, spec, timing_info=timing)
            else:
                # No time-stamp: basic signature validation at the current time (5.3).
                result = await ades_basic_validation(
                    embedded.signed_data, spec.signature_validation_spec,
                    timing_info=timing, raw_digest=embedded.compute_digest())
        except Exception as exc:
            log.info("signature %s could not be validated: %r", field_name, exc)
            return _format_failure(field_name, now, "the signature could not be processed",
                                   identity)
        status: StandardCMSSignatureStatus | None = result.api_status
        sub: AdESSubIndic = result.ades_subindic
        indication = _INDICATION[sub.status]
        sub_name: str | None = None if sub.status is AdESStatus.PASSED else sub.standard_name
        if result.failure_msg and sub.status is not AdESStatus.PASSED:
            reasons.append(result.failure_msg)

        coverage = _coverage(ModificationInfo(
            coverage=integrity_info.get("coverage"),
            diff_result=integrity_info.get("diff_result"),
            docmdp_ok=integrity_info.get("docmdp_ok")))
        integrity = bool(status is not None and status.intact and status.valid)
        if indication != "TOTAL-FAILED" and not coverage.changes_allowed:
            indication, sub_name = "TOTAL-FAILED", AdESFailure.HASH_FAILURE.standard_name
            reasons.append("the document was changed after this signature: "
                           + coverage.detail)

        claimed = embedded.self_reported_timestamp
        ts_time = ts_authority = None
        ts_status = getattr(status, "timestamp_validity", None)
        if ts_status is not None:
            ts_time = ts_status.timestamp
            ts_authority = from_asn1(ts_status.signing_cert).subject.rfc4514_string()
        elif timestamped:
            # Not validated (the validation stopped earlier): the token's claimed time.
            ts_time = _token_time(_timestamp_tokens(embedded)[0])
        signing_time = as_utc(ts_time or claimed or now)
        if sub.status is AdESStatus.PASSED and good_now(status, embedded.signer_cert,
                                                        signing_time, now):
            # The AdES validation just built the path at the current time, with all the
            # revocation data known, and found the certificate good: it is good now, and
            # was when it signed (within its validity, not revoked before now). One
            # validation instead of three.
            at_signing = CertificateStatus(signing_time, "good")
            now_status = CertificateStatus(now, "good")
        else:
            if backend is not None:
                known = known + backend.fetched()
            at_signing, _ = await self._cert_status(embedded.signer_cert, certs, known,
                                                    signing_time, backend, historical=True)
            now_status, revinfo_missing = await self._cert_status(
                embedded.signer_cert, certs, known, now, backend, historical=False)
            if (indication == "INDETERMINATE" and revinfo_missing
                    and sub_name == "CERTIFICATE_CHAIN_GENERAL_FAILURE"):
                # EN 319 102-1 5.2.6.4: no fresh revocation status is available (none
                # published, none supplied, or its source unreachable): it may be later.
                sub_name = "TRY_LATER"
        return SignatureReport(
            field_name=field_name, signer=identity,
            level=_level(embedded, reader, timestamped),
            claimed_signing_time=claimed, timestamp_time=ts_time,
            timestamp_authority=ts_authority, coverage=coverage, integrity=integrity,
            digest_algorithm=status.md_algorithm if status is not None else None,
            signature_algorithm=status.pkcs7_signature_mechanism if status is not None
            else None,
            certificate_at_signing=at_signing, certificate_now=now_status,
            indication=indication, sub_indication=sub_name, reasons=tuple(reasons))

    async def _cert_status(self, cert: asn1_x509.Certificate,
                           certs: list[asn1_x509.Certificate], known: RevocationData,
                           at: datetime, backend: CappedFetcherBackend | None, *,
                           historical: bool) -> tuple[CertificateStatus, bool]:
        """Path validation of ``cert`` at ``at`` with all known revocation data (and what
        ``backend`` fetches, or has fetched already for this file); the second value says
        whether the status is unknown for want of revocation data.

        For the time of signing, revocation data issued later still speaks about earlier
        times (``retroactive_revinfo``): a certificate revoked after it signed was good
        when it signed."""
        context = ValidationContext(
            trust_roots=self.trust_roots, other_certs=certs,
            ocsps=list(known.ocsps), crls=list(known.crls),
            allow_fetching=backend is not None, fetcher_backend=backend,
            revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO,
                                              retroactive_revinfo=historical),
            moment=at)
        validator = CertificateValidator(cert, intermediate_certs=certs,
                                         validation_context=context)
        try:
            await validator.async_validate_usage(set())
        except RevokedError as exc:
            reason = _reason_name(exc.reason)
            kind: CertStatus = "suspended" if reason == "certificate_hold" else "revoked"
            return CertificateStatus(at, kind, exc.failure_msg, exc.revocation_dt,
                                     reason), False
        except ExpiredError as exc:
            return CertificateStatus(at, "expired", exc.failure_msg), False
        except NotYetValidError as exc:
            return CertificateStatus(at, "not-yet-valid", exc.failure_msg), False
        except InsufficientRevinfoError as exc:
            return CertificateStatus(at, "unknown", exc.failure_msg), True
        except PathBuildingError:
            return CertificateStatus(at, "untrusted",
                                     "no chain to a trusted root was found"), False
        except (PathValidationError, ValidationError) as exc:
            return CertificateStatus(at, "unknown", exc.failure_msg), False
        except Exception as exc:
            return CertificateStatus(at, "unknown", type(exc).__name__), False
        finally:
            await context.aclose()
        return CertificateStatus(at, "good"), False


def good_now(status: StandardCMSSignatureStatus | None, cert: asn1_x509.Certificate,
             signing_time: datetime, now: datetime) -> bool:
    """Whether a passed AdES validation at ``now`` already proves the signing certificate
    good at ``now`` and at ``signing_time``: the path was built and validated at ``now``
    (:class:`ValidationTimingInfo` of the verifier) without a trust problem or a revocation,
    and ``signing_time`` is within the certificate's validity."""
    if status is None or status.validation_path is None:
        return False
    if status.trust_problem_indic is not None or status.revocation_details is not None:
        return False
    validity = cert["tbs_certificate"]["validity"]
    not_before = as_utc(validity["not_before"].native)
    not_after = as_utc(validity["not_after"].native)
    return not_before <= signing_time <= now <= not_after


def _ocsp(data: bytes) -> Any:
    from asn1crypto import ocsp

    return _parsed(data, ocsp.OCSPResponse)


def _crl(data: bytes) -> Any:
    from asn1crypto import crl

    return _parsed(data, crl.CertificateList)


#: OCSP responses and CRLs as parsed, by DER (what the DER says never changes): the same
#: responses of our CA come with every verification, each used twice by it. Parsed in full
#: once, then read only (as pki.signer shares its certificates with pyHanko). Bounded in
#: count, and large ones (an outside CA's big CRL) are not kept.
_PARSED: Memo[tuple[type, bytes], Any] = Memo(512)
_PARSED_MAX_BYTES = 256 * 1024


def _parsed(data: bytes, kind: type) -> Any:
    data = bytes(data)
    if len(data) > _PARSED_MAX_BYTES:
        return _parse(data, kind)
    found = _PARSED.get((kind, data))
    if found is None:
        found = _parse(data, kind)
        if found is not None:  # what does not parse is not kept
            _PARSED.put((kind, data), found)
    return found


def _parse(data: bytes, kind: Any) -> Any:
    try:
        parsed = kind.load(data)
        parsed.native  # noqa: B018 - force parsing now, not deep inside validation
    except (ValueError, TypeError):
        return None
    return parsed


def _format_failure(field_name: str, now: datetime, reason: str,
                    identity: SignerIdentity | None = None) -> SignatureReport:
    unknown = CertificateStatus(now, "unknown", reason)
    signer = identity or SignerIdentity(None, None, None, None, None, None, None, None, "",
                                        "", now, now, "")
    return SignatureReport(
        field_name=field_name, signer=signer, level="unknown", claimed_signing_time=None,
        timestamp_time=None, timestamp_authority=None,
        coverage=Coverage("partial", "unknown", False, reason), integrity=False,
        digest_algorithm=None, signature_algorithm=None, certificate_at_signing=unknown,
        certificate_now=unknown, indication="TOTAL-FAILED",
        sub_indication=AdESFailure.FORMAT_FAILURE.standard_name, reasons=(reason,))
