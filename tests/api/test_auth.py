"""Login, tokens, API keys, rate limits and the audit events they leave."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from api import accounts
from api.errors import TokenInvalid
from api.models import ApiKey, AuthSession, User
from api.runtime import Runtime
from core.audit import AuditEvent
from core.clock import FrozenClock
from core.db import reading
from tests.api.conftest import PASSWORD, Caller


def _actions(rt: Runtime) -> list[tuple[str, str]]:
    with rt.unit_of_work() as session:
        return [(e.action, e.actor) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("auth.%"))
            .order_by(AuditEvent.seq))]


def test_login_me_logout(client: FlaskClient, callers: dict[str, Caller],
                         api_runtime: Runtime) -> None:
    response = client.post("/v1/auth/login", json={"username": "Contact ",
                                                   "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["role"] == "contact"
    assert body["token"].startswith("tws_")
    headers = {"Authorization": f"Bearer {body['token']}"}
    me = client.get("/v1/me", headers=headers).get_json()
    assert me == {"kind": "user", "id": callers["contact"].principal_id, "name": "contact",
                  "role": "contact", "province_code": "01.051", "holder_id": None}
    assert client.get("/v1/me", headers=headers).headers["Cache-Control"] == "no-store"
    with api_runtime.unit_of_work() as session:
        hashes = list(session.scalars(select(AuthSession.token_hash)))
    assert body["token"] not in hashes  # only hashes are stored
    assert client.post("/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/v1/me", headers=headers).status_code == 401
    assert ("auth.login", "user:contact") in _actions(api_runtime)
    assert ("auth.logout", "user:contact") in _actions(api_runtime)


def test_failed_login_is_audited_and_vague(client: FlaskClient, callers: dict[str, Caller],
                                           api_runtime: Runtime) -> None:
    wrong = client.post("/v1/auth/login", json={"username": "contact", "password": "nope"})
    unknown = client.post("/v1/auth/login", json={"username": "ghost", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["detail"] == unknown.get_json()["detail"]
    assert ("auth.login_failed", "anonymous") in _actions(api_runtime)
    with api_runtime.unit_of_work() as session:
        summaries = [e.summary for e in session.scalars(select(AuditEvent))]
    assert not any("nope" in s for s in summaries)


def test_token_expiry(client: FlaskClient, callers: dict[str, Caller],
                      clock: FrozenClock) -> None:
    response = client.post("/v1/auth/login", json={"username": "operator",
                                                   "password": PASSWORD})
    headers = {"Authorization": f"Bearer {response.get_json()['token']}"}
    assert client.get("/v1/me", headers=headers).status_code == 200
    clock.advance(timedelta(minutes=481))
    assert client.get("/v1/me", headers=headers).status_code == 401


def test_login_rate_limit(client: FlaskClient, callers: dict[str, Caller],
                          clock: FrozenClock) -> None:
    # make_settings: 5 attempts per 60 s, per user name and per address.
    statuses = [client.post("/v1/auth/login", json={"username": "operator",
                                                    "password": "wrong"}).status_code
                for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    limited = client.post("/v1/auth/login", json={"username": "operator",
                                                  "password": PASSWORD})
    assert limited.status_code == 429  # even the right password waits
    assert limited.mimetype == "application/problem+json"
    assert int(limited.headers["Retry-After"]) <= 60
    assert limited.get_json()["type"].endswith("/rate-limited")
    clock.advance(timedelta(seconds=61))
    assert client.post("/v1/auth/login", json={"username": "operator",
                                               "password": PASSWORD}).status_code == 200


def test_disabled_user_loses_access(client: FlaskClient, callers: dict[str, Caller]) -> None:
    admin = callers["dgcl_admin"].headers
    target = callers["operator"]
    assert client.get("/v1/me", headers=target.headers).status_code == 200
    response = client.post(f"/v1/users/{target.principal_id}/active", json={"active": False},
                           headers=admin)
    assert response.status_code == 200 and response.get_json()["active"] is False
    assert client.get("/v1/me", headers=target.headers).status_code == 401
    assert client.post("/v1/auth/login", json={"username": "operator",
                                               "password": PASSWORD}).status_code == 401


def test_create_user_validation(client: FlaskClient, callers: dict[str, Caller],
                                api_runtime: Runtime) -> None:
    admin = callers["dgcl_admin"].headers
    base = {"username": "c.casa", "display_name": "Contact Casa", "role": "contact",
            "password": "a long enough password"}
    missing = client.post("/v1/users", json=base, headers=admin)
    assert missing.status_code == 422 and missing.get_json()["type"].endswith(
        "/invalid-account")
    weak = client.post("/v1/users", json={**base, "province_code": "06.141",
                                          "password": "short"}, headers=admin)
    assert weak.status_code == 422
    made = client.post("/v1/users", json={**base, "province_code": "06.141"}, headers=admin)
    assert made.status_code == 201, made.get_json()
    assert made.headers["Location"].endswith(f"/v1/users/{made.get_json()['id']}")
    assert "password" not in made.get_json()
    again = client.post("/v1/users", json={**base, "province_code": "06.141"}, headers=admin)
    assert again.status_code == 409
    with api_runtime.unit_of_work() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "c.casa"))
    assert stored is not None and stored.startswith("$argon2id$")


def test_api_keys_shown_once_and_revocable(client: FlaskClient, callers: dict[str, Caller],
                                           api_runtime: Runtime) -> None:
    admin = callers["dgcl_admin"].headers
    created = client.post("/v1/api-keys", json={"name": "permits"}, headers=admin)
    assert created.status_code == 201
    key = created.get_json()["key"]
    key_id = created.get_json()["api_key"]["id"]
    headers = {"Authorization": f"Bearer {key}"}
    me = client.get("/v1/me", headers=headers).get_json()
    assert me["kind"] == "apikey" and me["role"] == "platform"
    listed = client.get("/v1/api-keys", headers=admin).get_data(as_text=True)
    assert key not in listed and key.split("_", 2)[2] not in listed
    with api_runtime.unit_of_work() as session:
        assert key.split("_", 2)[2] not in session.scalar(
            select(ApiKey.secret_hash).where(ApiKey.id == key_id))
    tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"}
                      ).status_code == 401
    assert client.delete(f"/v1/api-keys/{key_id}", headers=admin).status_code == 200
    assert client.get("/v1/me", headers=headers).status_code == 401
    actions = _actions(api_runtime)
    assert ("auth.apikey.created", "user:admin") in actions
    assert ("auth.apikey.revoked", "user:admin") in actions


def test_pagination_and_filters(client: FlaskClient, callers: dict[str, Caller]) -> None:
    admin = callers["dgcl_admin"].headers
    first = client.get("/v1/communes?province=01.051&limit=10", headers=admin).get_json()
    assert first["limit"] == 10 and first["offset"] == 0 and first["total"] > 10
    assert first["next_offset"] == 10
    second = client.get("/v1/communes?province=01.051&limit=10&offset=10",
                        headers=admin).get_json()
    codes = [c["code"] for c in first["items"] + second["items"]]
    assert codes == sorted(codes) and len(set(codes)) == 20
    last = client.get(f"/v1/communes?province=01.051&offset={first['total'] - 1}",
                      headers=admin).get_json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    found = client.get("/v1/communes?q=hoceima&kind=urbaine", headers=admin).get_json()
    assert "01.051.01.01" in [c["code"] for c in found["items"]]
    arabic = client.get("/v1/communes?q=الحسيمة", headers=admin).get_json()
    assert arabic["total"] >= 1
    users = client.get("/v1/users?role=contact", headers=admin).get_json()
    assert {u["role"] for u in users["items"]} == {"contact"} and users["total"] == 2
    regions = client.get("/v1/regions", headers=admin).get_json()
    assert regions["total"] == 12


def test_an_api_key_is_read_on_a_read_connection_and_its_revocation_seen_at_once(
        db_engine: Engine, clock: FrozenClock) -> None:
    """What a request authenticated before its unit of work does (``Runtime.reading``):
    committed rows, on both databases; a key revoked by another transaction is refused at
    the next request."""
    secret = secrets.token_urlsafe(32)
    prefix = secrets.token_hex(6)
    with db_engine.begin() as connection:
        connection.execute(insert(ApiKey).values(
            prefix=prefix, secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
            name="read connection", role="platform", created_at=clock.now(),
            created_by="test"))
    try:
        bearer = f"twk_{prefix}_{secret}"
        with reading(db_engine) as connection:
            principal = accounts.authenticate(connection, clock, bearer)
        assert (principal.kind, principal.name, principal.role) == \
            ("apikey", "read connection", "platform")
        with db_engine.begin() as connection:
            connection.execute(update(ApiKey).where(ApiKey.prefix == prefix)
                               .values(revoked_at=clock.now()))
        with reading(db_engine) as connection, pytest.raises(TokenInvalid):
            accounts.authenticate(connection, clock, bearer)
    finally:
        with db_engine.begin() as connection:
            connection.execute(delete(ApiKey).where(ApiKey.prefix == prefix))
