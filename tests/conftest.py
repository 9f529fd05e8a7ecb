"""Shared fixtures: both databases, a frozen clock, rolled-back sessions.

Every database test runs twice, on SQLite and on PostgreSQL (TAWQI_TEST_DATABASE_URL, or a
throwaway cluster the session starts itself). Each backend gets a fresh database, migrated
with Alembic and loaded with the reference data once per test session; each test then runs
inside a transaction rolled back at the end (savepoints inside).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from core.clock import FrozenClock
from core.db import make_engine, make_session_factory, transaction
from core.migrate import upgrade
from pki.profiles import DOCUMENTATION_POLICY_OID
from tests.pgcluster import ThrowawayCluster

pytest_plugins = ["tests.hsm_fixtures"]

# The tests certify under RFC 5612's documentation arc, as the demo does; processes the tests
# start (the CLI, gunicorn) inherit it. Production must set its own (`tawqi ca init` refuses
# to run without one).
os.environ.setdefault("TAWQI_POLICY_OID", DOCUMENTATION_POLICY_OID)
# The tests run in one process over per-test SoftHSM2 directories: they load the module
# directly. The multi-process tests (tests/hsm/test_token_server.py) start their own token
# server and end it by pid.
os.environ.setdefault("TAWQI_PKCS11_SERVER", "off")

FROZEN_AT = datetime(2026, 3, 16, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url = os.environ.get("TAWQI_TEST_DATABASE_URL")
    if url:
        yield url
        return
    cluster = ThrowawayCluster().start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def _fresh_postgres(server_url: str) -> tuple[str, Engine]:
    name = f"tawqi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server_url).set(database=name)
    return name, make_engine(url.render_as_string(hide_password=False), pool_size=60,
                             max_overflow=20)


def _drop_postgres(server_url: str, name: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def prepare_database(engine: Engine) -> None:
    """Migrate and load what every test may read: territory and the built-in policies."""
    from quotas import policy, refdata

    upgrade(engine)
    clock = FrozenClock(FROZEN_AT)
    with transaction(make_session_factory(engine)) as session:
        refdata.load(session, clock)
        policy.ensure_default_policies(session, clock)


@contextmanager
def prepared_engine(request: pytest.FixtureRequest, sqlite_path: Path) -> Iterator[Engine]:
    """A migrated database with what every test may read (:func:`prepare_database`): SQLite
    at ``sqlite_path`` or a fresh PostgreSQL database (dropped after), as the fixture's
    ``request.param`` says."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{sqlite_path}")
        try:
            prepare_database(engine)
            yield engine
        finally:
            engine.dispose()
        return
    server_url = request.getfixturevalue("postgres_server_url")
    name, engine = _fresh_postgres(server_url)
    try:
        prepare_database(engine)
        yield engine
    finally:
        engine.dispose()
        _drop_postgres(server_url, name)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Engine]:
    with prepared_engine(request, tmp_path_factory.mktemp("sqlite") / "tawqi.db") as engine:
        yield engine


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(FROZEN_AT)


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test, commits included."""
    connection = db_engine.connect()
    outer = connection.begin()
    db_session = Session(bind=connection, join_transaction_mode="create_savepoint",
                         expire_on_commit=False)
    try:
        yield db_session
    finally:
        db_session.close()
        outer.rollback()
        connection.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under `make test` nothing may be skipped: a missing SoftHSM2, PostgreSQL or outside
    judge is an error there, not a skip."""
    if not os.environ.get("TAWQI_TEST_FORBID_SKIPS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"error: {skipped} test(s) skipped; make test allows none")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
