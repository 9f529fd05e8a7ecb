"""SQLAlchemy 2 engine, sessions and the declarative base shared by every package.

SQLite (the embedded default) runs in WAL mode and opens every transaction with
``BEGIN IMMEDIATE``: writers queue on the database lock instead of failing half-way with
``database is locked`` when a read turns into a write. A connection opened for reads only
(:func:`reading`) begins nothing: its statements autocommit, and do not queue behind
writers. PostgreSQL uses row locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


#: Execution option of the connections :func:`reading` opens.
READ_ONLY = "tawqi_read_only"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A read connection (see reading) begins nothing: each of its statements is a
            # read transaction of its own, which takes no write lock.
            if not conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) \
        else session_or_engine
    return bind.dialect.name == "postgresql"


def dialect_insert(session_or_engine: Session | Engine) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_nothing``/``do_update``): PostgreSQL's
    or SQLite's. Imported on use: the PostgreSQL dialect package alone takes a good part of a
    command's start-up (it imports its asyncio drivers)."""
    if is_postgres(session_or_engine):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for a read or two and nothing else, without the ORM's session (e.g. the
    authentication of every request). Its statements autocommit: each is a read transaction
    of its own (a snapshot per statement), with no BEGIN or ROLLBACK around it; on SQLite
    it never queues behind a writer for the database lock."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"  # reset when the connection goes back
    with engine.connect().execution_options(**options) as connection:
        yield connection


@contextmanager
def exclusive(session: Session, name: str) -> Iterator[None]:
    """Run the block alone across every process sharing the database (e.g. choosing a free
    token slot, which two processes behind one token server could otherwise pick together).

    PostgreSQL: a session-level advisory lock on ``name``, released when the block ends
    (not held to the end of the transaction). SQLite: every transaction already holds the
    database's write lock from its start (BEGIN IMMEDIATE), which excludes the others; a
    statement makes sure the transaction has started."""
    from sqlalchemy import text

    if not is_postgres(session):
        session.execute(text("SELECT 1"))
        yield
        return
    key = {"key": name}
    session.execute(text("SELECT pg_advisory_lock(hashtext(:key))"), key)
    try:
        yield
    finally:
        session.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), key)
