"""Preparing a campaign's tokens before the installation: approval and personalisation of
its requests in batches, by several workers at once.

Each incoming holder gets a token of their own, the key generated on it, a certificate and a
sealed PIN, as :func:`delivery.personalisation.personalise_request` does one by one. Done in
batches, the token work of a batch runs OUTSIDE any database transaction, so that a
worker's key generation does not hold the database (SQLite's write lock, PostgreSQL's audit
chain head) while the other workers wait:

1. a short transaction lists the next requests of this worker's share (still ``submitted``
   or ``approved``);
2. the tokens of the batch are initialised in one short transaction that only serialises
   the choice of free slots across processes (``tawqi.token-init``); then, with no
   transaction, each key pair is generated on its token (one login per token) and each
   fresh PIN sealed on the token layer;
3. one transaction records the batch: each request is locked, approved if needed, its
   envelope stored, its key certified and the request moved to ``personalised``, with its
   audit events, appended together at the end of the transaction
   (:func:`core.audit.deferred`: the chain's head is locked once, just before the commit);
4. after the commit, the certificates are written to their tokens (no transaction) and
   each write is recorded (``certificate.written_to_token``).

Nothing is half-done if a worker dies: before step 3 commits, the database is unchanged (the
tokens made so far are unknown to it, as after any failed personalisation; a new attempt
uses new labels, and a new run first wipes those orphans, found by the request id in their
label: :func:`wipe_orphans`) and a new run picks the same requests again; after it, a new run first
writes the certificates whose writing was never recorded (step 4 again). A request another worker
personalised meanwhile is skipped (its row lock and state decide) and the token made for it
wiped. Running :func:`prepare_campaign` again finishes what is left: it is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditEvent, deferred, record
from core.clock import Clock
from core.db import exclusive, transaction
from delivery import envelopes
from delivery.campaigns import get_campaign
from delivery.envelopes import Sealer
from delivery.errors import InvalidCampaign
from delivery.models import (
    APPROVED,
    CANCELLED,
    ENVELOPE_INITIAL_PIN,
    KIND_RENEWAL,
    REJECTED,
    SUBMITTED,
    CampaignEntry,
    CertificateRequest,
)
from delivery.personalisation import (
    TOKEN_LABEL_PREFIX,
    BatchPersonaliser,
    TokenKey,
    label_request_id,
    new_token_label,
    personalise_with_key,
)
from delivery.policy import DeliveryPolicy
from delivery.requests import approve_request, get_request
from hsm import generate_pin
from pki.issuance import not_written

Progress = Callable[[int, int], None]
_Query = TypeVar("_Query", bound=Select)


@dataclass(frozen=True)
class PreparationResult:
    campaign_id: int
    batches: int
    approved: int
    personalised: tuple[int, ...]  # request ids, in order
    skipped: tuple[int, ...]  # found personalised (or closed) by someone else
    orphans_wiped: tuple[str, ...] = ()  # token labels a dead worker left behind


def _share(query: _Query, campaign_id: int, worker: int, workers: int) -> _Query:
    """``query`` (over certificate requests) narrowed to the campaign's requests that are
    not renewals, in this worker's share (request id modulo ``workers``), oldest first."""
    query = (query.join(CampaignEntry, CampaignEntry.request_id == CertificateRequest.id)
             .where(CampaignEntry.campaign_id == campaign_id,
                    CertificateRequest.kind != KIND_RENEWAL)
             .order_by(CertificateRequest.id))
    if workers > 1:
        query = query.where(CertificateRequest.id % workers == worker)
    return query


def pending(session: Session, campaign_id: int, *, worker: int = 0, workers: int = 1,
            limit: int | None = None) -> list[tuple[int, int]]:
    """(request id, holder id) of the campaign's requests still to prepare (``submitted``
    or ``approved``, not renewals) in this worker's share (request id modulo ``workers``),
    oldest first."""
    query = _share(select(CertificateRequest.id, CertificateRequest.holder_id)
                   .where(CertificateRequest.status.in_((SUBMITTED, APPROVED))),
                   campaign_id, worker, workers)
    if limit is not None:
        query = query.limit(limit)
    return [(int(r), int(h)) for r, h in session.execute(query).all()]


def personalised_serials(session: Session, campaign_id: int, *, worker: int = 0,
                         workers: int = 1) -> list[str]:
    """The certificate serials of the campaign's requests personalised (or further) in
    this worker's share."""
    query = _share(select(CertificateRequest.certificate_serial).where(
        CertificateRequest.status.not_in((SUBMITTED, APPROVED, CANCELLED, REJECTED)),
        CertificateRequest.certificate_serial.is_not(None)), campaign_id, worker, workers)
    return [s for s in session.scalars(query) if s]


def prepare_campaign(sessions: sessionmaker[Session], clock: Clock, campaign_id: int, *,
                     personaliser: BatchPersonaliser, sealer: Sealer,
                     policy: DeliveryPolicy, actor: str, identity_check: str,
                     batch_size: int = 20, worker: int = 0, workers: int = 1,
                     max_batches: int | None = None,
                     progress: Progress | None = None) -> PreparationResult:
    """Approve (``identity_check``: how the registration authority checked the holders)
    and personalise the campaign's requests of this worker's share, ``batch_size`` per
    transaction, until none is left (or ``max_batches`` were done). Several workers (e.g.
    processes) run it with the same ``workers`` and each its own ``worker`` index. Runs its
    own transactions (see the module note); resumable."""
    if batch_size < 1 or workers < 1 or not 0 <= worker < workers:
        raise InvalidCampaign("batch_size and workers are at least 1, worker is in "
                              "[0, workers)", field="worker")
    batches = approved = 0
    done: list[int] = []
    skipped: list[int] = []
    with transaction(sessions) as session:
        get_campaign(session, campaign_id)  # CampaignNotFound
        unwritten = not_written(session, personalised_serials(
            session, campaign_id, worker=worker, workers=workers))
        total = len(pending(session, campaign_id, worker=worker, workers=workers))
    wiped = wipe_orphans(sessions, clock, campaign_id, personaliser=personaliser,
                         actor=actor, worker=worker, workers=workers)
    for start in range(0, len(unwritten), batch_size):  # a run that died after step 3
        personaliser.write_certificates(unwritten[start:start + batch_size],
                                        sessions=sessions, clock=clock, actor=actor,
                                        fresh=False)
    while max_batches is None or batches < max_batches:
        with transaction(sessions) as session:
            todo = pending(session, campaign_id, worker=worker, workers=workers,
                           limit=batch_size)
        if not todo:
            break
        ok, gone, newly_approved = _prepare_batch(
            sessions, clock, todo, personaliser=personaliser, sealer=sealer, policy=policy,
            actor=actor, identity_check=identity_check)
        batches += 1
        approved += newly_approved
        done += ok
        skipped += gone
        if progress is not None:
            progress(len(done) + len(skipped), max(total, len(done) + len(skipped)))
        if not ok and len(gone) == len(todo):
            break  # the share is being done by someone else: leave it to them
    return PreparationResult(campaign_id, batches, approved, tuple(done), tuple(skipped),
                             tuple(wiped))


def orphans(session: Session, campaign_id: int, labels: list[str], *, worker: int = 0,
            workers: int = 1) -> list[str]:
    """Those of the token ``labels`` (made by :func:`new_token_label`) that belong to a
    request of the campaign in this worker's share but are not the token the request
    records, and were not wiped already: the tokens of a worker that died before its
    batch's commit (or of a batch whose requests someone else personalised)."""
    by_request: dict[int, list[str]] = {}
    for label in labels:
        request_id = label_request_id(label)
        if request_id is not None and request_id % workers == worker:
            by_request.setdefault(request_id, []).append(label)
    if not by_request:
        return []
    found: list[str] = []
    ids = sorted(by_request)
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(CertificateRequest.id, CertificateRequest.token_label)
            .join(CampaignEntry, CampaignEntry.request_id == CertificateRequest.id)
            .where(CampaignEntry.campaign_id == campaign_id,
                   CertificateRequest.id.in_(ids[start:start + 500])))
        for request_id, recorded in rows:
            found += [label for label in by_request[request_id] if label != recorded]
    wiped: set[str] = set()
    for start in range(0, len(found), 500):
        wiped.update(session.scalars(select(AuditEvent.object_id).where(
            AuditEvent.action == ORPHAN_WIPED,
            AuditEvent.object_id.in_(found[start:start + 500]))))
    return sorted(label for label in found if label not in wiped)


ORPHAN_WIPED = "token.orphan_wiped"


def wipe_orphans(sessions: sessionmaker[Session], clock: Clock, campaign_id: int, *,
                 personaliser: BatchPersonaliser, actor: str, worker: int = 0,
                 workers: int = 1) -> list[str]:
    """Find the tokens a killed worker of this share initialised and the database does not
    know (:func:`orphans`), destroy their objects (the key generated for nobody) and record
    each (``token.orphan_wiped``, once: a later run skips it). Run by
    :func:`prepare_campaign` before it starts; one preparation per share at a time (a
    worker still running on the same share would lose its batch under way). Returns the
    labels wiped."""
    labels = personaliser.token_labels(TOKEN_LABEL_PREFIX)
    with transaction(sessions) as session:
        found = orphans(session, campaign_id, labels, worker=worker, workers=workers)
    done: list[str] = []
    for label in found:
        destroyed = personaliser.wipe(label)
        with transaction(sessions) as session:
            record(session, clock, actor=actor, action=ORPHAN_WIPED, object_type="token",
                   object_id=label, summary={"campaign_id": campaign_id,
                                             "request_id": label_request_id(label),
                                             "objects_destroyed": destroyed})
        done.append(label)
    return done


def _prepare_batch(sessions: sessionmaker[Session], clock: Clock,
                   todo: list[tuple[int, int]], *, personaliser: BatchPersonaliser,
                   sealer: Sealer, policy: DeliveryPolicy, actor: str, identity_check: str
                   ) -> tuple[list[int], list[int], int]:
    labels = [new_token_label(request_id) for request_id, _ in todo]
    pins = [generate_pin(policy.pin_length) for _ in todo]
    made: list[str] = []
    keys: list[TokenKey] = []
    sealed: list[envelopes.SealedSecret] = []
    ok: list[int] = []
    serials: list[str] = []
    gone: list[int] = []
    approved = 0
    try:
        # Two processes behind one token server must not pick the same free slot.
        with transaction(sessions) as session, exclusive(session, "tawqi.token-init"):
            personaliser.create_tokens(list(zip(labels, pins, strict=True)))
        made = list(labels)
        for (_, holder_id), label, pin in zip(todo, labels, pins, strict=True):
            keys.append(personaliser.generate_key(label, pin))
            sealed.append(envelopes.seal_secret(sealer, purpose=ENVELOPE_INITIAL_PIN,
                                                holder_id=holder_id, secret=pin))
        del pins
        # The batch's audit events are appended at the end, in one statement: the chain's
        # head is locked only then, so the workers' transactions overlap until that moment.
        with transaction(sessions) as session, deferred(session):
            for (request_id, _), key, envelope in zip(todo, keys, sealed, strict=True):
                if get_request(session, request_id, lock=True).status == SUBMITTED:
                    approve_request(session, clock, request_id, actor=actor,
                                    identity_check=identity_check)
                    approved += 1
                personalised = personalise_with_key(session, clock, request_id,
                                                    personaliser=personaliser, key=key,
                                                    envelope=envelope, actor=actor)
                if personalised is None:
                    gone.append(request_id)
                else:
                    ok.append(request_id)
                    serials.append(personalised.certificate_serial or "")
        if serials:
            personaliser.write_certificates(serials, sessions=sessions, clock=clock,
                                            actor=actor, fresh=True)
    finally:
        for label in made:
            personaliser.release(label)
    for request_id, label in zip((r for r, _ in todo), labels, strict=True):
        if request_id in gone:  # a token nobody will use: no key left on it
            destroyed = personaliser.wipe(label)
            with transaction(sessions) as session:
                record(session, clock, actor=actor, action=ORPHAN_WIPED, object_type="token",
                       object_id=label, summary={"request_id": request_id,
                                                 "objects_destroyed": destroyed})
    return ok, gone, approved
