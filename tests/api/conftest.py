"""API fixtures: an app over the test database (rolled back after each test), one account
per role, and a helper to call the API as one of them."""

from __future__ import annotations

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

PASSWORD = "correct horse battery staple"
PROVINCE = "01.051"  # Al Hoceima
OTHER_PROVINCE = "01.151"
COMMUNE = "01.051.01.01"  # Al Hoceima (urbaine)
OTHER_COMMUNE_PREFIX = "01.151."


class FakeTokens:
    """Stands for the token layer where a test needs only /readyz to see a module."""

    def __init__(self) -> None:
        self.fail = False

    def token_exists(self, label: str) -> bool:
        if self.fail:
            raise RuntimeError("module gone")
        return False

    def change_pin(self, label: str, old_pin: str, new_pin: str) -> None:
        if self.fail:
            raise RuntimeError("module gone")

    def release(self, label: str) -> None:
        pass

    def close(self) -> None:
        pass


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "var_dir": tmp_path, "argon2_time_cost": 1, "argon2_memory_kib": 256,
        "rate_limit_auth": "5/60", "rate_limit_pin": "3/60", "rate_limit_otp": "3/60",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def api_runtime(db_engine: Engine, tmp_path: Path, clock: FrozenClock
                ) -> Iterator[Runtime]:
    """A Runtime whose units of work are savepoints of one connection rolled back at the
    end of the test, and whose token layer is a stand-in (the hsm tests cover the real
    one; tests that need SoftHSM replace it)."""
    connection = db_engine.connect()
    outer = connection.begin()
    rt = Runtime(make_settings(tmp_path), clock=clock, engine=db_engine)
    rt.sessions = sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                               expire_on_commit=False)
    rt._tokens = FakeTokens()  # type: ignore[assignment]
    try:
        yield rt
    finally:
        outer.rollback()
        connection.close()


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
