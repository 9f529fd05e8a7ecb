"""core.db: SQLite's transactions, the writers' and the readers'."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import make_engine, make_session_factory, reading, transaction


def test_a_read_connection_does_not_queue_behind_a_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'tawqi.db'}")
    try:
        with engine.begin() as setup:
            setup.execute(text("CREATE TABLE item (value INTEGER)"))
            setup.execute(text("INSERT INTO item VALUES (1)"))
        writer = engine.connect()
        writer.begin()  # BEGIN IMMEDIATE: the database's write lock, held
        writer.execute(text("INSERT INTO item VALUES (2)"))
        seen: dict[str, list[int]] = {}

        def read() -> None:
            with reading(engine) as connection:
                seen["values"] = list(connection.execute(text("SELECT value FROM item"))
                                      .scalars())

        # A reader that queued for the lock would wait out the busy timeout (60 s).
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(30)
        try:
            assert not reader.is_alive(), "the read waited for the writer's lock"
            assert seen["values"] == [1]  # the writer's row is not committed yet
        finally:
            writer.rollback()
            writer.close()
        # The read left nothing open: a writer takes the lock and commits.
        with engine.begin() as later:
            later.execute(text("INSERT INTO item VALUES (3)"))
        with reading(engine) as connection:
            assert list(connection.execute(text("SELECT value FROM item ORDER BY value"))
                        .scalars()) == [1, 3]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_read_connection_leaves_the_next_unit_of_work_transactional(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """One pooled connection, read on (autocommit), then used by a unit of work that
    fails: its insert must be rolled back, i.e. the read's settings did not stay on the
    connection."""
    url = f"sqlite:///{tmp_path / 'tawqi.db'}" if database == "sqlite" \
        else request.getfixturevalue("postgres_server_url")
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as setup:  # a temporary table: this connection's own
            setup.execute(text("CREATE TEMPORARY TABLE probe (value INTEGER)"))
        with reading(engine) as connection:
            assert connection.execute(text("SELECT count(*) FROM probe")).scalar() == 0
        with pytest.raises(RuntimeError), \
                transaction(make_session_factory(engine)) as session:
            session.execute(text("INSERT INTO probe VALUES (1)"))
            raise RuntimeError("the unit of work fails")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM probe")).scalar() == 0
    finally:
        engine.dispose()
