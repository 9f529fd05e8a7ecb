"""Remote signing (pki.signing.service) on the session's real test PKI: hosted holder keys on
SoftHSM, our TSA and our CA's records for B-LT. Codes, PINs, SADs, refusals."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import AuditEvent
from core.clock import Clock, FrozenClock
from hsm import ModuleUnavailable, PinIncorrect, PinLocked, TokenLibrary
from pki import issuance, lifecycle, tsa
from pki.models import CertificateRecord
from pki.profiles import ARC_TSA, HolderIdentity
from pki.signing.errors import (
    BatchTooLarge,
    CredentialUnusable,
    DocumentTooLarge,
    InvalidDocument,
    OtpClosed,
    OtpInvalid,
    SadInvalid,
    SadMismatch,
)
from pki.signing.models import PURPOSE_DOCUMENT, PURPOSE_HASH, SigningAuthorization
from pki.signing.pades import (
    Level,
    LocalTimeStamper,
    PadesRequest,
    PadesService,
    RecordsRevocation,
)
from pki.signing.ports import HolderContact
from pki.signing.public import signature_status
from pki.signing.service import RemoteSigning, RemoteSigningPolicy, issuer_chain
from pki.signing.verification import Verifier
from tests.pki.broken_pdfs import PAGE, broken, raw_pdf
from tests.pki.conftest import ACTOR, World, same_connection
from tests.pki.test_pades_pki import make_nss_db, pdfsig, permit_pdf, stamp_for

CLIENT = "apikey:1"


@dataclass
class Directory:
    ready: bool = True
    hosted: bool = True

    def contact(self, session: Session, cin: str, serial: str) -> HolderContact | None:
        return HolderContact(holder_id=1, mobile="+212600001234", hosted=self.hosted,
                             ready=self.ready,
                             reasons=() if self.ready else ("the terms are not accepted",))


@dataclass
class Codes:
    sent: list[str] = field(default_factory=list)

    def send(self, session: Session, clock: Clock, *, contact: HolderContact,
             challenge_id: str, code: str, ttl_minutes: int, purpose_fr: str,
             purpose_ar: str) -> str:
        self.sent.append(code)
        return contact.mobile[-4:]

    @property
    def last(self) -> str:
        return self.sent[-1]


@dataclass
class Fixture:
    service: RemoteSigning
    codes: Codes
    directory: Directory
    clock: FrozenClock
    world: World
    session: Session

    def authorize(self, name: str = "good", digests: list[bytes] | None = None, *,
                  purpose: str = PURPOSE_HASH, client: str = CLIENT, pin: str | None = None,
                  serial: str | None = None) -> str:
        serial = serial or self.world.serials[name]
        self.service.send_otp(serial, client=client, actor=ACTOR)
        found = self.service.authorize(
            serial, pin=pin or self.world.holder_pins[name], otp=self.codes.last,
            digests=digests or [_digest(b"permit")], hash_algorithm="sha256",
            purpose=purpose, client=client, actor=ACTOR)
        return found.sad


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def remote(world: World, pki_session: Session) -> Iterator[Fixture]:
    clock = FrozenClock(world.clock.now())
    codes, directory = Codes(), Directory()
    service = RemoteSigning(same_connection(pki_session), clock, world.library,
                            directory=directory, codes=codes,
                            chain=issuer_chain,
                            policy=RemoteSigningPolicy(max_batch=50,
                                                       status_url="http://pki.tawqi.ma/s/"))
    yield Fixture(service, codes, directory, clock, world, pki_session)


def test_credentials_of_a_holder(remote: Fixture) -> None:
    found = remote.service.credentials(remote.session, "ab123456")
    assert [c.id for c in found] == [remote.world.serials["good"]]
    assert found[0].state_at(remote.clock.now()) == "valid"
    assert remote.service.credentials(remote.session, "K12345")[0].state_at(
        remote.clock.now()) == "revoked"
    assert remote.service.credentials(remote.session, "K12345", only_valid=True) == []
    remote.directory.hosted = False  # a device token is not a remote credential
    assert remote.service.credentials(remote.session, "AB123456") == []


def test_sign_hashes_end_to_end(remote: Fixture) -> None:
    digests = [_digest(f"permit {i}".encode()) for i in range(5)]
    sad = remote.authorize(digests=digests)
    serial = remote.world.serials["good"]
    signatures = remote.service.sign_hashes(serial, sad=sad, digests=digests,
                                            hash_algorithm="sha256",
                                            sign_algorithm="1.2.840.10045.4.3.2",
                                            client=CLIENT, actor=ACTOR)
    public = remote.service.credential(remote.session, serial).certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for digest, signature in zip(digests, signatures, strict=True):
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # Single use.
    with pytest.raises(SadInvalid):
        remote.service.sign_hashes(serial, sad=sad, digests=digests, hash_algorithm="sha256",
                                   sign_algorithm=None, client=CLIENT, actor=ACTOR)
    actions = [e.action for e in remote.session.scalars(
        select(AuditEvent).where(AuditEvent.object_id == serial).order_by(AuditEvent.seq))]
    assert actions[-5:] == ["signing.otp.sent", "signing.otp.verified", "signing.authorized",
                            "signing.authorization.used", "signing.hashes.signed"]


def test_sad_is_bound_to_its_hashes_and_then_spent(remote: Fixture) -> None:
    one, two, other = (_digest(x) for x in (b"1", b"2", b"3"))
    sad = remote.authorize(digests=[one, two])
    serial = remote.world.serials["good"]
    with pytest.raises(SadMismatch):
        remote.service.sign_hashes(serial, sad=sad, digests=[one, other],
                                   hash_algorithm="sha256", sign_algorithm=None,
                                   client=CLIENT, actor=ACTOR)
    with pytest.raises(SadInvalid):  # the replay attempt spent it
        remote.service.sign_hashes(serial, sad=sad, digests=[one, two],
                                   hash_algorithm="sha256", sign_algorithm=None,
                                   client=CLIENT, actor=ACTOR)


def test_sad_belongs_to_its_client_and_expires(remote: Fixture) -> None:
    digests = [_digest(b"x")]
    serial = remote.world.serials["good"]
    sad = remote.authorize(digests=digests)
    with pytest.raises(SadInvalid):
        remote.service.sign_hashes(serial, sad=sad, digests=digests, hash_algorithm="sha256",
                                   sign_algorithm=None, client="apikey:2", actor=ACTOR)
    sad = remote.authorize(digests=digests)
    remote.clock.advance(timedelta(minutes=5, seconds=1))
    with pytest.raises(SadInvalid, match="expired"):
        remote.service.sign_hashes(serial, sad=sad, digests=digests, hash_algorithm="sha256",
                                   sign_algorithm=None, client=CLIENT, actor=ACTOR)
    with pytest.raises(SadInvalid):
        remote.service.sign_hashes(serial, sad="made-up", digests=digests,
                                   hash_algorithm="sha256", sign_algorithm=None,
                                   client=CLIENT, actor=ACTOR)


def test_pin_is_kept_only_sealed_and_erased_after_use(remote: Fixture) -> None:
    pin = remote.world.holder_pins["good"].encode()
    digests = [_digest(b"y")]
    sad = remote.authorize(digests=digests)
    row = remote.session.scalars(select(SigningAuthorization)
                                 .order_by(SigningAuthorization.created_at.desc())).first()
    assert row is not None and row.pin_box is not None and pin not in row.pin_box
    assert sad.encode() not in row.sad_hash.encode()
    remote.service.sign_hashes(remote.world.serials["good"], sad=sad, digests=digests,
                               hash_algorithm="sha256", sign_algorithm=None, client=CLIENT,
                               actor=ACTOR)
    remote.session.expire_all()
    row = remote.session.get(SigningAuthorization, row.id)
    assert row is not None and row.status == "used" and row.pin_box is None


def test_wrong_codes_close_the_challenge_without_touching_the_pin(remote: Fixture) -> None:
    serial = remote.world.serials["good"]
    remote.service.send_otp(serial, client=CLIENT, actor=ACTOR)
    wrong = "000000" if remote.codes.last != "000000" else "111111"
    for left in (4, 3, 2, 1):
        with pytest.raises(OtpInvalid) as caught:
            remote.service.authorize(serial, pin="not-the-pin", otp=wrong,
                                     digests=[_digest(b"z")], hash_algorithm="sha256",
                                     purpose=PURPOSE_HASH, client=CLIENT, actor=ACTOR)
        assert caught.value.extras["attempts_left"] == left
    with pytest.raises(OtpClosed):
        remote.service.authorize(serial, pin="not-the-pin", otp=wrong,
                                 digests=[_digest(b"z")], hash_algorithm="sha256",
                                 purpose=PURPOSE_HASH, client=CLIENT, actor=ACTOR)
    with pytest.raises(OtpClosed):  # even the right code, now
        remote.service.authorize(serial, pin=remote.world.holder_pins["good"],
                                 otp=remote.codes.last, digests=[_digest(b"z")],
                                 hash_algorithm="sha256", purpose=PURPOSE_HASH,
                                 client=CLIENT, actor=ACTOR)
    # The wrong PIN was never tried: the token still takes the right one at once.
    assert remote.authorize(digests=[_digest(b"z")])
    remote.clock.advance(timedelta(minutes=6))
    remote.service.send_otp(serial, client=CLIENT, actor=ACTOR)
    code = remote.codes.last
    remote.clock.advance(timedelta(minutes=6))
    with pytest.raises(OtpClosed):  # expired
        remote.service.authorize(serial, pin=remote.world.holder_pins["good"], otp=code,
                                 digests=[_digest(b"z")], hash_algorithm="sha256",
                                 purpose=PURPOSE_HASH, client=CLIENT, actor=ACTOR)


def _own_holder(remote: Fixture, holder: HolderIdentity
                ) -> tuple[str, str, issuance.IssuedCertificate]:
    """A holder with a token of their own and a certificate: (token label, PIN, issued)."""
    world = remote.world
    label, pin = world.new_holder_token()
    issued = issuance.issue_holder_certificate(
        remote.session, world.clock, world.authority(remote.session), world.library,
        token_label=label, token_pin=pin, holder=holder, actor=ACTOR)
    return label, pin, issued


def test_wrong_pins_lock_the_token(remote: Fixture) -> None:
    _label, pin, issued = _own_holder(remote, HolderIdentity(
        cin="Z998877", given_name="Karim", surname="Tahiri",
        title="Président", organization="Commune d'Ifrane"))
    for attempt in range(1, 6):
        expected = PinLocked if attempt == 5 else PinIncorrect
        with pytest.raises(expected):
            remote.authorize(serial=issued.serial, pin=f"9{attempt}9{attempt}9{attempt}")
    with pytest.raises(PinLocked):  # the right PIN no longer opens it
        remote.authorize(serial=issued.serial, pin=pin)


def test_suspended_revoked_expired_sign_nothing(remote: Fixture) -> None:
    world = remote.world
    for name in ("revoked", "suspended"):
        with pytest.raises(CredentialUnusable) as caught:
            remote.service.send_otp(world.serials[name], client=CLIENT, actor=ACTOR)
        assert caught.value.extras["status"] == name
    digests = [_digest(b"w")]
    sad = remote.authorize(digests=digests)
    # Suspended between authorisation and signature: the SAD no longer signs.
    authority = world.authority(remote.session)
    lifecycle.suspend(remote.session, world.clock, authority, world.serials["good"],
                      actor=ACTOR)
    with pytest.raises(CredentialUnusable):
        remote.service.sign_hashes(world.serials["good"], sad=sad, digests=digests,
                                   hash_algorithm="sha256", sign_algorithm=None,
                                   client=CLIENT, actor=ACTOR)
    lifecycle.release(remote.session, world.clock, authority, world.serials["good"],
                      actor=ACTOR)
    remote.clock.advance(timedelta(days=1100))  # past the certificate's notAfter
    with pytest.raises(CredentialUnusable) as caught:
        remote.service.send_otp(world.serials["good"], client=CLIENT, actor=ACTOR)
    assert caught.value.extras["status"] == "expired"


def test_holder_must_be_ready(remote: Fixture) -> None:
    remote.directory.ready = False
    with pytest.raises(CredentialUnusable, match="terms"):
        remote.service.send_otp(remote.world.serials["good"], client=CLIENT, actor=ACTOR)


def test_batch_limit(remote: Fixture) -> None:
    digests = [_digest(str(i).encode()) for i in range(51)]
    with pytest.raises(BatchTooLarge):
        remote.authorize(digests=digests)


@pytest.mark.slow
def test_sign_document_b_lt_with_our_tsa(remote: Fixture, tmp_path: Path) -> None:
    world = remote.world
    authority = world.authority(remote.session)
    signer = authority.tsa_signer
    assert signer is not None
    stamper = LocalTimeStamper(lambda der: tsa.timestamp(
        signer, remote.clock, der, policy_oid=world.profile.policy(ARC_TSA)).der)
    pades = PadesService(remote.clock, trust_roots=[world.root], timestamper=stamper,
                         revocation=RecordsRevocation(remote.session, remote.clock))
    document = permit_pdf()
    sad = remote.authorize(digests=[_digest(document)], purpose=PURPOSE_DOCUMENT)
    with pytest.raises(SadMismatch):  # another document
        remote.service.sign_document(world.serials["good"], sad=sad,
                                     document=permit_pdf("Autre permis"),
                                     request=PadesRequest(level=Level.B_LT), pades=pades,
                                     client=CLIENT, actor=ACTOR)
    sad = remote.authorize(digests=[_digest(document)], purpose=PURPOSE_DOCUMENT)
    signed = remote.service.sign_document(
        world.serials["good"], sad=sad, document=document,
        request=PadesRequest(level=Level.B_LT, stamp=stamp_for()), pades=pades,
        client=CLIENT, actor=ACTOR, document_name="permis.pdf")
    db = make_nss_db(tmp_path / "nss", world.root)
    (report,) = pdfsig(signed.data, db, tmp_path)
    assert report["Signature Validation"] == "Signature is Valid."
    assert report["Certificate Validation"] == "Certificate is Trusted."
    verifier = Verifier(remote.clock, trust_roots=[world.root],
                        revocation=RecordsRevocation(remote.session, remote.clock))
    (sig,) = verifier.verify(signed.data).signatures
    assert sig.indication == "TOTAL-PASSED", sig.reasons
    assert sig.level == "PAdES-B-LT"
    assert sig.signer.cin == "AB123456"
    assert sig.timestamp_authority and "Time-Stamping Authority" in sig.timestamp_authority
    # The stamp's QR code leads to the signature's public record.
    assert signed.public_id and len(signed.public_id) == 22
    status = signature_status(remote.session, signed.public_id, remote.clock.now())
    assert status is not None and status.certificate_status == "valid"
    assert (status.name_ar, status.organisation_fr, status.signed_at, status.document_name) \
        == ("محمد العلوي", stamp_for().organisation_fr, signed.signed_at, "permis.pdf")
    assert status.serial == world.serials["good"]
    assert signature_status(remote.session, "A" * 22, remote.clock.now()) is None
    assert signature_status(remote.session, "../etc", remote.clock.now()) is None
    row = remote.session.scalars(select(CertificateRecord).where(
        CertificateRecord.serial == world.serials["good"])).one()
    row.status, row.suspended_at = "suspended", remote.clock.now()
    remote.session.flush()
    status = signature_status(remote.session, signed.public_id, remote.clock.now())
    assert status is not None and status.certificate_status == "suspended"
    assert status.status_since == remote.clock.now()


def _sad_row(remote: Fixture, sad_hash_of: str) -> SigningAuthorization:
    remote.session.expire_all()
    row = remote.session.scalars(select(SigningAuthorization).where(
        SigningAuthorization.sad_hash == hashlib.sha256(sad_hash_of.encode()).hexdigest())
    ).one()
    return row


@pytest.mark.parametrize("stamped", [False, True], ids=["invisible", "stamped"])
def test_broken_documents_are_refused_before_the_sad_is_touched(remote: Fixture,
                                                                stamped: bool) -> None:
    """A looping page tree (and every other malformed upload) is a 4xx with a reason, before
    the SAD is looked at: the SAD, authorised for the good document, still signs it."""
    serial = remote.world.serials["good"]
    document = permit_pdf()
    sad = remote.authorize(digests=[_digest(document)], purpose=PURPOSE_DOCUMENT)
    pades = PadesService(remote.clock, max_bytes=100_000)
    request = PadesRequest(level=Level.B_B, stamp=stamp_for() if stamped else None)
    for name, (data, reason) in broken().items():
        with pytest.raises(InvalidDocument) as caught:
            remote.service.sign_document(serial, sad=sad, document=data, request=request,
                                         pades=pades, client=CLIENT, actor=ACTOR)
        assert caught.value.extras["reason"] == reason, name
        assert caught.value.status == 422
    with pytest.raises(DocumentTooLarge):
        remote.service.sign_document(serial, sad=sad, document=document + b"\0" * 100_000,
                                     request=request, pades=pades, client=CLIENT, actor=ACTOR)
    row = _sad_row(remote, sad)
    assert row.status == "active" and row.pin_box is not None
    signed = remote.service.sign_document(serial, sad=sad, document=document, request=request,
                                          pades=pades, client=CLIENT, actor=ACTOR)
    assert signed.data.startswith(document[:8]) and len(signed.data) > len(document)
    with pytest.raises(SadInvalid):
        remote.service.sign_document(serial, sad=sad, document=document, request=request,
                                     pades=pades, client=CLIENT, actor=ACTOR)


@dataclass
class FailingTokens:
    """The real token library, made to fail the next ``failures`` key look-ups the way an
    unreachable HSM does (the seam is ``SigningTokens``)."""

    library: TokenLibrary
    failures: int = 0

    def private_key(self, label: str, pin: str, **kwargs: object) -> object:
        if self.failures > 0:
            self.failures -= 1
            raise ModuleUnavailable("the PKCS#11 module does not answer")
        return self.library.private_key(label, pin, **kwargs)  # type: ignore[arg-type]

    def private_key_soon(self, label: str, pin: str, **kwargs: object) -> object:
        if self.failures > 0:
            self.failures -= 1
            raise ModuleUnavailable("the PKCS#11 module does not answer")
        return self.library.private_key_soon(label, pin, **kwargs)  # type: ignore[arg-type]


def test_a_signature_that_fails_leaves_the_sad_usable(remote: Fixture) -> None:
    tokens = FailingTokens(remote.world.library)
    remote.service.tokens = tokens
    serial = remote.world.serials["good"]
    digests = [_digest(b"token trouble")]
    sad = remote.authorize(digests=digests)
    tokens.failures = 1
    with pytest.raises(ModuleUnavailable):
        remote.service.sign_hashes(serial, sad=sad, digests=digests, hash_algorithm="sha256",
                                   sign_algorithm=None, client=CLIENT, actor=ACTOR)
    row = _sad_row(remote, sad)
    assert row.status == "active" and row.pin_box is not None
    (signature,) = remote.service.sign_hashes(
        serial, sad=sad, digests=digests, hash_algorithm="sha256", sign_algorithm=None,
        client=CLIENT, actor=ACTOR)
    public = remote.service.credential(remote.session, serial).certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digests[0], ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    with pytest.raises(SadInvalid):
        remote.service.sign_hashes(serial, sad=sad, digests=digests, hash_algorithm="sha256",
                                   sign_algorithm=None, client=CLIENT, actor=ACTOR)
    # The document path too: the SAD survives a failed signature, then signs once.
    document = permit_pdf("Permis après une panne")
    sad = remote.authorize(digests=[_digest(document)], purpose=PURPOSE_DOCUMENT)
    pades = PadesService(remote.clock)
    tokens.failures = 1
    with pytest.raises(ModuleUnavailable):
        remote.service.sign_document(serial, sad=sad, document=document,
                                     request=PadesRequest(level=Level.B_B), pades=pades,
                                     client=CLIENT, actor=ACTOR)
    assert _sad_row(remote, sad).status == "active"
    remote.service.sign_document(serial, sad=sad, document=document,
                                 request=PadesRequest(level=Level.B_B), pades=pades,
                                 client=CLIENT, actor=ACTOR)
    assert _sad_row(remote, sad).status == "used"
    events = [e.action for e in remote.session.scalars(
        select(AuditEvent).where(AuditEvent.object_id == serial).order_by(AuditEvent.seq))]
    assert events[-2:] == ["signing.authorization.used", "signing.document.signed"]


def test_a_pin_changed_since_authorisation_spends_the_sad(remote: Fixture) -> None:
    """The PIN sealed in the SAD no longer opens the token: retrying would only burn PIN
    attempts towards the lockout, so that SAD is spent (and audited), not kept."""
    world = remote.world
    label, pin, issued = _own_holder(remote, HolderIdentity(
        cin="Z887766", given_name="Salma", surname="Bennani",
        title="Présidente", organization="Commune d'Azrou"))
    digests = [_digest(b"signed after a PIN change")]
    sad = remote.authorize(serial=issued.serial, pin=pin, digests=digests)
    world.library.change_pin(label, pin, "864209" if pin != "864209" else "975310")
    with pytest.raises(PinIncorrect):
        remote.service.sign_hashes(issued.serial, sad=sad, digests=digests,
                                   hash_algorithm="sha256", sign_algorithm=None,
                                   client=CLIENT, actor=ACTOR)
    row = _sad_row(remote, sad)
    assert row.status == "used" and row.pin_box is None
    refused = remote.session.scalars(select(AuditEvent).where(
        AuditEvent.object_id == issued.serial).order_by(AuditEvent.seq.desc())).first()
    assert refused is not None and refused.action == "signing.authorization.refused"
    with pytest.raises(SadInvalid):
        remote.service.sign_hashes(issued.serial, sad=sad, digests=digests,
                                   hash_algorithm="sha256", sign_algorithm=None,
                                   client=CLIENT, actor=ACTOR)


def test_a_pin_changed_between_two_documents_spends_the_second_sad(remote: Fixture) -> None:
    """A document signature gets its key before the token has checked the PIN (the check
    runs while the PDF is prepared): a PIN the token no longer takes still stops it before
    any signature, spends the SAD and is audited, as for hashes."""
    world = remote.world
    label, pin, issued = _own_holder(remote, HolderIdentity(
        cin="Z776655", given_name="Nadia", surname="Alaoui",
        title="Présidente", organization="Commune de Sefrou"))
    pades = PadesService(remote.clock)
    document = permit_pdf()
    request = PadesRequest(level=Level.B_B, stamp=stamp_for())
    sad = remote.authorize(serial=issued.serial, pin=pin, digests=[_digest(document)],
                           purpose=PURPOSE_DOCUMENT)
    first = remote.service.sign_document(issued.serial, sad=sad, document=document,
                                         request=request, pades=pades, client=CLIENT,
                                         actor=ACTOR)
    assert first.data.startswith(b"%PDF")
    sad = remote.authorize(serial=issued.serial, pin=pin, digests=[_digest(document)],
                           purpose=PURPOSE_DOCUMENT)
    world.library.change_pin(label, pin, "864209" if pin != "864209" else "975310")
    with pytest.raises(PinIncorrect):
        remote.service.sign_document(issued.serial, sad=sad, document=document,
                                     request=request, pades=pades, client=CLIENT,
                                     actor=ACTOR)
    row = _sad_row(remote, sad)
    assert row.status == "used" and row.pin_box is None
    refused = remote.session.scalars(select(AuditEvent).where(
        AuditEvent.object_id == issued.serial).order_by(AuditEvent.seq.desc())).first()
    assert refused is not None and refused.action == "signing.authorization.refused"


def test_indirect_kids_count_and_form_are_read_through() -> None:
    """The checks dereference what may be indirect (/Kids, /Count, /AcroForm, /Fields), as
    pyHanko's own incremental updates write them: such a document is accepted."""
    document = raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R /AcroForm 6 0 R >>",
        b"<< /Type /Pages /Kids 4 0 R /Count 5 0 R >>", PAGE, b"[3 0 R]", b"1",
        b"<< /Fields 7 0 R >>", b"[8 0 R]", b"<< /T (Signature1) /FT /Sig >>"])
    checked = PadesService(FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))).check(
        document, PadesRequest(level=Level.B_B, stamp=stamp_for()))
    assert checked.pages == 1 and checked.page == 0
    assert checked.field_name != "Signature1"  # taken by the existing field
