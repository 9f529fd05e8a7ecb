"""Certificate profiles: what each kind of certificate we sign contains.

Pure functions: they return cryptography ``CertificateBuilder`` objects and never sign nor
touch the database, so each profile can be read (and linted) on its own.

- root CA: self-signed, basicConstraints cA (critical), keyCertSign + cRLSign.
- issuing CA: cA with pathLen 0, AIA caIssuers and a CRL distribution point at the root.
- holder (ETSI EN 319 412-2 natural person): C, O, title, surname, givenName,
  serialNumber ``IDCMA-<CIN>`` (ETSI semantics identifier, EN 319 412-1 §5.1.3), CN;
  keyUsage nonRepudiation alone (critical); certificatePolicies = our holder policy and
  NCP+ (0.4.0.2042.1.2, key on a secure device); AIA (OCSP, caIssuers), CDP, SKI, AKI.
- OCSP responder: id-kp-OCSPSigning, ocsp-nocheck, digitalSignature, short-lived.
- TSA: critical EKU timeStamping, digitalSignature.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import ConfigurationError
from core.identifiers import CIN_PATTERN, CIN_RULE
from pki.errors import InvalidHolder

#: ETSI EN 319 411-2 reserved policy: NCP+ (keys held on a secure cryptographic device).
ETSI_NCP_PLUS = "0.4.0.2042.1.2"
ANY_POLICY = "2.5.29.32.0"

# Sub-arcs of our policy arc (core.config.Settings.policy_oid).
ARC_HOLDER = 1
ARC_OCSP = 2
ARC_TSA = 3

# RFC 5612's Private Enterprise Number for documentation (1.3.6.1.4.1.32473): the demo's and
# the tests' arc. Every component fits in 32 bits, so stock tools (pkilint's default decoder,
# Botan, Go) parse it; it names no real CA, so production must set its own.
DOCUMENTATION_POLICY_OID = "1.3.6.1.4.1.32473.1"


class PolicyArcNotSet(ConfigurationError):
    type = "policy-oid-not-set"

    def __init__(self) -> None:
        super().__init__(
            "TAWQI_POLICY_OID is not set: a CA names its own certificate-policy arc (e.g. "
            "under its IANA Private Enterprise Number, 1.3.6.1.4.1.<PEN>.x); it is written "
            "into every certificate and time-stamp and cannot be changed afterwards")


# X.520 upper bounds (RFC 5280 appendix A): CN 64, O 64, title 64, serialNumber 64.
UB_NAME = 64


@dataclass(frozen=True)
class Profile:
    """The settings every profile reads: names, URLs, policy arc, validities."""

    public_url: str
    policy_oid: str
    org: str = "Tawqi"
    country: str = "MA"
    root_validity_days: int = 7300
    issuing_validity_days: int = 3650
    holder_validity_days: int = 1095
    ocsp_validity_days: int = 30
    tsa_validity_days: int = 1825
    crl_validity_hours: int = 24
    root_crl_validity_days: int = 365
    ocsp_response_validity_hours: int = 24

    def __post_init__(self) -> None:
        if self.policy_oid and \
                not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", self.policy_oid):
            raise ConfigurationError("TAWQI_POLICY_OID is not a dotted OID",
                                     oid=self.policy_oid)
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigurationError("TAWQI_PUBLIC_URL must be an http(s) URL",
                                     url=self.public_url)

    @classmethod
    def from_settings(cls, settings: object) -> Profile:
        """Read the fields of ``core.config.Settings`` this profile knows."""
        names = cls.__dataclass_fields__.keys()
        mapping = {"org": "ca_org", "country": "ca_country"}
        values = {}
        for name in names:
            source = mapping.get(name, name)
            if hasattr(settings, source):
                values[name] = getattr(settings, source)
        return cls(**values)

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/")

    def policy(self, arc: int) -> str:
        """Our policy OID for ``arc``; refuses while no arc is configured, so that nothing
        is ever certified under an arc the operator did not choose."""
        if not self.policy_oid:
            raise PolicyArcNotSet()
        return f"{self.policy_oid}.{arc}"

    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    def tsa_url(self) -> str:
        return f"{self.base_url}/tsa"

    def ca_url(self, authority_id: int) -> str:
        return f"{self.base_url}/ca/{authority_id}.crt"

    def crl_url(self, authority_id: int) -> str:
        return f"{self.base_url}/crl/{authority_id}.crl"


def _clean(value: str, field: str, *, limit: int = UB_NAME) -> str:
    if not isinstance(value, str):
        raise InvalidHolder(f"{field} must be text", field=field)
    text = unicodedata.normalize("NFC", " ".join(value.split()))
    if not text:
        raise InvalidHolder(f"{field} must not be empty", field=field)
    if len(text) > limit:
        raise InvalidHolder(f"{field} has more than {limit} characters", field=field,
                            limit=limit)
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise InvalidHolder(f"{field} contains control characters", field=field)
    return text


@dataclass(frozen=True)
class HolderIdentity:
    """A natural person who signs for a commune or a provincial service.

    Validated on construction: the CIN is 1 or 2 letters then digits (``AB123456``, ``K12345``),
    names are non-empty Unicode (Arabic fits: O and names are UTF8String), within X.520
    bounds. ``organization`` is the commune or provincial service.
    """

    cin: str
    given_name: str
    surname: str
    title: str
    organization: str
    country: str = "MA"

    def __post_init__(self) -> None:
        cin = (self.cin or "").strip().upper() if isinstance(self.cin, str) else ""
        if not CIN_PATTERN.fullmatch(cin):
            raise InvalidHolder(f"the CIN must be {CIN_RULE}", field="cin")
        object.__setattr__(self, "cin", cin)
        for name in ("given_name", "surname", "title", "organization"):
            object.__setattr__(self, name, _clean(getattr(self, name), name))
        if not re.fullmatch(r"[A-Z]{2}", self.country or ""):
            raise InvalidHolder("the country must be a two-letter code", field="country")
        if len(self.common_name) > UB_NAME:
            raise InvalidHolder(f"given name and surname exceed {UB_NAME} characters",
                                field="common_name")

    @property
    def common_name(self) -> str:
        return f"{self.given_name} {self.surname}"

    @property
    def semantics_identifier(self) -> str:
        """``IDC<country>-<CIN>``: national identity card (EN 319 412-1 §5.1.3)."""
        return f"IDC{self.country}-{self.cin}"

    def subject(self) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
            x509.NameAttribute(NameOID.TITLE, self.title),
            x509.NameAttribute(NameOID.SURNAME, self.surname),
            x509.NameAttribute(NameOID.GIVEN_NAME, self.given_name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, self.semantics_identifier),
            x509.NameAttribute(NameOID.COMMON_NAME, self.common_name),
        ])


def ca_name(profile: Profile, common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.org),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _base(subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes,
          serial: int, not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, digital_signature: bool = False, content_commitment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature,
                         content_commitment=content_commitment, key_encipherment=False,
                         data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=crl_sign,
                         encipher_only=False, decipher_only=False)


def _policies(*oids: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([
        x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in oids])


def _aia(profile: Profile, issuer_id: int, *, ocsp: bool) -> x509.AuthorityInformationAccess:
    descriptions = []
    if ocsp:
        descriptions.append(x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier(profile.ocsp_url())))
    descriptions.append(x509.AccessDescription(
        x509.AuthorityInformationAccessOID.CA_ISSUERS,
        x509.UniformResourceIdentifier(profile.ca_url(issuer_id))))
    return x509.AuthorityInformationAccess(descriptions)


def _cdp(profile: Profile, issuer_id: int) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(profile.crl_url(issuer_id))],
        relative_name=None, reasons=None, crl_issuer=None)])


def clamp_validity(not_before: datetime, days: int, issuer: x509.Certificate | None
                   ) -> datetime:
    """``not_before + days``, never past the issuer's own notAfter."""
    not_after = not_before + timedelta(days=days)
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
    return not_after


def root_builder(profile: Profile, *, subject: x509.Name, public_key: CertificatePublicKeyTypes,
                 serial: int, not_before: datetime, not_after: datetime
                 ) -> x509.CertificateBuilder:
    return (_base(subject, subject, public_key, serial, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True))


def issuing_builder(profile: Profile, *, subject: x509.Name,
                    public_key: CertificatePublicKeyTypes, serial: int,
                    not_before: datetime, not_after: datetime, root: x509.Certificate,
                    root_id: int) -> x509.CertificateBuilder:
    return (_base(subject, root.subject, public_key, serial, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(_aki(root), critical=False)
            .add_extension(_policies(ANY_POLICY), critical=False)
            .add_extension(_aia(profile, root_id, ocsp=False), critical=False)
            .add_extension(_cdp(profile, root_id), critical=False))


#: Holder EKU, non-critical: emailProtection (NSS's "email signer" usage: poppler's pdfsig
#: 22.x reports a chain trusted only when it is there) and RFC 9336 documentSigning.
HOLDER_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")])


def holder_builder(profile: Profile, *, holder: HolderIdentity,
                   public_key: CertificatePublicKeyTypes, serial: int, not_before: datetime,
                   not_after: datetime, issuer: x509.Certificate, issuer_id: int
                   ) -> x509.CertificateBuilder:
    return (_base(holder.subject(), issuer.subject, public_key, serial, not_before, not_after)
            .add_extension(_key_usage(content_commitment=True), critical=True)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(_policies(profile.policy(ARC_HOLDER), ETSI_NCP_PLUS), critical=False)
            .add_extension(_aia(profile, issuer_id, ocsp=True), critical=False)
            .add_extension(_cdp(profile, issuer_id), critical=False)
            .add_extension(HOLDER_EKU, critical=False))


def ocsp_builder(profile: Profile, *, subject: x509.Name,
                 public_key: CertificatePublicKeyTypes, serial: int, not_before: datetime,
                 not_after: datetime, issuer: x509.Certificate, issuer_id: int
                 ) -> x509.CertificateBuilder:
    """A delegated responder: clients need not check its status (ocsp-nocheck), so it is
    short-lived instead (``ocsp_validity_days``)."""
    return (_base(subject, issuer.subject, public_key, serial, not_before, not_after)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                           critical=False)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(_policies(profile.policy(ARC_OCSP)), critical=False)
            .add_extension(_aia(profile, issuer_id, ocsp=False), critical=False))


def tsa_builder(profile: Profile, *, subject: x509.Name,
                public_key: CertificatePublicKeyTypes, serial: int, not_before: datetime,
                not_after: datetime, issuer: x509.Certificate, issuer_id: int
                ) -> x509.CertificateBuilder:
    """RFC 3161 §2.3: the only extended key usage is timeStamping, and it is critical."""
    return (_base(subject, issuer.subject, public_key, serial, not_before, not_after)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(_policies(profile.policy(ARC_TSA)), critical=False)
            .add_extension(_aia(profile, issuer_id, ocsp=True), critical=False)
            .add_extension(_cdp(profile, issuer_id), critical=False))
