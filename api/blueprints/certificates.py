"""Certificate lifecycle for operators: list, read, suspend, release, revoke, renew.

Every change goes through :mod:`pki.lifecycle` / :mod:`pki.issuance`, which audit it,
re-sign the certificate's OCSP response and publish a CRL in the same transaction. Holders
and contacts may read the certificates of their own scope (matched through the holder's
CIN); only operators change them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from flask import Response
from sqlalchemy.orm import Session

from api.policy import Scope
from api.routing import ApiBlueprint, Call
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.adapters import revoke_certificate, revoke_certificates
from api.wiring.flaskapp import load_authority_first, wiring
from core.clock import Clock
from delivery import holders
from delivery.validation import CIN_SCHEMA_PATTERN
from pki import issuance, lifecycle, queries
from pki.authority import Authority
from pki.lifecycle import CertificateStatus
from pki.reasons import REVOCATION_REASONS

bp = ApiBlueprint("certificates", __name__, url_prefix="/v1/certificates",
                  tag="Certificates",
                  description="The certificate registry and its lifecycle (operators).")

SERIAL = r"^(0x)?[0-9A-Fa-f:]{1,100}$"
CertStatus = Literal["prepared", "issued", "suspended", "revoked", "abandoned"]
CertProfile = Literal["holder", "ocsp", "tsa"]


@dataclass(frozen=True)
class CertificateOut:
    id: int
    serial: str
    profile: CertProfile
    status: CertStatus
    subject: str
    cin: str | None
    organization: str | None
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    suspended_at: datetime | None
    fingerprint: str | None
    replaces_id: int | None
    valid_now: bool


@dataclass(frozen=True)
class CertificateQuery(PageQuery):
    status: CertStatus | None = None
    profile: CertProfile | None = None
    cin: str | None = field(default=None, metadata=rule(pattern=CIN_SCHEMA_PATTERN))


@dataclass(frozen=True)
class RevokeIn:
    reason: str = field(metadata=rule(
        min_length=1, max_length=50,
        description="RFC 5280 reason: " + ", ".join(REVOCATION_REASONS)
                    + " (affiliationChanged after an election)."))


@dataclass(frozen=True)
class BulkRevokeIn:
    serials: list[str] = field(metadata=rule(
        min_items=1, max_items=lifecycle.BULK_LIMIT,
        description="Serials (hex, as listed); duplicates count once."))
    reason: str = field(metadata=rule(
        min_length=1, max_length=50,
        description="RFC 5280 reason for all of them: " + ", ".join(REVOCATION_REASONS)))
    dry_run: bool = field(default=False, metadata=rule(
        description="Check and report what would be done; change nothing."))


@dataclass(frozen=True)
class OtherReasonOut:
    serial: str
    reason: str


@dataclass(frozen=True)
class BulkRevocationOut:
    reason: str
    dry_run: bool
    total: int
    revoked: list[str]
    skipped: list[str]
    other_reason: list[OtherReasonOut]
    crl_number: int | None


@dataclass(frozen=True)
class NoteIn:
    note: str = field(default="", metadata=rule(max_length=500))


def certificate_out(c: lifecycle.CertificateStatus, now: datetime) -> CertificateOut:
    return CertificateOut(c.id, c.serial, c.profile, c.status,  # type: ignore[arg-type]
                          c.subject, c.cin, c.organization, c.not_before, c.not_after,
                          c.revoked_at, c.revocation_reason, c.suspended_at, c.fingerprint,
                          c.replaces_id, c.valid_at(now))


def _scope(session: Session, c: lifecycle.CertificateStatus) -> Scope:
    holder = holders.find_by_cin(session, c.cin) if c.cin else None
    if holder is None:
        return Scope()
    return Scope(province_code=holder.province_code, holder_id=holder.id)


def _load(call: Call, serial: str) -> lifecycle.CertificateStatus:
    found = lifecycle.certificate_status(call.session, serial)
    call.authorize(_scope(call.session, found))
    return found


@bp.operation("GET", "", action="certificates.list", query=CertificateQuery,
              response=page_of(CertificateOut), summary="The certificate registry")
def list_certificates(call: Call, query: CertificateQuery) -> object:
    found = queries.certificate_page(call.session, status=query.status, profile=query.profile,
                                     cin=query.cin, limit=query.limit, offset=query.offset)
    now = call.clock.now()
    return make_page(CertificateOut, [certificate_out(c, now) for c in found.items],
                     found.total, query.limit, query.offset)


@bp.operation("GET", "/<serial>", action="certificates.read", response=CertificateOut,
              summary="One certificate's status")
def get_certificate(call: Call, serial: str) -> CertificateOut:
    return certificate_out(_load(call, serial), call.clock.now())


@bp.operation("GET", "/<serial>/der", action="certificates.read",
              produces={"application/pkix-cert": {"type": "string", "format": "binary"}},
              summary="The certificate itself (DER)")
def certificate_der(call: Call, serial: str) -> Response:
    _load(call, serial)
    return Response(lifecycle.certificate_der(call.session, serial),
                    mimetype="application/pkix-cert")


def _change(call: Call, serial: str,
            change: Callable[[Session, Clock, Authority], CertificateStatus]) -> CertificateOut:
    """The shape of suspend, release and revoke: load (and authorise), change the status
    with the CA (signing the new OCSP answer and CRL), serialise."""
    _load(call, serial)
    return certificate_out(change(call.session, call.clock, wiring().authority()),
                           call.clock.now())


@bp.operation("POST", "/<serial>/suspend", action="certificates.manage", body=NoteIn,
              response=CertificateOut, errors=(409, 503), prepare=load_authority_first,
              summary="Suspend (certificateHold); may be released later")
def suspend(call: Call, serial: str, body: NoteIn) -> CertificateOut:
    return _change(call, serial, lambda session, clock, authority: lifecycle.suspend(
        session, clock, authority, serial, actor=call.actor, note=body.note))


@bp.operation("POST", "/<serial>/release", action="certificates.manage", body=NoteIn,
              response=CertificateOut, errors=(409, 503), prepare=load_authority_first,
              summary="Lift a suspension")
def release(call: Call, serial: str, body: NoteIn) -> CertificateOut:
    return _change(call, serial, lambda session, clock, authority: lifecycle.release(
        session, clock, authority, serial, actor=call.actor, note=body.note))


@bp.operation("POST", "/<serial>/revoke", action="certificates.manage", body=RevokeIn,
              response=CertificateOut, errors=(409, 503), prepare=load_authority_first,
              summary="Revoke for good, with an RFC 5280 reason")
def revoke(call: Call, serial: str, body: RevokeIn) -> CertificateOut:
    return _change(call, serial, lambda session, clock, authority: revoke_certificate(
        session, clock, authority, serial, body.reason, actor=call.actor))


@bp.operation("POST", "/revoke-bulk", action="certificates.bulk_revoke", body=BulkRevokeIn,
              response=BulkRevocationOut, errors=(409, 503), idempotency="optional",
              prepare=load_authority_first,
              summary="Revoke many certificates at once (after an election)",
              description="One operation: every serial is checked first (any unknown or "
                          "unrevocable serial refuses the whole list, 422, nothing changed); "
                          "each certificate's OCSP answer is re-signed and ONE CRL is "
                          "published at the end. Those already revoked with the same reason "
                          "are skipped, so the same list may be sent again. dry_run lists "
                          "what would be done.")
def revoke_bulk(call: Call, body: BulkRevokeIn) -> BulkRevocationOut:
    for serial in body.serials:
        if len(serial) > 100:
            from pki.errors import BulkRevocationRefused

            raise BulkRevocationRefused("a serial is at most 100 characters",
                                        serial=serial[:100])
    done = revoke_certificates(call.session, call.clock, wiring().authority(),
                               body.serials, body.reason, actor=call.actor,
                               dry_run=body.dry_run)
    return BulkRevocationOut(done.reason, done.dry_run, done.total, done.revoked,
                             done.skipped,
                             [OtherReasonOut(s, r) for s, r in done.other_reason],
                             done.crl_number)


@bp.operation("POST", "/<serial>/renew", action="certificates.manage",
              response=CertificateOut, status=201, errors=(409, 503),
              idempotency="optional", prepare=load_authority_first,
              summary="Certify the same key again and write the new certificate to the "
                      "token (the old certificate stays valid; renewing through "
                      "/v1/requests/{id}/renew also carries the credential over)")
def renew(call: Call, serial: str) -> CertificateOut:
    _load(call, serial)
    issued = issuance.renew(call.session, call.clock, wiring().authority(), wiring().tokens(),
                            serial, actor=call.actor)
    return certificate_out(lifecycle.certificate_status(call.session, issued.serial),
                           call.clock.now())
