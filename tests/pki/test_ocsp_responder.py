"""The OCSP responder's first synchronisation and its live answers (issue 10, points 9 and
10): no ``unauthorized`` while a fresh responder loads, no answer that ends before it
begins or is signed by an expired responder certificate."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock
from core.db import make_session_factory
from pki import lifecycle, ocsp
from pki.authority import Authority, sha1
from pki.models import CertificateRecord, OcspRecord
from pki.signer import public_key_sha1
from tests.pki.conftest import ACTOR, World, same_connection

pytestmark = pytest.mark.hsm


class FirstSessionWaits:
    """A session factory whose first session is handed out only once the test says so:
    the responder's first synchronisation stays under way meanwhile."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.entered = threading.Event()
        self.release = threading.Event()
        self._calls = 0
        self._guard = threading.Lock()

    def __call__(self) -> Session:
        with self._guard:
            self._calls += 1
            first = self._calls == 1
        if first:
            self.entered.set()
            if not self.release.wait(60):
                raise RuntimeError("the test never released the first synchronisation")
        return self.factory()


def test_requests_wait_for_the_first_synchronisation(world: World) -> None:
    # No session of the test is open (SQLite: the responder's sessions need the lock).
    sessions = FirstSessionWaits(make_session_factory(world.engine))
    responder = ocsp.OcspResponder(sessions, world.clock)  # type: ignore[arg-type]
    request = ocsp.canonical_request(sha1(world.issuing.subject.public_bytes()),
                                     public_key_sha1(world.issuing),
                                     int(world.serials["good"], 16))
    answers: list[ocsp.OcspAnswer] = []
    done = threading.Lock()

    def ask() -> None:
        answer = responder.respond(request)
        with done:
            answers.append(answer)

    loader = threading.Thread(target=ask)
    loader.start()
    assert sessions.entered.wait(30)  # the first synchronisation is under way
    others = [threading.Thread(target=ask) for _ in range(6)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(0.2)  # time to answer, if they did not wait
    with done:
        assert answers == []  # nobody answered from an empty state
    sessions.release.set()
    for thread in [loader, *others]:
        thread.join(30)
    assert len(answers) == 7
    for answer in answers:
        assert answer.der != ocsp.UNAUTHORIZED
        parsed = x509_ocsp.load_der_ocsp_response(answer.der)
        assert parsed.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
        assert parsed.certificate_status == x509_ocsp.OCSPCertStatus.GOOD


def _live(responder: ocsp.OcspResponder, authority: Authority, serial: int) -> bytes:
    return responder.respond(ocsp.canonical_request(authority.name_hash, authority.key_hash,
                                                    serial)).der


def test_no_answer_outlives_or_follows_the_responder_certificate(
        world: World, pki_session: Session, authority: Authority) -> None:
    signer = authority.ocsp_signer
    assert signer is not None
    end = signer.certificate.not_valid_after_utc
    clock = FrozenClock(end - timedelta(hours=1))
    responder = ocsp.OcspResponder(same_connection(pki_session), clock,
                                   authority=lambda: authority)
    # An hour before the end: signed live, nextUpdate capped at the certificate's end.
    unknown = 0x5EED0001
    before = x509_ocsp.load_der_ocsp_response(_live(responder, authority, unknown))
    assert before.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert before.certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN
    assert before.next_update_utc is not None
    assert before.this_update_utc < before.next_update_utc <= end
    # Past the end: nothing signed, nothing cached served, tryLater.
    clock.set(end + timedelta(minutes=1))
    for serial in (unknown, 0x5EED0002, int(world.serials["good"], 16)):
        assert _live(responder, authority, serial) == ocsp.TRY_LATER
    # Pre-signing refuses too (the revocation itself goes on; the CRL says it).
    row = pki_session.scalars(select(CertificateRecord).where(
        CertificateRecord.serial == world.serials["good"])).one()
    stored = pki_session.scalars(select(OcspRecord).where(
        OcspRecord.serial == row.serial)).one()
    before_der = stored.der
    assert ocsp.presign(pki_session, clock, authority, row) is None
    assert stored.der == before_der
    assert ocsp.presign_due(pki_session, clock, authority, force=True) == 0
    lifecycle.suspend(pki_session, clock, authority, row.serial, actor=ACTOR)
    assert stored.der == before_der


def test_answers_never_end_before_they_begin(world: World, pki_session: Session,
                                             authority: Authority) -> None:
    """Whatever the hour, every successful answer has thisUpdate < nextUpdate."""
    signer = authority.ocsp_signer
    assert signer is not None
    end = signer.certificate.not_valid_after_utc
    clock = FrozenClock(world.clock.now())
    responder: Any = ocsp.OcspResponder(same_connection(pki_session), clock,
                                        authority=lambda: authority)
    for moment in (world.clock.now(), end - timedelta(seconds=1), end,
                   end + timedelta(days=3)):
        clock.set(moment)
        responder.invalidate()
        der = _live(responder, authority, 0x5EED0003 + int(moment.timestamp()))
        parsed = x509_ocsp.load_der_ocsp_response(der)
        if parsed.response_status != x509_ocsp.OCSPResponseStatus.SUCCESSFUL:
            assert der == ocsp.TRY_LATER
            continue
        assert parsed.next_update_utc is not None
        assert parsed.this_update_utc < parsed.next_update_utc
