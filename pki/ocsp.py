"""OCSP (RFC 6960, with RFC 5019's lightweight profile): pre-signed responses.

Every change of a certificate's status re-signs its response (:func:`presign`), and
:func:`presign_due` refreshes those that passed half their validity (run on schedule). The
responses live in ``pki_ocsp_response``; :class:`OcspResponder` serves them from memory,
synchronised with the table, so answering a known certificate costs no signature. It signs
live only for what cannot be pre-signed: a serial we never issued (``unknown``) and CertIDs
hashed with something else than SHA-1; those answers are cached too. A request about another
CA's certificate gets the unsigned ``unauthorized`` answer.

Responses are built with asn1crypto rather than cryptography's builder because producedAt
must come from the injected clock; they are signed through :class:`~pki.signer.Signer`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock, as_utc
from pki import reasons
from pki.authority import Authority, sha1
from pki.models import (
    STATUS_ISSUED,
    STATUS_REVOKED,
    STATUS_SUSPENDED,
    AuthorityRecord,
    CertificateRecord,
    OcspRecord,
)
from pki.signer import Signer, public_key_bits, public_key_sha1

_log = logging.getLogger(__name__)

GOOD = "good"
REVOKED = "revoked"
UNKNOWN = "unknown"

_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
           "sha512": hashlib.sha512}


def _error(status: str) -> bytes:
    return asn1_ocsp.OCSPResponse({"response_status": status}).dump()


#: Unsigned error responses (RFC 6960 §2.3), built once.
MALFORMED = _error("malformed_request")
INTERNAL_ERROR = _error("internal_error")
TRY_LATER = _error("try_later")
UNAUTHORIZED = _error("unauthorized")


@dataclass(frozen=True)
class Status:
    """What a response says about one certificate."""

    status: str  # good | revoked | unknown
    revoked_at: datetime | None = None
    reason: str | None = None  # RFC 5280 name


def status_of(row: CertificateRecord | None) -> Status:
    if row is None or row.status not in (STATUS_ISSUED, STATUS_SUSPENDED, STATUS_REVOKED):
        return Status(UNKNOWN)
    if row.status == STATUS_SUSPENDED:
        return Status(REVOKED, as_utc(row.suspended_at or row.updated_at), reasons.HOLD)
    if row.status == STATUS_REVOKED:
        return Status(REVOKED, as_utc(row.revoked_at or row.updated_at),
                      row.revocation_reason)
    return Status(GOOD)


def _seconds(value: datetime) -> datetime:
    return as_utc(value).replace(microsecond=0)


def build_response(signer: Signer, *, issuer_name_hash: bytes, issuer_key_hash: bytes,
                   serial: int, status: Status, this_update: datetime,
                   next_update: datetime, produced_at: datetime,
                   hash_algorithm: str = "sha1", nonce: bytes | None = None) -> bytes:
    """One signed OCSPResponse (DER) about one certificate, responder identified by key
    hash, the responder certificate included. One signature on ``signer``'s token."""
    if status.status == REVOKED:
        info: dict[str, object] = {"revocation_time": _seconds(status.revoked_at
                                                               or produced_at)}
        if status.reason and status.reason != "unspecified":
            info["revocation_reason"] = reasons.asn1_name(status.reason)
        cert_status = asn1_ocsp.CertStatus(name="revoked", value=asn1_ocsp.RevokedInfo(info))
    else:
        cert_status = asn1_ocsp.CertStatus(name=status.status, value=asn1_core.Null())
    single = asn1_ocsp.SingleResponse({
        "cert_id": asn1_ocsp.CertId({
            "hash_algorithm": asn1_algos.DigestAlgorithm({"algorithm": hash_algorithm,
                                                          "parameters": asn1_core.Null()}),
            "issuer_name_hash": issuer_name_hash,
            "issuer_key_hash": issuer_key_hash,
            "serial_number": serial,
        }),
        "cert_status": cert_status,
        "this_update": _seconds(this_update),
        "next_update": _seconds(next_update),
    })
    data: dict[str, object] = {
        "responder_id": asn1_ocsp.ResponderId(name="by_key", value=signer.key_hash),
        "produced_at": _seconds(produced_at),
        "responses": [single],
    }
    if nonce is not None:
        data["response_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    tbs = asn1_ocsp.ResponseData(data)
    signature = signer.sign(tbs.dump())
    basic = asn1_ocsp.BasicOCSPResponse({
        "tbs_response_data": tbs,
        "signature_algorithm": signer.signature_algorithm,
        "signature": signature,
        "certs": [signer.asn1_chain()[0]],
    })
    return asn1_ocsp.OCSPResponse({
        "response_status": "successful",
        "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
    }).dump()


def _validity(authority: Authority, now: datetime) -> tuple[datetime, datetime] | None:
    """thisUpdate and nextUpdate of an answer signed now: nextUpdate capped at the end of
    the responder certificate. None when the responder certificate is not valid now (an
    answer would end before it begins, or be signed by an expired certificate)."""
    this_update = _seconds(now)
    next_update = this_update + timedelta(hours=authority.profile.ocsp_response_validity_hours)
    if authority.ocsp_signer is not None:
        certificate = authority.ocsp_signer.certificate
        if not certificate.not_valid_before_utc <= as_utc(now) \
                < certificate.not_valid_after_utc:
            return None
        next_update = min(next_update, _seconds(certificate.not_valid_after_utc))
    if next_update <= this_update:
        return None
    return this_update, next_update


def presign(session: Session, clock: Clock, authority: Authority,
            row: CertificateRecord) -> OcspRecord | None:
    """(Re)sign and store the response for ``row``'s current status. Needs the responder.

    Signs nothing and returns None while the responder certificate is not valid (expired):
    such an answer would end before it begins. The stored answer, which ended with that
    certificate, is no longer served; the CRL still says what changed."""
    signer = authority.ocsp_signer
    if signer is None:
        from pki.errors import AuthorityUnavailable

        raise AuthorityUnavailable("the OCSP responder key is not loaded")
    now = as_utc(clock.now())
    validity = _validity(authority, now)
    if validity is None:
        _log.warning("OCSP responder certificate of authority %s is not valid now: "
                     "nothing pre-signed", authority.id)
        return None
    this_update, next_update = validity
    status = status_of(row)
    der = build_response(signer, issuer_name_hash=authority.name_hash,
                         issuer_key_hash=authority.key_hash, serial=int(row.serial, 16),
                         status=status, this_update=this_update, next_update=next_update,
                         produced_at=now)
    stored = session.scalars(select(OcspRecord).where(
        OcspRecord.authority_id == row.authority_id, OcspRecord.serial == row.serial)
    ).one_or_none()
    if stored is None:
        stored = OcspRecord(authority_id=row.authority_id, serial=row.serial)
        session.add(stored)
    stored.cert_status = status.status
    stored.this_update = this_update
    stored.next_update = next_update
    stored.updated_at = now
    stored.der = der
    session.flush()
    return stored


def presign_due(session: Session, clock: Clock, authority: Authority, *,
                force: bool = False, batch: int = 500) -> int:
    """Re-sign the responses past half their validity (all of them with ``force``), and sign
    any missing one. Returns how many were signed."""
    now = as_utc(clock.now())
    half = timedelta(hours=authority.profile.ocsp_response_validity_hours) / 2
    rows = session.scalars(
        select(CertificateRecord)
        .where(CertificateRecord.authority_id == authority.id,
               CertificateRecord.status.in_((STATUS_ISSUED, STATUS_SUSPENDED, STATUS_REVOKED)),
               CertificateRecord.not_after > now)
        .order_by(CertificateRecord.id))
    existing = {serial: as_utc(updated) for serial, updated in session.execute(
        select(OcspRecord.serial, OcspRecord.this_update)
        .where(OcspRecord.authority_id == authority.id))}
    signed = 0
    for row in rows:
        seen = existing.get(row.serial)
        if force or seen is None or now - seen >= half:
            if presign(session, clock, authority, row) is None:
                break  # the responder certificate is not valid: none would be signed
            signed += 1
            if signed % batch == 0:
                session.flush()
    return signed


# ------------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class ParsedRequest:
    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    nonce: bytes | None


def parse_request(der: bytes) -> ParsedRequest | None:
    """The single request of an OCSPRequest, or None if it is malformed or asks about
    several certificates (RFC 5019 clients send exactly one)."""
    try:
        request = asn1_ocsp.OCSPRequest.load(der, strict=True)
        tbs = request["tbs_request"]
        items = tbs["request_list"]
        if len(items) != 1:
            return None
        cert_id = items[0]["req_cert"]
        nonce = None
        for ext in tbs["request_extensions"] or ():
            if ext["extn_id"].native == "nonce":
                nonce = ext["extn_value"].parsed.native
        return ParsedRequest(cert_id["hash_algorithm"]["algorithm"].native,
                             cert_id["issuer_name_hash"].native,
                             cert_id["issuer_key_hash"].native,
                             cert_id["serial_number"].native, nonce)
    except (ValueError, TypeError, KeyError):
        return None


def canonical_request(issuer_name_hash: bytes, issuer_key_hash: bytes, serial: int) -> bytes:
    """The exact request an RFC 5019 client sends for one certificate (SHA-1 CertID with
    NULL parameters, no nonce, no extensions)."""
    return asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha1", "parameters": asn1_core.Null()},
        "issuer_name_hash": issuer_name_hash,
        "issuer_key_hash": issuer_key_hash,
        "serial_number": serial,
    }}]}}).dump()


def get_path(request_der: bytes) -> str:
    """The RFC 5019 GET path component: base64 of the DER, URL-encoded."""
    return urllib.parse.quote(base64.b64encode(request_der).decode("ascii"), safe="")


# ------------------------------------------------------------------------------- responder

@dataclass(frozen=True)
class OcspAnswer:
    """What the HTTP layer sends: the DER and, for signed answers, RFC 5019 cache facts."""

    der: bytes
    this_update: datetime | None = None
    next_update: datetime | None = None
    etag: str | None = None

    @property
    def signed(self) -> bool:
        return self.next_update is not None

    def headers(self, now: datetime) -> dict[str, str]:
        headers = {"Content-Type": "application/ocsp-response"}
        if self.next_update is None or self.this_update is None:
            headers["Cache-Control"] = "no-store"
            return headers
        max_age = max(int((self.next_update - now).total_seconds()), 0)
        headers.update({
            "Last-Modified": format_datetime(self.this_update, usegmt=True),
            "Expires": format_datetime(self.next_update, usegmt=True),
            "ETag": f'"{self.etag}"',
            "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
        })
        return headers


def _answer(der: bytes, this_update: datetime, next_update: datetime) -> OcspAnswer:
    return OcspAnswer(der, as_utc(this_update), as_utc(next_update),
                      hashlib.sha1(der, usedforsecurity=False).hexdigest())


@dataclass(frozen=True)
class _Issuer:
    authority_id: int
    name_hashes: dict[str, bytes]  # hash algorithm -> issuerNameHash
    key_hashes: dict[str, bytes]


class OcspResponder:
    """Answers OCSP requests from pre-signed responses kept in memory.

    Thread-safe. The in-memory copy follows ``pki_ocsp_response``: rows updated since the
    last look are re-read at most every ``sync_seconds`` (with an overlap, so a transaction
    that commits late is not missed) and the whole table every ``full_sync_seconds``. Until
    the first synchronisation has completed every request waits for it (an empty state
    would answer ``unauthorized``); later ones run on one thread while the others serve the
    previous state. ``authority`` (a callable, called lazily) supplies the responder key for
    what must be signed live; without it such requests get ``unauthorized``, and once the
    responder certificate has expired they get ``tryLater``.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, *,
                 authority: Callable[[], Authority | None] | None = None,
                 sync_seconds: float = 1.0, full_sync_seconds: float = 300.0,
                 overlap: timedelta = timedelta(seconds=30), live_cache_size: int = 10_000,
                 request_cache_size: int = 100_000) -> None:
        self._sessions = sessions
        self._clock = clock
        self._authority = authority
        self._sync_seconds = sync_seconds
        self._full_sync_seconds = full_sync_seconds
        self._overlap = overlap
        self._issuers: dict[bytes, _Issuer] = {}  # SHA-1 issuerKeyHash -> issuer
        self._issuers_any: dict[tuple[str, bytes], _Issuer] = {}
        self._entries: dict[tuple[int, int], OcspAnswer] = {}
        self._by_request: dict[bytes, tuple[int, int]] = {}
        self._request_cache_size = request_cache_size
        self._live: OrderedDict[tuple[str, bytes, int], OcspAnswer] = OrderedDict()
        self._live_cache_size = live_cache_size
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set once the first synchronisation completed
        self._sign_lock = threading.Lock()
        self._last_sync = float("-inf")
        self._last_full = float("-inf")
        self._seen: datetime | None = None

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- synchronisation

    def _monotonic(self) -> float:
        return time.monotonic()

    def sync(self, *, full: bool = False) -> int:
        """Re-read changed rows now; returns how many were loaded."""
        with self._lock:
            return self._sync_locked(full)

    def _sync_locked(self, full: bool) -> int:
        now = self._monotonic()
        full = full or self._seen is None or now - self._last_full >= self._full_sync_seconds
        with self._sessions() as session:
            self._load_issuers(session)
            query = select(OcspRecord.authority_id, OcspRecord.serial, OcspRecord.der,
                           OcspRecord.this_update, OcspRecord.next_update,
                           OcspRecord.updated_at)
            if not full and self._seen is not None:
                query = query.where(OcspRecord.updated_at >= self._seen - self._overlap)
            rows = session.execute(query).all()
        entries = {} if full else dict(self._entries)
        seen = self._seen
        for authority_id, serial, der, this_update, next_update, updated_at in rows:
            entries[(authority_id, int(serial, 16))] = _answer(der, this_update,
                                                               next_update)
            updated = as_utc(updated_at)
            seen = updated if seen is None or updated > seen else seen
        self._entries = entries
        self._seen = seen
        self._last_sync = now
        if full:
            self._last_full = now
            self._by_request = {}
            self._live.clear()
        self._ready.set()
        return len(rows)

    def _load_issuers(self, session: Session) -> None:
        issuers: dict[bytes, _Issuer] = {}
        any_hash: dict[tuple[str, bytes], _Issuer] = {}
        for record in session.scalars(select(AuthorityRecord).where(
                AuthorityRecord.kind == "issuing")):
            cert = x509.load_der_x509_certificate(record.der)
            bits = public_key_bits(cert)
            subject = cert.subject.public_bytes()
            issuer = _Issuer(record.id,
                             {n: f(subject).digest() for n, f in _HASHES.items()},
                             {n: f(bits).digest() for n, f in _HASHES.items()})
            issuers[issuer.key_hashes["sha1"]] = issuer
            for name, digest in issuer.key_hashes.items():
                any_hash[(name, digest)] = issuer
        self._issuers = issuers
        self._issuers_any = any_hash

    def _maybe_sync(self) -> None:
        if not self._ready.is_set():
            # Nothing loaded yet: every request waits for the first synchronisation (one
            # thread reads, the others find it done when they get the lock).
            with self._lock:
                if not self._ready.is_set():
                    self._sync_locked(True)
            return
        if self._monotonic() - self._last_sync >= self._sync_seconds:
            if self._lock.locked():
                return  # another thread is syncing; serve the previous state meanwhile
            self.sync()

    def invalidate(self) -> None:
        """Forget the sync times: the next request re-reads changes (in-process writers)."""
        self._last_sync = float("-inf")

    # -- answering

    def respond(self, request_der: bytes) -> OcspAnswer:
        """The answer to one DER OCSPRequest. Never raises for bad input."""
        self._maybe_sync()
        now = as_utc(self._clock.now())
        key = self._by_request.get(request_der)
        if key is not None:
            answer = self._entries.get(key)
            if answer is not None and answer.next_update is not None \
                    and answer.next_update > now:
                return answer
        parsed = parse_request(request_der)
        if parsed is None:
            return OcspAnswer(MALFORMED)
        if parsed.hash_algorithm == "sha1":
            issuer = self._issuers.get(parsed.issuer_key_hash)
        else:
            issuer = self._issuers_any.get((parsed.hash_algorithm, parsed.issuer_key_hash))
        if issuer is None or issuer.name_hashes.get(parsed.hash_algorithm) != \
                parsed.issuer_name_hash:
            return OcspAnswer(UNAUTHORIZED)
        if parsed.hash_algorithm == "sha1":
            key = (issuer.authority_id, parsed.serial)
            answer = self._entries.get(key)
            if answer is not None and answer.next_update is not None \
                    and answer.next_update > now:
                if len(self._by_request) >= self._request_cache_size:
                    self._by_request = {}
                self._by_request[request_der] = key
                return answer
        return self._live_answer(issuer, parsed, now)

    def _live_answer(self, issuer: _Issuer, parsed: ParsedRequest, now: datetime
                     ) -> OcspAnswer:
        cache_key = (parsed.hash_algorithm, parsed.issuer_key_hash, parsed.serial)
        cached = self._live.get(cache_key)
        if cached is not None and cached.next_update is not None \
                and cached.next_update > now:
            return cached
        authority = self._authority() if self._authority is not None else None
        if authority is None or authority.ocsp_signer is None \
                or authority.id != issuer.authority_id:
            return OcspAnswer(UNAUTHORIZED)
        with self._sessions() as session:
            row = session.scalars(select(CertificateRecord).where(
                CertificateRecord.authority_id == issuer.authority_id,
                CertificateRecord.serial == format(parsed.serial, "x"))).one_or_none()
            status = status_of(row)
        validity = _validity(authority, now)
        if validity is None:  # the responder certificate expired: sign nothing
            return OcspAnswer(TRY_LATER)
        this_update, next_update = validity
        with self._sign_lock:
            der = build_response(authority.ocsp_signer,
                                 issuer_name_hash=parsed.issuer_name_hash,
                                 issuer_key_hash=parsed.issuer_key_hash,
                                 serial=parsed.serial, status=status,
                                 this_update=this_update, next_update=next_update,
                                 produced_at=now, hash_algorithm=parsed.hash_algorithm)
        answer = _answer(der, this_update, next_update)
        self._live[cache_key] = answer
        while len(self._live) > self._live_cache_size:
            self._live.popitem(last=False)
        return answer

    def respond_get(self, encoded: str) -> OcspAnswer:
        """Answer an RFC 5019 GET: ``encoded`` is the (URL-decoded) base64 path."""
        try:
            der = base64.b64decode(urllib.parse.unquote(encoded).replace(" ", "+"),
                                   validate=True)
        except ValueError:
            return OcspAnswer(MALFORMED)
        return self.respond(der)


# ------------------------------------------------------------------------------- export

@dataclass(frozen=True)
class ExportReport:
    directory: Path
    files: int
    skipped_expired: int


def _records(session: Session, now: datetime) -> Iterator[tuple[AuthorityRecord, OcspRecord]]:
    authorities = {a.id: a for a in session.scalars(select(AuthorityRecord))}
    for row in session.scalars(select(OcspRecord).order_by(OcspRecord.id)):
        yield authorities[row.authority_id], row


def last_change(session: Session) -> datetime | None:
    """When a pre-signed answer was last (re)signed: a lifecycle change or a re-signing."""
    changed: datetime | None = session.scalar(select(func.max(OcspRecord.updated_at)))
    return changed


def export_static(session: Session, clock: Clock, directory: Path) -> ExportReport:
    """Write every current pre-signed response as a static file, RFC 5019 style.

    ``directory`` is a document root: a GET of ``/ocsp/<url-encoded base64 request>`` maps
    to the file ``<directory>/ocsp/<base64 request>.der`` once the web server has URL-decoded
    the path (``/`` inside the base64 becomes a sub-directory; empty segments collapse). An
    ``nginx.conf.example`` beside the files shows the lines that do it.
    """
    now = as_utc(clock.now())
    directory.mkdir(parents=True, exist_ok=True)
    files = skipped = 0
    hashes: dict[int, tuple[bytes, bytes]] = {}
    index_lines = []
    for authority, row in _records(session, now):
        if as_utc(row.next_update) <= now:
            skipped += 1
            continue
        if authority.id not in hashes:
            cert = x509.load_der_x509_certificate(authority.der)
            hashes[authority.id] = (sha1(cert.subject.public_bytes()), public_key_sha1(cert))
        name_hash, key_hash = hashes[authority.id]
        request = canonical_request(name_hash, key_hash, int(row.serial, 16))
        b64 = base64.b64encode(request).decode("ascii")
        target = Path(os.path.normpath(directory / "ocsp" / (b64 + ".der")))
        if directory.resolve() not in target.resolve().parents:
            skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # Atomic, and safe with several workers exporting at once: a tmp file of our own.
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(row.der)
        tmp.replace(target)
        index_lines.append(f"{row.serial}\t/ocsp/{get_path(request)}\t"
                           f"{target.relative_to(directory)}")
        files += 1
    (directory / "index.tsv").write_text("serial\tget_path\tfile\n" + "\n".join(index_lines)
                                         + "\n", encoding="utf-8")
    (directory / "nginx.conf.example").write_text(
        "# Serve the pre-signed OCSP responses written by `tawqi ocsp export`.\n"
        "# In a server block (merge_slashes: base64 may contain '//'):\n"
        "merge_slashes off;\n"
        f"root {directory.resolve()};\n"
        "location /ocsp/ {\n"
        "    default_type application/ocsp-response;\n"
        "    try_files $uri.der =404;\n"
        "}\n", encoding="utf-8")
    return ExportReport(directory, files, skipped)
