"""The audit chain anchored by our TSA (SoftHSM2) into an append-only directory: every way
of rewriting the log through the database is caught once a checkpoint exists, on both
databases; so is a checkpoint file edited or deleted; and openssl accepts the tokens."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.anchors import (
    ANCHOR_ACTION,
    AnchoredReport,
    AuditTampered,
    Checkpoint,
    DirectoryAnchorStore,
    anchor,
    verify_anchored,
)
from core.audit import AuditEvent, AuditHead, event_hash, record, verify
from pki.anchoring import HeadStamper, TsaTokenVerifier, trusted_tsa_certificates
from pki.authority import Authority
from tests.pki.conftest import World
from tests.pki.tools import openssl

pytestmark = pytest.mark.hsm


class Anchoring:
    """A test's anchor store, stamper and verifier over the session PKI's TSA."""

    def __init__(self, world: World, session: Session, authority: Authority,
                 path: Path) -> None:
        self.world = world
        self.session = session
        self.store = DirectoryAnchorStore(path)
        self.stamp = HeadStamper(authority.tsa_signer, world.clock, world.profile)
        self.verifier = TsaTokenVerifier(trusted_tsa_certificates(session))

    def append(self, count: int) -> list[AuditEvent]:
        return [record(self.session, self.world.clock, actor="tester", action="thing.changed",
                       object_type="thing", object_id=i, summary={"n": i, "ar": "جماعة"})
                for i in range(count)]

    def anchor(self) -> Checkpoint:
        result = anchor(self.session, self.world.clock, self.store, self.stamp, actor="test")
        assert result.checkpoint is not None, result.reason
        return result.checkpoint

    def verify(self) -> AnchoredReport:
        self.session.expire_all()
        return verify_anchored(self.session, self.store, self.verifier)

    def file(self, checkpoint: Checkpoint) -> Path:
        return self.store.path / f"checkpoint-{checkpoint.number:08d}.json"


@pytest.fixture
def anchoring(world: World, pki_session: Session, authority: Authority,
              tmp_path: Path) -> Anchoring:
    return Anchoring(world, pki_session, authority, tmp_path / "anchors")


@pytest.fixture
def two_checkpoints(anchoring: Anchoring) -> tuple[Checkpoint, Checkpoint, int]:
    """Events, checkpoint 1, events, checkpoint 2, then a few events not yet anchored.
    Returns both checkpoints and the last seq."""
    anchoring.append(3)
    first = anchoring.anchor()
    anchoring.append(3)
    second = anchoring.anchor()
    last = anchoring.append(2)[-1].seq
    anchoring.session.flush()
    anchoring.session.expunge_all()  # keep the objects readable after the rows are tampered
    return first, second, last


def _recompute_from(session: Session, seq: int) -> None:
    """What an intruder with database access does: rebuild every hash from ``seq`` on and
    fix the head, so that the chain alone verifies again."""
    session.flush()
    session.expire_all()
    previous = session.get(AuditEvent, seq - 1)
    prev_hash = previous.hash if previous is not None else "0" * 64
    events = session.scalars(select(AuditEvent).where(AuditEvent.seq >= seq)
                             .order_by(AuditEvent.seq)).all()
    for event in events:
        event.prev_hash = prev_hash
        event.hash = event_hash(event.seq, event.at, event.actor, event.action,
                                event.object_type, event.object_id, event.summary, prev_hash)
        prev_hash = event.hash
    session.flush()
    last = events[-1] if events else previous
    session.execute(text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
                    {"s": last.seq if last else 0, "h": last.hash if last else "0" * 64})
    session.expire_all()


def _first_message(report: AnchoredReport) -> str:
    first = report.first_problem
    assert first is not None and not report.ok
    return first.message


def test_intact_log_is_proved_up_to_the_last_checkpoint(
        anchoring: Anchoring, two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, second, last = two_checkpoints
    report = anchoring.verify()
    assert report.ok, report.summary()
    assert report.proved_seq == second.seq and report.last_seq == last
    assert report.proved_at == second.time and report.first_anchored_at == first.time
    assert f"; proved intact up to seq {second.seq} as of " \
           f"{second.time.isoformat(timespec='seconds')} (2 checkpoint(s) since " \
           f"{first.time.isoformat(timespec='seconds')})" in report.summary()
    assert report.summary().startswith("audit chain intact: ")
    assert f"{last - second.seq} event(s) after it are chained but not yet anchored" \
        in report.summary()
    # The anchoring is itself in the log, right after the head it anchored.
    recorded = anchoring.session.get(AuditEvent, second.seq + 1)
    assert recorded is not None and recorded.action == ANCHOR_ACTION
    assert recorded.summary_dict["checkpoint"] == second.number == 2
    # Files are read-only and never rewritten.
    assert stat.S_IMODE(os.stat(anchoring.file(second)).st_mode) == 0o444


def test_nothing_anchored_is_said_plainly(anchoring: Anchoring) -> None:
    anchoring.append(2)
    report = anchoring.verify()
    assert report.ok and report.proved_seq is None
    assert "NOTHING is anchored" in report.summary()


def test_unchanged_log_is_not_anchored_again(anchoring: Anchoring) -> None:
    anchoring.append(1)
    anchoring.anchor()
    session, clock = anchoring.session, anchoring.world.clock
    result = anchor(session, clock, anchoring.store, anchoring.stamp, actor="t")
    assert result.checkpoint is None and "unchanged since checkpoint 1" in result.reason
    forced = anchor(session, clock, anchoring.store, anchoring.stamp, actor="t", force=True)
    assert forced.checkpoint is not None and forced.checkpoint.number == 2


def test_recomputed_chain_after_an_edit(
        anchoring: Anchoring, two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, second, _ = two_checkpoints
    edited = first.seq + 2
    anchoring.session.execute(text("UPDATE audit_event SET summary = :s WHERE seq = :q"),
                              {"s": '{"n":99}', "q": edited})
    _recompute_from(anchoring.session, edited)
    assert verify(anchoring.session).ok  # the chain alone is fooled
    report = anchoring.verify()
    assert report.first_problem is not None and report.first_problem.seq == first.seq + 1
    message = _first_message(report)
    assert f"checkpoint 2 anchored seq {second.seq}" in message
    assert f"events {first.seq + 1}..{second.seq} were rewritten" in message
    assert "TAMPERED" in report.summary()


def test_truncated_tail_with_fixed_head(
        anchoring: Anchoring, two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, second, _ = two_checkpoints
    keep = first.seq + 2
    anchoring.session.execute(text("DELETE FROM audit_event WHERE seq > :q"), {"q": keep})
    _recompute_from(anchoring.session, keep + 1)
    assert verify(anchoring.session).ok
    report = anchoring.verify()
    message = _first_message(report)
    assert f"anchored seq {second.seq}" in message
    assert f"the log ends at seq {keep}: events were deleted" in message
    assert report.first_problem is not None and report.first_problem.seq == keep + 1


def test_everything_deleted(anchoring: Anchoring,
                            two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    anchoring.session.execute(text("DELETE FROM audit_event"))
    anchoring.session.execute(text("DELETE FROM audit_head"))
    assert verify(anchoring.session).ok
    report = anchoring.verify()
    assert "the log ends at seq 0: events were deleted" in _first_message(report)


def test_head_row_deleted(anchoring: Anchoring,
                          two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    anchoring.session.execute(text("DELETE FROM audit_head"))
    report = anchoring.verify()
    assert "head row is missing" in _first_message(report)


def test_inserted_event_with_recomputed_chain(
        anchoring: Anchoring, two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, second, _ = two_checkpoints
    at = first.seq + 1
    session = anchoring.session
    # Make room at ``at`` (two steps: unique keys) and forge an event there.
    session.execute(text("UPDATE audit_event SET seq = seq + 100000 WHERE seq >= :q"),
                    {"q": at})
    session.execute(text("UPDATE audit_event SET seq = seq - 99999 WHERE seq > 100000"))
    template = session.get(AuditEvent, first.seq)
    assert template is not None
    session.add(AuditEvent(seq=at, at=template.at, actor="intruder", action="thing.changed",
                           object_type="thing", object_id="1", summary="{}", prev_hash="",
                           hash=""))
    _recompute_from(session, at)
    assert verify(session).ok
    report = anchoring.verify()
    message = _first_message(report)
    assert f"checkpoint 2 anchored seq {second.seq}" in message
    assert report.first_problem is not None and report.first_problem.seq == first.seq + 1


def test_edit_without_recompute(anchoring: Anchoring,
                                two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, _, _ = two_checkpoints
    anchoring.session.execute(text("UPDATE audit_event SET actor = 'someone' WHERE seq = :q"),
                              {"q": first.seq - 1})
    report = anchoring.verify()
    assert not report.chain.ok and report.chain.first_broken_seq == first.seq - 1
    first_problem = report.first_problem
    assert first_problem is not None and first_problem.seq is not None
    assert first_problem.seq <= first.seq - 1
    assert "TAMPERED" in report.summary()


def test_anchoring_refuses_a_broken_log(anchoring: Anchoring) -> None:
    anchoring.append(2)
    checkpoint = anchoring.anchor()
    last = anchoring.append(2)[-1]
    anchoring.session.execute(text("UPDATE audit_event SET summary = '{}' WHERE seq = :q"),
                              {"q": last.seq})
    anchoring.session.expire_all()
    with pytest.raises(AuditTampered):
        anchoring.anchor()
    assert len(anchoring.store.entries()) == checkpoint.number


def _writable(path: Path) -> None:
    path.chmod(0o644)


def test_edited_checkpoint_file(anchoring: Anchoring,
                                two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, second, _ = two_checkpoints
    # Point checkpoint 2 at another hash (a rewritten chain's): its token no longer proves it.
    path = anchoring.file(second)
    data = json.loads(path.read_text())
    data["head_hash"] = first.head_hash
    _writable(path)
    path.write_text(json.dumps(data))
    report = anchoring.verify()
    assert _first_message(report) == ("checkpoint 2 (checkpoint-00000002.json) does not "
                                      "verify: the time-stamp is over another hash than the "
                                      "head's")
    # A token whose signature bytes were altered does not verify either.
    original = second.to_json()
    path.write_text(original[:-20] + ("B" if original[-20] != "B" else "C") + original[-19:])
    report = anchoring.verify()
    assert "does not verify: the TSA signature does not verify" in _first_message(report)


def test_time_of_a_checkpoint_cannot_be_moved(
        anchoring: Anchoring, two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    _, second, _ = two_checkpoints
    path = anchoring.file(second)
    data = json.loads(path.read_text())
    data["time"] = "2030-01-01T00:00:00+00:00"
    _writable(path)
    path.write_text(json.dumps(data))
    assert "another time than its time-stamp" in _first_message(anchoring.verify())


def test_deleted_checkpoint_files(anchoring: Anchoring,
                                  two_checkpoints: tuple[Checkpoint, Checkpoint, int]) -> None:
    first, second, _ = two_checkpoints
    # The newest one: the log's own record of it names it.
    anchoring.file(second).unlink()
    report = anchoring.verify()
    assert f"checkpoint 2 (seq {second.seq}), recorded at event {second.seq + 1}, is " \
           "missing from the anchor store" in _first_message(report)
    # One in the middle: a gap in the numbers.
    anchoring.file(first).unlink()
    anchoring.store.append(second)
    report = anchoring.verify()
    assert any("checkpoint(s) 1 missing from the anchor store" in p.message
               for p in report.problems)


def test_another_tsa_is_not_trusted(anchoring: Anchoring, world: World) -> None:
    anchoring.append(1)
    anchoring.anchor()
    anchoring.verifier = TsaTokenVerifier([world.issuing])  # not our TSA certificate
    report = anchoring.verify()
    assert "not signed by a trusted TSA certificate" in _first_message(report)


def test_openssl_accepts_a_checkpoint_token(anchoring: Anchoring, world: World,
                                            tmp_path: Path) -> None:
    anchoring.append(1)
    checkpoint = Checkpoint.from_json(anchoring.file(anchoring.anchor()).read_text())
    token = tmp_path / "token.der"
    token.write_bytes(checkpoint.token)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                               for c in (world.root, world.issuing)))
    verified = openssl("ts", "-verify", "-digest", checkpoint.head_hash, "-in", token,
                       "-token_in", "-CAfile", chain)
    assert "Verification: OK" in verified.stdout
    other = "ab" * 32
    assert openssl("ts", "-verify", "-digest", other, "-in", token, "-token_in",
                   "-CAfile", chain, check=False).returncode != 0


def test_head_is_anchored_as_stored(anchoring: Anchoring) -> None:
    anchoring.append(1)
    checkpoint = anchoring.anchor()
    head = anchoring.session.get(AuditHead, 1)
    assert head is not None and head.seq == checkpoint.seq + 1  # its own record follows
    event = anchoring.session.get(AuditEvent, checkpoint.seq)
    assert event is not None and event.hash == checkpoint.head_hash
