"""API fixtures: an app over the test database (rolled back after each test) and this
test's own SoftHSM2 token directory, one account per role, and a helper to call the API as
one of them.

The token layer is the real one (``hsm.TokenLibrary`` on SoftHSM2, from
``tests/hsm_fixtures.py``), and the collaborators the app builds from its settings (the CA
authority, the envelope sealer, the token personaliser) are the production ones: the
settings carry random service PINs, and :func:`provision_service_tokens` creates the CA and
the envelope key on the tokens as ``tawqi ca init`` and ``tawqi delivery setup`` would.
Tokens die with the test, so every fixture here is function-scoped.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api import accounts
from api.app import create_app
from api.runtime import Runtime
from core.clock import FrozenClock
from core.config import Settings
from core.scheduler import OUTCOME_OK, Scheduler
from delivery.envelopes import provision_envelope_key
from hsm import TokenLibrary, generate_pin
from pki import ca
from pki.profiles import DOCUMENTATION_POLICY_OID, Profile
from tests.conftest import prepared_engine

PASSWORD = "correct horse battery staple"
PROVINCE = "01.051"  # Al Hoceima
OTHER_PROVINCE = "01.151"
COMMUNE = "01.051.01.01"  # Al Hoceima (urbaine)
OTHER_COMMUNE_PREFIX = "01.151."
PUBLIC_URL = "http://pki.tawqi.ma"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Fast password hashing, tight rate limits, EC P-256 keys and fresh random PINs for
    the service's tokens (SO, issuing CA, root, envelope). To change a setting of a
    running test's runtime, use ``rt.settings.replace(...)``: new PINs would no longer
    open the tokens made with the old ones."""
    values: dict[str, Any] = {
        "var_dir": tmp_path, "argon2_time_cost": 1, "argon2_memory_kib": 256,
        "rate_limit_auth": "5/60", "rate_limit_pin": "3/60", "rate_limit_otp": "3/60",
        "totp_required_roles": "",  # tests/e2e/test_web_second_factor.py turns it on
        "public_url": PUBLIC_URL, "ca_key_type": "EC-P256", "pkcs11_server": "off",
        "policy_oid": DOCUMENTATION_POLICY_OID,
        "so_pin": secrets.token_hex(8), "service_pin": generate_pin(8),
        "root_pin": generate_pin(8), "envelope_token_pin": generate_pin(8),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def api_runtime(db_engine: Engine, tmp_path: Path, clock: FrozenClock,
                softhsm_library: TokenLibrary, softhsm_module_path: str
                ) -> Iterator[Runtime]:
    """A Runtime whose units of work are savepoints of one connection rolled back at the
    end of the test, over this test's SoftHSM2 token directory.

    Its token library counts wrong PINs in memory (``softhsm_library``): the database
    counter writes on a connection of its own, outside the test's transaction, which SQLite
    would make wait for the test's write lock."""
    connection = db_engine.connect()
    outer = connection.begin()
    rt = Runtime(make_settings(tmp_path, pkcs11_module=softhsm_module_path), clock=clock,
                 engine=db_engine, tokens=softhsm_library)
    rt.sessions = sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                               expire_on_commit=False)
    try:
        yield rt
    finally:
        outer.rollback()
        connection.close()


def provision_service_tokens(rt: Runtime) -> None:
    """What an installer does once: the CA (root, issuing CA, OCSP responder, TSA) and the
    envelope token with its AES key, on the runtime's tokens and with its settings' labels
    and PINs. The CA's rows are in the test's transaction: one CA per test, gone with it."""
    settings = rt.settings
    tokens = rt.tokens()
    with rt.unit_of_work() as session:
        ca.init_ca(session, rt.clock, tokens, Profile.from_settings(settings),
                   root_token=settings.root_token_label, ca_token=settings.ca_token_label,
                   so_pin=settings.so_pin, pin=settings.service_pin,
                   root_pin=settings.root_pin, key_type=settings.ca_key_type,
                   actor="installer")
    provision_envelope_key(tokens, token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)


@pytest.fixture
def app(api_runtime: Runtime) -> Flask:
    application = create_app(rt=api_runtime)
    application.testing = False  # let errors reach the problem handlers, as in production
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Caller:
    """Headers for one principal."""

    role: str
    token: str
    principal_id: int
    province_code: str | None = None
    holder_id: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(rt: Runtime, app: Flask, username: str, role: str, *,
              province_code: str | None = None, holder_id: int | None = None) -> Caller:
    passwords = app.extensions["tawqi.passwords"]
    with rt.unit_of_work() as session:
        user = accounts.create_user(session, rt.clock, passwords, username=username,
                                    display_name=username.title(), role=role,
                                    password=PASSWORD, province_code=province_code,
                                    holder_id=holder_id, actor="test")
        issued = accounts.login(session, rt.clock, passwords, username=username,
                                password=PASSWORD, ttl=timedelta(hours=1), client="test")
        return Caller(role, issued.token, user.id, province_code, holder_id)


def make_platform(rt: Runtime) -> Caller:
    with rt.unit_of_work() as session:
        issued = accounts.create_api_key(session, rt.clock, name="permits platform",
                                         actor="test")
        return Caller("platform", issued.key, issued.record.id)


@pytest.fixture
def callers(api_runtime: Runtime, app: Flask) -> dict[str, Caller]:
    """One principal per role, plus a contact of another province."""
    return {
        "anonymous": Caller("anonymous", "", 0),
        "dgcl_admin": make_user(api_runtime, app, "admin", "dgcl_admin"),
        "operator": make_user(api_runtime, app, "operator", "operator"),
        "contact": make_user(api_runtime, app, "contact", "contact", province_code=PROVINCE),
        "other_contact": make_user(api_runtime, app, "contact2", "contact",
                                   province_code=OTHER_PROVINCE),
        "holder": make_user(api_runtime, app, "holder", "holder"),
        "platform": make_platform(api_runtime),
    }


def db_session(rt: Runtime) -> Session:
    """A session on the test connection, for assertions."""
    return rt.sessions()


def headers_of(caller: Caller | None) -> dict[str, str]:
    if caller is None or not caller.token:
        return {}
    return caller.headers


@pytest.fixture(params=["sqlite", "postgresql"])
def own_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of this test's own, with reference data, whose transactions
    really commit (periodic jobs commit, and two workers need two connections)."""
    with prepared_engine(request, tmp_path / "own.db") as engine:
        yield engine


def tick_together(schedulers: list[Scheduler], ran: list[str]) -> None:
    """One tick of each scheduler, all at once (threads behind a barrier), as workers
    ticking together do; ``ran`` gets the name of every job run; any run not ``ok`` fails."""
    barrier = threading.Barrier(len(schedulers))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def tick(scheduler: Scheduler) -> None:
        try:
            barrier.wait()
            runs = scheduler.tick()
            with lock:
                ran.extend(run.name for run in runs)
                errors.extend(AssertionError(f"{r.name}: {r.summary}") for r in runs
                              if r.outcome != OUTCOME_OK)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
