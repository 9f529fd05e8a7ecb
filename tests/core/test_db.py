"""core.db: SQLite's transactions, the writers' and the readers'."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from core.db import make_engine, reading


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
