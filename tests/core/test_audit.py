"""The audit chain detects every kind of tampering, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.audit import AuditEvent, record, verify
from core.clock import FrozenClock


def _append(session: Session, clock: FrozenClock, count: int) -> list[AuditEvent]:
    events = []
    for i in range(count):
        clock.advance(timedelta(seconds=1))
        events.append(record(session, clock, actor="tester", action="thing.changed",
                             object_type="thing", object_id=i, summary={"n": i, "ar": "جماعة"}))
    session.expunge_all()  # keep the objects readable after the rows are tampered with
    return events


def test_intact_chain_verifies(session: Session, clock: FrozenClock) -> None:
    events = _append(session, clock, 3)
    assert events[1].prev_hash == events[0].hash
    report = verify(session)
    assert report.ok, report.reason
    assert report.checked >= 3


def test_edited_event_is_named(session: Session, clock: FrozenClock) -> None:
    events = _append(session, clock, 4)
    session.execute(text("UPDATE audit_event SET summary = :s WHERE seq = :q"),
                    {"s": '{"n":99}', "q": events[1].seq})
    session.expire_all()
    report = verify(session)
    assert not report.ok
    assert report.first_broken_seq == events[1].seq
    assert "edited" in report.reason


def test_deleted_event_is_named(session: Session, clock: FrozenClock) -> None:
    events = _append(session, clock, 4)
    session.execute(text("DELETE FROM audit_event WHERE seq = :q"), {"q": events[1].seq})
    session.expire_all()
    report = verify(session)
    assert not report.ok
    assert report.first_broken_seq == events[2].seq
    assert "deleted" in report.reason


def test_deleted_tail_is_detected(session: Session, clock: FrozenClock) -> None:
    events = _append(session, clock, 3)
    session.execute(text("DELETE FROM audit_event WHERE seq = :q"), {"q": events[-1].seq})
    session.expire_all()
    report = verify(session)
    assert not report.ok
    assert report.first_broken_seq == events[-1].seq


def test_inserted_event_is_named(session: Session, clock: FrozenClock) -> None:
    events = _append(session, clock, 3)
    # Make room after the first event and forge one there, with a self-consistent hash.
    session.execute(text("UPDATE audit_event SET seq = seq + 1000 WHERE seq > :q"),
                    {"q": events[0].seq})
    session.execute(text("UPDATE audit_event SET seq = seq - 999 WHERE seq > 1000"))
    from core.audit import event_hash

    forged_seq = events[0].seq + 1
    at = events[0].at
    digest = event_hash(forged_seq, at, "intruder", "x", "thing", "1", "{}", events[0].hash)
    session.add(AuditEvent(seq=forged_seq, at=at, actor="intruder", action="x",
                           object_type="thing", object_id="1", summary="{}",
                           prev_hash=events[0].hash, hash=digest))
    session.flush()
    session.expire_all()
    report = verify(session)
    assert not report.ok
    assert report.first_broken_seq == forged_seq + 1


def test_secrets_are_refused_in_summaries(session: Session, clock: FrozenClock) -> None:
    with pytest.raises(ValueError):
        record(session, clock, actor="a", action="b", object_type="c", object_id=1,
               summary={"new_pin": "123456"})


def test_list_events_filters_and_windows(session: Session, clock: FrozenClock) -> None:
    from core.audit import list_events

    start = clock.now()
    for i, action in enumerate(("auth.login", "auth.logout", "authz.denied", "auth_x.y",
                                "authax.y")):
        clock.advance(timedelta(minutes=1))
        record(session, clock, actor=f"user:{i % 2}", action=action, object_type="probe",
               object_id=f"listing-{i}")
    mine = list_events(session, object_type="probe", limit=None)
    assert [e.action for e in mine.items] == ["auth.login", "auth.logout", "authz.denied",
                                              "auth_x.y", "authax.y"]
    prefixed = list_events(session, action="auth.*", object_type="probe", limit=None)
    assert [e.action for e in prefixed.items] == ["auth.login", "auth.logout"]
    # The prefix is matched literally: "_" is no LIKE wildcard here.
    literal = list_events(session, action="auth_x.*", object_type="probe", limit=None)
    assert [e.action for e in literal.items] == ["auth_x.y"]
    assert list_events(session, action="auth.login", object_type="probe").total == 1
    assert list_events(session, actor="user:1", object_type="probe").total == 2
    assert [e.object_id for e in list_events(session, object_id="listing-3").items] == \
        ["listing-3"]
    window = list_events(session, object_type="probe", since=start + timedelta(minutes=2),
                         until=start + timedelta(minutes=4))
    assert [e.object_id for e in window.items] == ["listing-1", "listing-2"]
    first = mine.items[0].seq
    later = list_events(session, object_type="probe", after_seq=first, limit=2, offset=1)
    assert later.total == 4 and [e.object_id for e in later.items] == ["listing-2",
                                                                       "listing-3"]
    newest = list_events(session, object_type="probe", newest_first=True, limit=1)
    assert newest.total == 5 and newest.items[0].object_id == "listing-4"


def test_deleted_head_row_is_detected(session: Session, clock: FrozenClock) -> None:
    _append(session, clock, 2)
    session.execute(text("DELETE FROM audit_head"))
    session.expire_all()
    report = verify(session)
    assert not report.ok and "head row is missing" in report.reason


def test_append_after_reading_the_head_uses_the_locked_head(
        request: pytest.FixtureRequest, clock: FrozenClock) -> None:
    """A transaction that read the head earlier (``core.anchors.anchor`` does) and appends
    after another transaction appended and committed must chain onto the committed head, not
    onto the copy it read: found by ``bench.load`` on PostgreSQL, where it collided on the
    sequence number (SQLite serialises whole write transactions, so only PostgreSQL can
    interleave them)."""
    from core.audit import AuditHead
    from core.db import make_session_factory, transaction
    from tests.conftest import _drop_postgres, _fresh_postgres, prepare_database

    server = request.getfixturevalue("postgres_server_url")
    name, engine = _fresh_postgres(server)
    try:
        prepare_database(engine)
        sessions = make_session_factory(engine)
        with transaction(sessions) as first:
            record(first, clock, actor="tester", action="thing.changed", object_type="thing",
                   object_id=0)
        with transaction(sessions) as reader:
            stale = reader.get(AuditHead, 1)
            assert stale is not None
            with transaction(sessions) as other:
                between = record(other, clock, actor="other", action="thing.changed",
                                 object_type="thing", object_id=1).seq
            event = record(reader, clock, actor="tester", action="thing.changed",
                           object_type="thing", object_id=2)
            assert event.seq == between + 1
        with sessions() as check:
            report = verify(check)
            assert report.ok, report.reason
            assert report.checked == between + 1
    finally:
        engine.dispose()
        _drop_postgres(server, name)


def test_events_of_one_transaction_lock_the_head_once(session: Session,
                                                        clock: FrozenClock) -> None:
    """The second event of a transaction chains onto the head the first one locked and
    updated, without reading it again; so does an event in a savepoint (the enclosing
    transaction holds the lock). After that savepoint is rolled back, the next event chains
    onto the head as it was before the savepoint (at most a refresh of the expired row,
    never a lost or repeated sequence number). The chain stays intact throughout."""
    from sqlalchemy import event

    reads: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM audit_head" in statement:
            reads.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        record(session, clock, actor="tester", action="thing.changed", object_type="thing",
               object_id=1)
        second = record(session, clock, actor="tester", action="thing.changed",
                        object_type="thing", object_id=2)
        assert len(reads) == 1
        with pytest.raises(RuntimeError), session.begin_nested():
            record(session, clock, actor="tester", action="thing.changed",
                   object_type="thing", object_id=3)
            raise RuntimeError("rolled back")
        assert len(reads) == 1
        third = record(session, clock, actor="tester", action="thing.changed",
                       object_type="thing", object_id=4)
        assert third.seq == second.seq + 1
        assert len(reads) <= 2
    finally:
        event.remove(engine, "before_cursor_execute", count)
    report = verify(session)
    assert report.ok, report.reason


def test_deferred_events_are_appended_in_order_at_the_end(session: Session,
                                                          clock: FrozenClock) -> None:
    """Inside ``deferred`` the events wait in memory (no head lock, no row) and are
    appended in one go when the block ends, in order, chained onto what came before; the
    events of a savepoint rolled back inside the block are dropped with its changes."""
    from sqlalchemy import func, select

    from core.audit import deferred

    before = _append(session, clock, 1)[0]
    count = session.scalar(select(func.count()).select_from(AuditEvent))
    with deferred(session):
        first = record(session, clock, actor="tester", action="thing.batched",
                       object_type="thing", object_id="a")
        try:
            with session.begin_nested():
                record(session, clock, actor="tester", action="thing.batched",
                       object_type="thing", object_id="gone")
                raise RuntimeError("the savepoint rolls back")
        except RuntimeError:
            pass
        with session.begin_nested():
            record(session, clock, actor="tester", action="thing.batched",
                   object_type="thing", object_id="b")
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == count
        assert first.seq is None
    rows = list(session.scalars(select(AuditEvent).where(
        AuditEvent.action == "thing.batched").order_by(AuditEvent.seq)))
    assert [r.object_id for r in rows] == ["a", "b"]
    assert rows[0].seq == before.seq + 1 and rows[0].prev_hash == before.hash
    assert rows[1].prev_hash == rows[0].hash
    assert first.seq == rows[0].seq and first.hash == rows[0].hash
    after = record(session, clock, actor="tester", action="thing.changed",
                   object_type="thing", object_id="c")
    assert after.prev_hash == rows[1].hash
    report = verify(session)
    assert report.ok, report.reason


def test_deferred_events_are_forgotten_on_error(session: Session,
                                                clock: FrozenClock) -> None:
    from sqlalchemy import func, select

    from core.audit import deferred

    _append(session, clock, 1)
    count = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(RuntimeError), deferred(session):
        record(session, clock, actor="tester", action="thing.batched", object_type="thing",
               object_id="x")
        raise RuntimeError("the work failed")
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == count
    record(session, clock, actor="tester", action="thing.changed", object_type="thing",
           object_id="y")
    assert verify(session).ok


def test_deferred_transactions_interleave_until_their_end(
        request: pytest.FixtureRequest, clock: FrozenClock) -> None:
    """On PostgreSQL two transactions deferring their events do not wait for each other's
    head lock while they work: the second one appends and commits while the first is still
    open with events pending; both chain in commit order."""
    from sqlalchemy import select

    from core.audit import deferred
    from core.db import make_session_factory, transaction
    from tests.conftest import _drop_postgres, _fresh_postgres, prepare_database

    server = request.getfixturevalue("postgres_server_url")
    name, engine = _fresh_postgres(server)
    try:
        prepare_database(engine)
        sessions = make_session_factory(engine)
        with transaction(sessions) as first, deferred(first):
            record(first, clock, actor="first", action="thing.changed", object_type="thing",
                   object_id=1)
            with transaction(sessions) as second, deferred(second):
                record(second, clock, actor="second", action="thing.changed",
                       object_type="thing", object_id=2)
            record(first, clock, actor="first", action="thing.changed", object_type="thing",
                   object_id=3)
        with sessions() as check:
            rows = list(check.scalars(select(AuditEvent).where(
                AuditEvent.action == "thing.changed").order_by(AuditEvent.seq)))
            assert [(r.actor, r.object_id) for r in rows] == [
                ("second", "2"), ("first", "1"), ("first", "3")]
            report = verify(check)
            assert report.ok, report.reason
    finally:
        engine.dispose()
        _drop_postgres(server, name)
