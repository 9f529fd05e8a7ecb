"""The TOTP second factor (api.totp, api.accounts): RFC 6238's test vectors, ±1 step and no
replay; the secret sealed on the token layer; a password-checked login of an account with a
second factor gets a pending token that opens nothing else, five codes at most; recovery
codes hashed and single-use; the API refuses such an account's password alone."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from api import accounts, totp
from api.errors import SecondFactorInvalid, TokenInvalid
from api.models import RecoveryCode, User
from api.runtime import Runtime
from core.audit import AuditEvent
from core.clock import FrozenClock
from core.db import Base
from tests.api.conftest import PASSWORD, Caller
from tests.delivery.conftest import ServiceTokens, service_tokens  # noqa: F401
from tests.secrets_at_rest import assert_kept_secret

RFC_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(("at", "code"), [(59, "287082"), (1111111109, "081804"),
                                          (1234567890, "005924"), (2000000000, "279037")])
def test_rfc_6238_vectors(at: int, code: str) -> None:
    # RFC 6238 appendix B, SHA-1, the last six of its eight digits
    assert totp.code_at(RFC_SECRET, totp.step_of(datetime.fromtimestamp(at, UTC))) == code


def test_one_step_either_side_and_never_twice() -> None:
    now = datetime.fromtimestamp(1_800_000_000, UTC)
    step = totp.step_of(now)
    for delta in (-1, 0, 1):
        assert totp.match(RFC_SECRET, totp.code_at(RFC_SECRET, step + delta), now, None) \
            == step + delta
    assert totp.match(RFC_SECRET, totp.code_at(RFC_SECRET, step + 2), now, None) is None
    assert totp.match(RFC_SECRET, totp.code_at(RFC_SECRET, step), now, step) is None
    assert totp.match(RFC_SECRET, "12345", now, None) is None
    uri = totp.uri(RFC_SECRET, "operator")
    assert uri.startswith("otpauth://totp/Tawqi:operator?secret=GEZDGNBVGY3TQOJQ")


def _enrol(session: Session, clock: FrozenClock, tokens: ServiceTokens,
           user_id: int) -> tuple[bytes, list[str]]:
    found = accounts.start_totp(session, clock, tokens.sealer, user_id)
    secret = bytes.fromhex(_b32_to_hex(found.secret_base32))
    with pytest.raises(SecondFactorInvalid):
        accounts.confirm_totp(session, clock, tokens.sealer, user_id, "000000"
                              if totp.code_at(secret, totp.step_of(clock.now())) != "000000"
                              else "111111", actor="t")
    codes = accounts.confirm_totp(session, clock, tokens.sealer, user_id,
                                  totp.code_at(secret, totp.step_of(clock.now())), actor="t")
    return secret, codes


def _b32_to_hex(text: str) -> str:
    import base64
    return base64.b32decode(text + "=" * (-len(text) % 8)).hex()


@pytest.mark.hsm
def test_pending_login_then_code_and_recovery_codes(
        app: Flask, api_runtime: Runtime, clock: FrozenClock, callers: dict[str, Caller],
        service_tokens: ServiceTokens) -> None:  # noqa: F811
    with api_runtime.unit_of_work() as session:
        _pending_login(app, session, clock, callers, service_tokens)


def _pending_login(app: Flask, session: Session, clock: FrozenClock,
                   callers: dict[str, Caller], service_tokens: ServiceTokens) -> None:  # noqa: F811
    passwords = app.extensions["tawqi.passwords"]
    user_id = callers["operator"].principal_id
    secret, codes = _enrol(session, clock, service_tokens, user_id)
    user = session.get_one(User, user_id)
    assert user.totp_enabled_at is not None and secret not in (user.totp_sealed or b"")
    hashes = list(session.scalars(select(RecoveryCode.code_hash)
                                  .where(RecoveryCode.user_id == user_id)))
    assert len(codes) == len(hashes) == accounts.RECOVERY_CODES
    assert not set(codes) & set(hashes)

    def pending() -> str:
        issued = accounts.login(session, clock, passwords, username="operator",
                                password=PASSWORD, ttl=timedelta(hours=1), client="x",
                                second_factor_step=True)
        assert issued.pending
        with pytest.raises(TokenInvalid):  # it opens nothing else
            accounts.authenticate(session, clock, issued.token)
        return issued.token

    def complete(token: str, code: str) -> accounts.IssuedToken | None:
        return accounts.complete_second_factor(session, clock, service_tokens.sealer,
                                               token=token, code=code,
                                               ttl=timedelta(hours=1), client="x")

    token = pending()
    used = totp.code_at(secret, totp.step_of(clock.now()))
    assert complete(token, used) is None  # the enrolment's code, not twice
    clock.advance(timedelta(seconds=30))
    full = complete(token, totp.code_at(secret, totp.step_of(clock.now())))
    assert full is not None and not full.pending
    assert accounts.authenticate(session, clock, full.token).second_factor
    assert complete(token, "123456") is None  # the pending token is spent

    token = pending()
    for _ in range(accounts.SECOND_FACTOR_ATTEMPTS):
        assert complete(token, "999999" if used != "999999" else "888888") is None
    clock.advance(timedelta(seconds=30))
    assert complete(token, totp.code_at(secret, totp.step_of(clock.now()))) is None

    token = pending()
    assert complete(token, codes[0].upper()) is not None
    assert complete(pending(), codes[0]) is None  # once


@pytest.mark.hsm
def test_the_api_refuses_the_password_alone(
        client: FlaskClient, api_runtime: Runtime, clock: FrozenClock,
        callers: dict[str, Caller], service_tokens: ServiceTokens) -> None:  # noqa: F811
    with api_runtime.unit_of_work() as session:
        _enrol(session, clock, service_tokens, callers["operator"].principal_id)
    response = client.post("/v1/auth/login", json={"username": "operator",
                                                   "password": PASSWORD})
    assert response.status_code == 401
    assert response.get_json()["type"].endswith("second-factor-required")


def test_the_api_migrations_match_the_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, Base.metadata) if "'api_" in repr(d)]
    assert diffs == []


@pytest.mark.hsm
def test_enrolment_and_reset_are_audited_and_the_secret_kept_sealed(
        app: Flask, api_runtime: Runtime, clock: FrozenClock, callers: dict[str, Caller],
        service_tokens: ServiceTokens, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """Starting, confirming and resetting the second factor each write an audit event with
    the change; the secret (raw, base32), its codes and the recovery codes are in no row of
    the database (only sealed or hashed) and in no log line."""
    caplog.set_level(logging.DEBUG)
    user_id = callers["operator"].principal_id
    with api_runtime.unit_of_work() as session:
        secret, codes = _enrol(session, clock, service_tokens, user_id)
        first = totp.code_at(secret, totp.step_of(clock.now()))
        b32 = totp.to_base32(secret)
        clear = (secret, b32, b32.lower(), secret.hex(), first, *codes)
        assert_kept_secret(session, caplog.text, *clear)  # enrolled: sealed, hashed
        accounts.reset_second_factor(session, clock, user_id, actor="user:admin")
        actions = session.scalars(select(AuditEvent.action).where(
            AuditEvent.object_type == "user", AuditEvent.object_id == str(user_id),
            AuditEvent.action.like("auth.user.second_factor%"))
            .order_by(AuditEvent.seq)).all()
        assert actions == ["auth.user.second_factor_started",
                           "auth.user.second_factor_enabled",
                           "auth.user.second_factor_reset"]
        assert_kept_secret(session, caplog.text, *clear)
