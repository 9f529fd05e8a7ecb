"""Anchoring the audit chain outside the database.

A hash chain alone cannot stop someone who can write the database: they can recompute it
after an edit, cut its tail and fix the head, or delete it whole. A *checkpoint* pins the
chain's head at a moment: ``{number, seq, head hash, time, RFC 3161 token}``, the token
being a time-stamp of our TSA (its key on the token) over the head hash. Checkpoints are
written to an :class:`AnchorStore` the database's operators cannot rewrite (by default an
append-only directory; in production a WORM bucket or another host).

This module is the chain side: the checkpoint record, the store, :func:`anchor` (check the
events since the last checkpoint, time-stamp the head, store it, record that in the log) and
:func:`verify_anchored` (the chain, each checkpoint's token, and that the chain still holds
every checkpoint's ``(seq, hash)``; what is proved and since when). The time-stamping itself
(asking the TSA, checking a token against its certificate) is given by the caller as
:class:`Stamp` and :class:`TokenVerifier`, so core never imports pki.

Numbers run 1, 2, 3… in the store, and each anchoring appends an ``audit.anchored`` event to
the log: a checkpoint deleted from the middle of the store leaves a gap, and the newest one
deleted is still named by the log's own record of it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditHead,
    ChainReport,
    event_hash,
    record,
    verify,
)
from core.clock import Clock, as_utc
from core.errors import Conflict

ANCHOR_ACTION = "audit.anchored"
FORMAT = "tawqi-audit-checkpoint/1"


class AuditTampered(Conflict):
    """The log no longer matches what was anchored; nothing new is anchored over it."""

    type = "audit-tampered"
    title = "Audit log tampered"


class InvalidTimeStamp(Exception):
    """A checkpoint's token does not prove its head hash (bad signature, imprint, signer)."""


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at one moment, time-stamped. ``time`` is the token's genTime."""

    number: int
    seq: int
    head_hash: str
    time: datetime
    token: bytes = field(repr=False)  # DER ContentInfo (SignedData over TSTInfo)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "number": self.number, "seq": self.seq,
            "head_hash": self.head_hash,
            "time": as_utc(self.time).isoformat(timespec="seconds"),
            "token": base64.b64encode(self.token).decode("ascii"),
        }, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Parse a stored checkpoint; ``ValueError`` when it is not one."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError("not a checkpoint record")
            head = str(data["head_hash"])
            if len(head) != 64 or any(c not in "0123456789abcdef" for c in head):
                raise ValueError("head_hash is not a SHA-256 in hex")
            return cls(number=int(data["number"]), seq=int(data["seq"]), head_hash=head,
                       time=as_utc(datetime.fromisoformat(data["time"])),
                       token=base64.b64decode(data["token"], validate=True))
        except (KeyError, TypeError, AttributeError, binascii.Error,
                json.JSONDecodeError) as exc:
            raise ValueError(f"not a checkpoint record: {exc}") from exc


@dataclass(frozen=True)
class StoredCheckpoint:
    """One entry of a store: its checkpoint, or why it could not be read."""

    name: str
    checkpoint: Checkpoint | None
    error: str = ""


class AnchorStore(Protocol):
    """Where checkpoints go. Append-only: an entry, once written, is never rewritten."""

    @property
    def location(self) -> str: ...

    def append(self, checkpoint: Checkpoint) -> str:
        """Write a new entry; raise :class:`FileExistsError` if its number is taken."""
        ...

    def entries(self) -> list[StoredCheckpoint]:
        """Every entry, by number (unreadable ones included, with their error)."""
        ...


class DirectoryAnchorStore:
    """One file per checkpoint, ``checkpoint-<number>.json``, created with ``O_EXCL`` (never
    rewritten), synced and made read-only (0444). Enough on one host against a careless
    hand; in production point it at storage the database's operators cannot rewrite (a
    WORM bucket mounted read-append, another host's append-only share)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def location(self) -> str:
        return str(self.path)

    def append(self, checkpoint: Checkpoint) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"checkpoint-{checkpoint.number:08d}.json"
        target = self.path / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, checkpoint.to_json().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return str(target)

    def entries(self) -> list[StoredCheckpoint]:
        if not self.path.is_dir():
            return []
        found = []
        for file in sorted(self.path.glob("*.json")):
            try:
                found.append(StoredCheckpoint(file.name,
                                              Checkpoint.from_json(file.read_text("utf-8"))))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                found.append(StoredCheckpoint(file.name, None, str(exc)))
        return found


class Stamp(Protocol):
    """Time-stamp a head hash (hex): the DER token and its genTime."""

    def __call__(self, head_hash: str) -> tuple[bytes, datetime]: ...


class TokenVerifier(Protocol):
    """Check that ``token`` is a valid time-stamp by a trusted TSA over ``head_hash`` (hex);
    return its genTime, or raise :class:`InvalidTimeStamp`."""

    def __call__(self, token: bytes, head_hash: str) -> datetime: ...


# ------------------------------------------------------------------------------ anchoring

@dataclass(frozen=True)
class AnchorResult:
    checkpoint: Checkpoint | None
    location: str = ""
    reason: str = ""  # why nothing was anchored


def _latest(store: AnchorStore) -> Checkpoint | None:
    readable = [e.checkpoint for e in store.entries() if e.checkpoint is not None]
    return max(readable, key=lambda c: c.number) if readable else None


def _check_since(session: Session, since: Checkpoint | None, head: AuditHead) -> None:
    """The events from the last checkpoint to the head still chain, and the event at the
    checkpoint is the one anchored: cheap (only the new events), so every anchoring does it
    and never time-stamps a head built over a rewritten log."""
    start = since.seq if since is not None else 0
    expected = since.head_hash if since is not None else GENESIS_HASH
    if since is not None:
        event = session.get(AuditEvent, since.seq)
        if event is None or event.hash != since.head_hash:
            raise AuditTampered("the log no longer holds the last checkpoint's event",
                                seq=since.seq, checkpoint=since.number)
    rows = session.execute(select(AuditEvent).where(AuditEvent.seq > start)
                           .order_by(AuditEvent.seq)).scalars()
    seq = start
    for event in rows.yield_per(1000):
        seq += 1
        if event.seq != seq or event.prev_hash != expected or event.hash != event_hash(
                event.seq, event.at, event.actor, event.action, event.object_type,
                event.object_id, event.summary, event.prev_hash):
            raise AuditTampered("the log is broken after the last checkpoint", seq=event.seq)
        expected = event.hash
    if head.seq != seq or head.hash != expected:
        raise AuditTampered("the log's head does not match its last event", seq=head.seq)


def _only_own_record_since(session: Session, last: Checkpoint, head: AuditHead) -> bool:
    if head.seq != last.seq + 1:
        return False
    event = session.get(AuditEvent, head.seq)
    return (event is not None and event.action == ANCHOR_ACTION
            and event.summary_dict.get("checkpoint") == last.number)


def anchor(session: Session, clock: Clock, store: AnchorStore, stamp: Stamp, *,
           actor: str, force: bool = False) -> AnchorResult:
    """Time-stamp the head and append a checkpoint to ``store``, then record an
    ``audit.anchored`` event in the caller's transaction (commit it). Nothing is anchored
    when the log is empty or unchanged since the last checkpoint (apart from that
    checkpoint's own record), unless ``force``. Raises :class:`AuditTampered` if the events
    since the last checkpoint do not chain."""
    head = session.get(AuditHead, 1)
    if head is None or head.seq == 0:
        return AnchorResult(None, reason="the audit log is empty")
    last = _latest(store)
    if last is not None and not force and (
            (head.seq, head.hash) == (last.seq, last.head_hash)
            or _only_own_record_since(session, last, head)):
        return AnchorResult(None, reason=f"unchanged since checkpoint {last.number}")
    _check_since(session, last, head)
    token, gen_time = stamp(head.hash)
    number = (last.number if last is not None else 0) + 1
    for _attempt in range(5):
        checkpoint = Checkpoint(number, head.seq, head.hash, as_utc(gen_time), token)
        try:
            location = store.append(checkpoint)
            break
        except FileExistsError:  # another process anchored at the same moment
            latest = _latest(store)
            number = max(number, latest.number if latest else 0) + 1
    else:
        raise AuditTampered("could not append to the anchor store: numbers keep colliding")
    record(session, clock, actor=actor, action=ANCHOR_ACTION, object_type="audit",
           object_id=head.seq, summary={"checkpoint": number, "seq": head.seq,
                                        "head_hash": head.hash,
                                        "time": checkpoint.time.isoformat()})
    return AnchorResult(checkpoint, location)


# ---------------------------------------------------------------------------- verifying

@dataclass(frozen=True)
class Problem:
    seq: int | None  # the first event concerned, when one can be named
    message: str


@dataclass(frozen=True)
class AnchoredReport:
    chain: ChainReport
    checkpoints: int
    problems: tuple[Problem, ...] = ()
    proved_seq: int | None = None  # the newest checkpoint the chain still matches
    proved_at: datetime | None = None
    first_anchored_at: datetime | None = None
    last_seq: int = 0  # the chain's last event

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems

    @property
    def first_problem(self) -> Problem | None:
        found = list(self.problems)
        if not self.chain.ok:
            found.append(Problem(self.chain.first_broken_seq, self.chain.reason))
        if not found:
            return None
        return min(found, key=lambda p: (p.seq is not None, p.seq or 0))

    def summary(self) -> str:
        """One plain sentence: what is proved and since when, or the first mismatch."""
        first = self.first_problem
        if first is not None:
            where = f" (event {first.seq})" if first.seq is not None else ""
            more = len(self.problems) + (0 if self.chain.ok else 1) - 1
            return (f"audit log TAMPERED{where}: {first.message}"
                    + (f"; {more} further problem(s)" if more > 0 else ""))
        if self.proved_seq is None:
            return (f"audit chain intact: {self.chain.checked} events, but NOTHING is "
                    "anchored: the whole chain could have been rewritten by someone with "
                    "database access (run `tawqi audit anchor`)")
        proved_at = self.proved_at or datetime.min
        since = self.first_anchored_at or proved_at
        pending = self.last_seq - self.proved_seq
        return (f"audit chain intact: {self.chain.checked} events; proved intact up to seq "
                f"{self.proved_seq} as of "
                f"{proved_at.isoformat(timespec='seconds')} ({self.checkpoints} checkpoint(s) "
                f"since {since.isoformat(timespec='seconds')});"
                f" {pending} event(s) after it are chained but not yet anchored")


def _check_entries(entries: Sequence[StoredCheckpoint], verify_token: TokenVerifier
                   ) -> tuple[list[Checkpoint], list[Problem]]:
    good: list[Checkpoint] = []
    problems: list[Problem] = []
    numbers: set[int] = set()
    for entry in entries:
        cp = entry.checkpoint
        if cp is None:
            problems.append(Problem(None, f"checkpoint file {entry.name} is unreadable: "
                                          f"{entry.error}"))
            continue
        numbers.add(cp.number)
        try:
            gen_time = verify_token(cp.token, cp.head_hash)
        except InvalidTimeStamp as exc:
            problems.append(Problem(cp.seq, f"checkpoint {cp.number} ({entry.name}) does not "
                                            f"verify: {exc}"))
            continue
        if as_utc(gen_time) != as_utc(cp.time):
            problems.append(Problem(cp.seq, f"checkpoint {cp.number} ({entry.name}) states "
                                            "another time than its time-stamp"))
            continue
        good.append(cp)
    if numbers:
        missing = sorted(set(range(1, max(numbers) + 1)) - numbers)
        if missing:
            problems.append(Problem(None, f"checkpoint(s) {', '.join(map(str, missing))} "
                                          "missing from the anchor store"))
    good.sort(key=lambda c: c.number)
    for before, after in pairwise(good):
        if after.seq < before.seq or after.time < before.time:
            problems.append(Problem(after.seq, f"checkpoint {after.number} goes back before "
                                               f"checkpoint {before.number}"))
    return good, problems


def verify_anchored(session: Session, store: AnchorStore, verify_token: TokenVerifier
                    ) -> AnchoredReport:
    """Verify the chain (:func:`core.audit.verify`), every checkpoint's time-stamp, that the
    chain still holds every checkpoint's ``(seq, hash)``, and that every checkpoint the log
    says was made is still in the store. Reports the newest checkpoint proved and its time."""
    chain = verify(session)
    entries = store.entries()
    checkpoints, problems = _check_entries(entries, verify_token)
    last_event = session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())
                                 .limit(1)).scalar_one_or_none() or 0
    proved: Checkpoint | None = None
    previous: Checkpoint | None = None
    for cp in checkpoints:
        event = session.get(AuditEvent, cp.seq)
        if event is None:
            problems.append(Problem(
                min(last_event + 1, cp.seq),
                f"checkpoint {cp.number} anchored seq {cp.seq} at "
                f"{cp.time.isoformat(timespec='seconds')} but the log ends at seq "
                f"{last_event}: events were deleted"))
        elif event.hash != cp.head_hash:
            since = previous.seq + 1 if previous is not None else 1
            problems.append(Problem(
                since, f"checkpoint {cp.number} anchored seq {cp.seq} at "
                       f"{cp.time.isoformat(timespec='seconds')} with another hash: events "
                       f"{since}..{cp.seq} were rewritten, inserted or deleted"))
        elif proved is None or cp.seq >= proved.seq:
            proved = cp
        previous = cp
    # Every checkpoint the log says was made must still be in the store, as made (one that
    # is there but fails its time-stamp check is reported above already).
    stored_numbers = {e.checkpoint.number for e in entries if e.checkpoint is not None}
    proved_keys = {(c.number, c.seq, c.head_hash) for c in checkpoints}
    records = session.execute(select(AuditEvent).where(AuditEvent.action == ANCHOR_ACTION)
                              .order_by(AuditEvent.seq)).scalars()
    for event in records:
        made: dict[str, Any] = event.summary_dict
        number = made.get("checkpoint")
        if number not in stored_numbers:
            problems.append(Problem(None, f"checkpoint {number} (seq {made.get('seq')}), "
                                          f"recorded at event {event.seq}, is missing from "
                                          "the anchor store"))
        elif (number, made.get("seq"), made.get("head_hash")) not in proved_keys and \
                any(c.number == number for c in checkpoints):
            problems.append(Problem(None, f"checkpoint {number} in the store differs from "
                                          f"the one recorded at event {event.seq}"))
    if problems:
        proved = None
    return AnchoredReport(chain, len(checkpoints), tuple(problems),
                          proved.seq if proved else None, proved.time if proved else None,
                          checkpoints[0].time if checkpoints and proved else None, last_event)


__all__ = ["ANCHOR_ACTION", "AnchorResult", "AnchorStore", "AnchoredReport", "AuditTampered",
           "Checkpoint", "DirectoryAnchorStore", "InvalidTimeStamp", "Problem", "Stamp",
           "StoredCheckpoint", "TokenVerifier", "anchor", "verify_anchored"]
