"""The TOTP second factor (api.totp, api.accounts): RFC 6238's test vectors, ±1 step and no
replay; the secret sealed on the token layer; a password-checked login of an account with a
second factor gets a pending token that opens nothing else, five codes at most; recovery
codes hashed and single-use; the API takes the code beside the password (refusing the
password alone, counting wrong codes as failed logins) and refuses a role that must have a
second factor until it enrols."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

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
from api.wiring.flaskapp import wiring as app_wiring
from core.audit import AuditEvent
from core.clock import FrozenClock
from core.db import Base
from delivery.envelopes import Sealer, provision_envelope_key
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


def _api_sealer(app: Flask, api_runtime: Runtime) -> Sealer:
    """The sealer the API's login opens the secret with (the app's envelope token)."""
    settings = api_runtime.settings
    provision_envelope_key(api_runtime.tokens(), token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)
    return app_wiring(app).sealer()


def _login(client: FlaskClient, username: str, **extra: str) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/auth/login", json={"username": username,
                                                   "password": PASSWORD, **extra})
    if response.status_code >= 400:
        assert response.content_type == "application/problem+json"
    return response.status_code, response.get_json()


@pytest.mark.hsm
def test_the_api_login_takes_the_second_factor_code(
        app: Flask, client: FlaskClient, api_runtime: Runtime, clock: FrozenClock,
        callers: dict[str, Caller]) -> None:
    sealer = _api_sealer(app, api_runtime)
    api_runtime.settings = api_runtime.settings.replace(totp_required_roles="operator")
    user_id = callers["operator"].principal_id
    with api_runtime.unit_of_work() as session:
        enrolment = accounts.start_totp(session, clock, sealer, user_id)
        secret = bytes.fromhex(_b32_to_hex(enrolment.secret_base32))
        codes = accounts.confirm_totp(session, clock, sealer, user_id,
                                      totp.code_at(secret, totp.step_of(clock.now())),
                                      actor="t")
    clock.advance(timedelta(seconds=30))
    now = totp.code_at(secret, totp.step_of(clock.now()))
    wrong = "000000" if now != "000000" else "111111"

    status, body = _login(client, "operator")  # the password alone
    assert (status, body["type"].rsplit("/", 1)[1], body["field"]) == \
        (401, "second-factor-required", "totp_code")
    status, body = _login(client, "operator", totp_code=wrong)
    assert (status, body["type"].rsplit("/", 1)[1]) == (401, "second-factor-failed")
    status, body = _login(client, "operator", totp_code=now)
    assert status == 200 and body["role"] == "operator"
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.get_json()["name"]
    status, body = _login(client, "operator", totp_code=now)  # never twice
    assert (status, body["type"].rsplit("/", 1)[1]) == (401, "second-factor-failed")
    assert _login(client, "operator", totp_code=codes[0])[0] == 200  # a recovery code
    assert _login(client, "operator", totp_code=codes[0])[0] == 401  # once

    with api_runtime.unit_of_work() as session:
        events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.object_id.in_(["operator", str(user_id)]),
            AuditEvent.action.in_(["auth.login", "auth.login_failed"]))
            .order_by(AuditEvent.seq)))
        assert [e.action for e in events][-6:] == [
            "auth.login_failed", "auth.login_failed", "auth.login", "auth.login_failed",
            "auth.login", "auth.login_failed"]
        assert [json.loads(e.summary)["via"] for e in events
                if e.action == "auth.login"][-2:] == ["password+totp",
                                                      "password+recovery-code"]
        stored = session.get_one(User, user_id)
        assert secret not in (stored.totp_sealed or b"")
        assert enrolment.secret_base32 not in "".join(e.summary for e in events)


@pytest.mark.hsm
def test_wrong_codes_count_as_failed_logins(
        app: Flask, client: FlaskClient, api_runtime: Runtime, clock: FrozenClock,
        callers: dict[str, Caller]) -> None:
    sealer = _api_sealer(app, api_runtime)
    api_runtime.settings = api_runtime.settings.replace(rate_limit_auth="3/300",
                                                        totp_required_roles="operator")
    user_id = callers["operator"].principal_id
    with api_runtime.unit_of_work() as session:
        enrolment = accounts.start_totp(session, clock, sealer, user_id)
        secret = bytes.fromhex(_b32_to_hex(enrolment.secret_base32))
        accounts.confirm_totp(session, clock, sealer, user_id,
                              totp.code_at(secret, totp.step_of(clock.now())), actor="t")
    clock.advance(timedelta(seconds=30))
    now = totp.code_at(secret, totp.step_of(clock.now()))
    wrong = "000000" if now != "000000" else "111111"
    assert _login(client, "operator")[0] == 401
    assert _login(client, "operator", totp_code=wrong)[0] == 401
    assert _login(client, "operator", totp_code=wrong)[0] == 401
    # three failures from this address: even the right code now waits
    status, body = _login(client, "operator", totp_code=now)
    assert status == 429 and body["type"].endswith("rate-limited")


def test_a_role_that_needs_a_second_factor_enrols_before_the_api_lets_it_in(
        client: FlaskClient, api_runtime: Runtime, callers: dict[str, Caller]) -> None:
    api_runtime.settings = api_runtime.settings.replace(totp_required_roles="operator,"
                                                                            "dgcl_admin")
    status, body = _login(client, "admin")
    assert (status, body["type"].rsplit("/", 1)[1]) == (403, "second-factor-not-enrolled")
    assert "/web/" not in body.get("token", "")
    assert _login(client, "contact")[0] == 200  # a role without the requirement


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
