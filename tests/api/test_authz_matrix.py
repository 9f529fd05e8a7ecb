"""The authorisation matrix: every endpoint by every role, allowed or refused.

The expectations below are written out by hand, independently of ``api.policy``: the test
is the specification, the policy module its implementation. A new endpoint without a row
here fails :func:`test_every_operation_is_in_the_matrix`.

"Allowed" means the request got past authentication and authorisation (any status but 401
and 403, and never a 5xx); "refused" means 403 (401 for anonymous callers).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.routing import operations
from api.runtime import Runtime
from delivery import campaigns
from tests.api.conftest import (
    COMMUNE,
    OTHER_PROVINCE,
    PASSWORD,
    PROVINCE,
    Caller,
    make_user,
)
from tests.api.world import build as build_world

ADMIN, OPERATOR, CONTACT, HOLDER, PLATFORM = (
    "dgcl_admin", "operator", "contact", "holder", "platform")
ROLES = (ADMIN, OPERATOR, CONTACT, HOLDER, PLATFORM)
EVERYONE = frozenset(ROLES)
PEOPLE = frozenset((ADMIN, OPERATOR, CONTACT, HOLDER))
PUBLIC = None  # no authentication at all


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # may use {placeholders} filled from the fixtures
    allowed: frozenset[str] | None
    body: Any = None
    rule: str = ""  # the URL rule, when the path alone does not identify it
    optional: bool = False  # a blueprint that may not be installed yet


def rows() -> list[Row]:
    return [
        Row("GET", "/healthz", PUBLIC),
        Row("GET", "/readyz", PUBLIC),
        Row("GET", "/metrics", PUBLIC),
        Row("GET", "/openapi.json", PUBLIC),
        Row("GET", "/docs", PUBLIC),
        Row("GET", "/ca/1.crt", PUBLIC, rule="/ca/<int:authority_id>.crt", optional=True),
        Row("GET", "/crl/1.crl", PUBLIC, rule="/crl/<int:authority_id>.crl", optional=True),
        Row("POST", "/ocsp", PUBLIC, optional=True),
        Row("GET", "/ocsp/MAA=", PUBLIC, rule="/ocsp/<path:encoded>", optional=True),
        Row("POST", "/tsa", PUBLIC, optional=True),
        Row("POST", "/v1/auth/login", PUBLIC, {"username": "victim", "password": PASSWORD}),
        Row("GET", "/v1/me", EVERYONE),
        Row("POST", "/v1/me/password", PEOPLE,
            {"current_password": PASSWORD, "new_password": PASSWORD + " 2"}),
        # accounts
        Row("GET", "/v1/users", frozenset({ADMIN, OPERATOR})),
        Row("GET", "/v1/users/{victim}", frozenset({ADMIN, OPERATOR}),
            rule="/v1/users/<id:user_id>"),
        Row("POST", "/v1/users", frozenset({ADMIN}),
            {"username": "new.{role}", "display_name": "N", "role": "operator",
             "password": "a long enough password"}),
        Row("POST", "/v1/users/{victim}/active", frozenset({ADMIN}), {"active": True},
            rule="/v1/users/<id:user_id>/active"),
        Row("POST", "/v1/users/{victim_holder}/holder", frozenset({ADMIN}), {"holder_id": 1},
            rule="/v1/users/<id:user_id>/holder"),
        Row("GET", "/v1/api-keys", frozenset({ADMIN})),
        Row("POST", "/v1/api-keys", frozenset({ADMIN}), {"name": "k"}),
        Row("DELETE", "/v1/api-keys/{spare_key}", frozenset({ADMIN}),
            rule="/v1/api-keys/<id:key_id>"),
        # reference data and quotas
        Row("GET", "/v1/regions", EVERYONE),
        Row("GET", "/v1/provinces", EVERYONE),
        Row("GET", "/v1/communes", EVERYONE),
        Row("GET", f"/v1/communes/{COMMUNE}", EVERYONE, rule="/v1/communes/<code>"),
        Row("GET", f"/v1/quotas/entities/{COMMUNE}", frozenset({ADMIN, OPERATOR, CONTACT}),
            rule="/v1/quotas/entities/<entity>"),
        Row("GET", "/v1/quotas", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("GET", "/v1/quota-policies", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("POST", "/v1/quota-policies", frozenset({ADMIN}),
            {"version": 1, "census_year": 2024, "first_year": 2030, "services_count": 3,
             "tiers": [{"name": "all", "min_population": 0, "max_population": None,
                        "yearly_count": 3}]}),
        Row("POST", "/v1/quotas/partnerships", frozenset({ADMIN}),
            {"commune_code": COMMUNE, "year": 2026, "count": 1, "unit_price_mad": "850.00",
             "signed_on": "2026-01-05"}),
        Row("GET", "/v1/quotas/billing", frozenset({ADMIN})),
        # audit
        Row("GET", "/v1/audit/events", frozenset({ADMIN})),
        Row("GET", "/v1/audit/verify", frozenset({ADMIN})),
        # delivery
        Row("GET", "/v1/contacts", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("POST", "/v1/contacts", frozenset({ADMIN, OPERATOR}), {
            "province_code": "01.227", "full_name": "N", "title": "T",
            "phone": "0539981234", "postal_address": "A", "email": "c@example.ma",
            "decision_reference": "D-{n}", "decision_date": "2026-02-01",
            "designated_by": "Le gouverneur"}),
        Row("GET", "/v1/contacts/{contact_here}", frozenset({ADMIN, OPERATOR, CONTACT}),
            rule="/v1/contacts/<id:contact_id>"),
        Row("GET", "/v1/holders", frozenset({ADMIN, OPERATOR, CONTACT, HOLDER})),
        Row("POST", "/v1/holders", frozenset({OPERATOR, CONTACT}), {
            "cin": "ZZ{n}", "given_name_fr": "Karim", "surname_fr": "Benali",
            "given_name_ar": "كريم", "surname_ar": "بنعلي", "role": "official",
            "mobile": "06612{n}", "email": "k{n}@example.ma", "commune_code": COMMUNE}),
        Row("GET", "/v1/holders/{holder_here}", frozenset({ADMIN, OPERATOR, CONTACT, HOLDER}),
            rule="/v1/holders/<id:holder_id>"),
        Row("POST", "/v1/holders/{holder_here}/contact-details",
            frozenset({OPERATOR, CONTACT}), {"email": "new{n}@example.ma"},
            rule="/v1/holders/<id:holder_id>/contact-details"),
        Row("POST", "/v1/holders/{holder_here}/civility", frozenset({OPERATOR, CONTACT}),
            {"civility": "mrs"}, rule="/v1/holders/<id:holder_id>/civility"),
        Row("GET", "/v1/holders/{holder_here}/mandates",
            frozenset({ADMIN, OPERATOR, CONTACT, HOLDER}),
            rule="/v1/holders/<id:holder_id>/mandates"),
        Row("POST", "/v1/holders/{holder_here}/mandates", frozenset({OPERATOR, CONTACT}),
            {"role": "vice_president", "started_on": "2026-01-01", "reason": "elected",
             "commune_code": COMMUNE}, rule="/v1/holders/<id:holder_id>/mandates"),
        Row("POST", "/v1/holders/{holder_here}/contact-details/confirm", frozenset({HOLDER}),
            {"channel": "sms", "code": "123456"},
            rule="/v1/holders/<id:holder_id>/contact-details/confirm"),
        # election campaigns
        Row("GET", "/v1/campaigns", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("POST", "/v1/campaigns", frozenset({ADMIN, OPERATOR}), {
            "name": "Communales {n}", "installation_date": "2026-09-20",
            "scope_kind": "province", "scope_codes": [PROVINCE], "funding": "quota"}),
        Row("GET", "/v1/campaigns/{campaign}", frozenset({ADMIN, OPERATOR, CONTACT}),
            rule="/v1/campaigns/<id:campaign_id>"),
        Row("POST", "/v1/campaigns/{campaign}/import", frozenset({ADMIN, OPERATOR}),
            {"csv": "commune_code\n"}, rule="/v1/campaigns/<id:campaign_id>/import"),
        Row("POST", "/v1/campaigns/{campaign}/prepare", frozenset({ADMIN, OPERATOR}),
            {"identity_check": "CIN checked", "max_batches": 1},
            rule="/v1/campaigns/<id:campaign_id>/prepare"),
        Row("POST", "/v1/campaigns/{campaign}/install", frozenset({ADMIN, OPERATOR}),
            {"dry_run": True}, rule="/v1/campaigns/<id:campaign_id>/install"),
        Row("POST", "/v1/campaigns/{campaign}/notify", frozenset({ADMIN, OPERATOR}),
            rule="/v1/campaigns/<id:campaign_id>/notify"),
        Row("GET", "/v1/requests", frozenset({ADMIN, OPERATOR, CONTACT, HOLDER})),
        Row("POST", "/v1/requests", frozenset({OPERATOR, CONTACT}),
            {"holder_id": "{holder_here}", "token_form": "hosted"}),
        Row("GET", "/v1/requests/{request_here}",
            frozenset({ADMIN, OPERATOR, CONTACT, HOLDER}),
            rule="/v1/requests/<id:request_id>"),
        Row("POST", "/v1/requests/{request_here}/approve", frozenset({OPERATOR}),
            {"identity_check": "CIN checked"}, rule="/v1/requests/<id:request_id>/approve"),
        Row("POST", "/v1/requests/{request_here}/personalise", frozenset({OPERATOR}),
            rule="/v1/requests/<id:request_id>/personalise"),
        Row("POST", "/v1/requests/{request_here}/reject", frozenset({OPERATOR}),
            {"reason": "no"}, rule="/v1/requests/<id:request_id>/reject"),
        Row("POST", "/v1/requests/{request_here}/cancel", frozenset({OPERATOR, CONTACT}),
            {"reason": "no"}, rule="/v1/requests/<id:request_id>/cancel"),
        Row("POST", "/v1/requests/{request_here}/renew", frozenset({OPERATOR, CONTACT}),
            rule="/v1/requests/<id:request_id>/renew"),
        Row("POST", "/v1/requests/{request_here}/incident",
            frozenset({OPERATOR, CONTACT, HOLDER}), {"incident": "lost", "note": "bus"},
            rule="/v1/requests/<id:request_id>/incident"),
        Row("POST", "/v1/requests/{request_here}/cancel-personalised",
            frozenset({OPERATOR, CONTACT}), {"reason": "elected no more"},
            rule="/v1/requests/<id:request_id>/cancel-personalised"),
        Row("POST", "/v1/requests/{request_here}/handover", frozenset({OPERATOR, CONTACT}),
            {"handed_to": "Karim Benali", "acknowledgement": "R-1"},
            rule="/v1/requests/<id:request_id>/handover"),
        Row("POST", "/v1/requests/{request_here}/terms", frozenset({HOLDER}),
            {"version": "2026-01"}, rule="/v1/requests/<id:request_id>/terms"),
        Row("POST", "/v1/requests/{request_here}/activate", frozenset({OPERATOR, HOLDER}),
            rule="/v1/requests/<id:request_id>/activate"),
        Row("POST", "/v1/requests/{request_here}/pin", frozenset({HOLDER}),
            {"old_pin": "123456", "new_pin": "654321"},
            rule="/v1/requests/<id:request_id>/pin"),
        Row("POST", "/v1/requests/{request_here}/pin-changed", frozenset({HOLDER}),
            rule="/v1/requests/<id:request_id>/pin-changed"),
        Row("POST", "/v1/pin-reset", frozenset({HOLDER}), {"cin": "{holder_here_cin}"}),
        Row("POST", "/v1/pin-reset/abc/confirm", frozenset({HOLDER}),
            {"cin": "{holder_here_cin}", "code": "123456"},
            rule="/v1/pin-reset/<challenge_id>/confirm"),
        Row("GET", "/v1/batches", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("POST", "/v1/batches", frozenset({OPERATOR}), {"province_code": PROVINCE}),
        Row("GET", "/v1/batches/{batch_here}", frozenset({ADMIN, OPERATOR, CONTACT}),
            rule="/v1/batches/<id:batch_id>"),
        Row("POST", "/v1/batches/{batch_here}/dispatch", frozenset({OPERATOR}),
            {"tracking_number": "EE12345678{n2}MA"},
            rule="/v1/batches/<id:batch_id>/dispatch"),
        Row("POST", "/v1/batches/{batch_here}/receive", frozenset({OPERATOR, CONTACT}), {},
            rule="/v1/batches/<id:batch_id>/receive"),
        Row("GET", f"/v1/provinces/{PROVINCE}/overview",
            frozenset({ADMIN, OPERATOR, CONTACT}), rule="/v1/provinces/<code>/overview"),
        Row("GET", "/v1/reports/overdue-handovers", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("GET", "/v1/reports/expiring", frozenset({ADMIN, OPERATOR, CONTACT})),
        Row("GET", "/v1/outbox", frozenset({ADMIN, OPERATOR})),
        Row("GET", "/v1/outbox/stats", frozenset({ADMIN, OPERATOR})),
        Row("POST", "/v1/outbox/1/retry", frozenset({OPERATOR}),
            rule="/v1/outbox/<id:message_id>/retry"),
        Row("POST", "/v1/outbox/retry-dead", frozenset({OPERATOR}), {}),
        # certificates (an unknown serial: allowed roles get 404, the others 403)
        Row("GET", "/v1/certificates", frozenset({ADMIN, OPERATOR}), rule="/v1/certificates"),
        Row("GET", "/v1/certificates/0a1b", frozenset({ADMIN, OPERATOR, CONTACT, HOLDER,
                                                       PLATFORM}),
            rule="/v1/certificates/<serial>"),
        Row("GET", "/v1/certificates/0a1b/der", frozenset({ADMIN, OPERATOR, CONTACT, HOLDER,
                                                           PLATFORM}),
            rule="/v1/certificates/<serial>/der"),
        Row("POST", "/v1/certificates/0a1b/suspend", frozenset({OPERATOR}), {},
            rule="/v1/certificates/<serial>/suspend"),
        Row("POST", "/v1/certificates/0a1b/release", frozenset({OPERATOR}), {},
            rule="/v1/certificates/<serial>/release"),
        Row("POST", "/v1/certificates/0a1b/revoke", frozenset({OPERATOR}),
            {"reason": "affiliationChanged"}, rule="/v1/certificates/<serial>/revoke"),
        Row("POST", "/v1/certificates/0a1b/renew", frozenset({OPERATOR}),
            rule="/v1/certificates/<serial>/renew"),
        Row("POST", "/v1/certificates/revoke-bulk", frozenset({OPERATOR}),
            {"serials": ["0a1b"], "reason": "affiliationChanged", "dry_run": True}),
        # remote signing (CSC-style) and verification
        Row("POST", "/csc/v2/info", PUBLIC),
        Row("POST", "/csc/v2/credentials/list",
            frozenset({ADMIN, OPERATOR, HOLDER, PLATFORM}), {"userID": "{holder_here_cin}"}),
        Row("POST", "/csc/v2/credentials/info",
            frozenset({ADMIN, OPERATOR, HOLDER, PLATFORM}), {"credentialID": "0a1b"}),
        Row("POST", "/csc/v2/credentials/sendOTP", frozenset({HOLDER, PLATFORM}),
            {"credentialID": "0a1b"}),
        Row("POST", "/csc/v2/credentials/authorize", frozenset({HOLDER, PLATFORM}),
            {"credentialID": "0a1b", "PIN": "123456", "OTP": "123456",
             "hashes": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}),
        Row("POST", "/csc/v2/signatures/signHash", frozenset({HOLDER, PLATFORM}),
            {"credentialID": "0a1b", "SAD": "x",
             "hashes": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}),
        Row("POST", "/csc/v2/signatures/signDoc", frozenset({HOLDER, PLATFORM})),
        # CSC v1.0.4.0: the same actions with v1 names
        Row("POST", "/csc/v1/info", PUBLIC),
        Row("POST", "/csc/v1/credentials/list",
            frozenset({ADMIN, OPERATOR, HOLDER, PLATFORM}), {"userID": "{holder_here_cin}"}),
        Row("POST", "/csc/v1/credentials/info",
            frozenset({ADMIN, OPERATOR, HOLDER, PLATFORM}), {"credentialID": "0a1b"}),
        Row("POST", "/csc/v1/credentials/sendOTP", frozenset({HOLDER, PLATFORM}),
            {"credentialID": "0a1b"}),
        Row("POST", "/csc/v1/credentials/authorize", frozenset({HOLDER, PLATFORM}),
            {"credentialID": "0a1b", "PIN": "123456", "OTP": "123456", "numSignatures": 1,
             "hash": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}),
        Row("POST", "/csc/v1/signatures/signHash", frozenset({HOLDER, PLATFORM}),
            {"credentialID": "0a1b", "SAD": "x", "signAlgo": "1.2.840.10045.4.3.2",
             "hash": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}),
        # OAuth 2.0 (credential scope): the browser's redirect, and the code exchange
        # where the client authenticates with its API key in the form
        Row("GET", "/oauth2/authorize", PUBLIC),
        Row("POST", "/oauth2/token", PUBLIC),
        Row("POST", "/v1/verify", EVERYONE),
        Row("POST", "/v1/extend", frozenset({OPERATOR, PLATFORM})),
        # last: it revokes the caller's token
        Row("POST", "/v1/auth/logout", PEOPLE),
    ]


@pytest.fixture
def app(api_runtime: Runtime) -> Flask:
    # Generous limits: the matrix sends many attempts from one address.
    api_runtime.settings = api_runtime.settings.replace(rate_limit_auth="10000/60",
                                                        rate_limit_pin="10000/60",
                                                        rate_limit_otp="10000/60")
    return create_app(rt=api_runtime)


@pytest.fixture
def values(api_runtime: Runtime, app: Flask, callers: dict[str, Caller]) -> dict[str, Any]:
    from api import accounts

    world = build_world(api_runtime, app, callers)
    victim = make_user(api_runtime, app, "victim", "operator")
    victim_holder = make_user(api_runtime, app, "victim.holder", "holder")
    with api_runtime.unit_of_work() as session:
        spare = accounts.create_api_key(session, api_runtime.clock, name="spare", actor="t")
        spare_id = spare.record.id
        campaign = campaigns.open_campaign(
            session, api_runtime.clock, name="Matrix campaign", scope_kind="nation",
            installation_date=date(2026, 9, 20), funding="quota", actor="t").id
    return {"victim": victim.principal_id, "victim_holder": victim_holder.principal_id,
            "spare_key": spare_id, "campaign": campaign, **vars(world)}


_counter = itertools.count(100_000)


def _fill(text: Any, values: dict[str, Any]) -> Any:
    if isinstance(text, str):
        if "{n}" in text or "{n2}" in text:
            n = next(_counter)
            text = text.replace("{n}", str(n)).replace("{n2}", f"{n % 100:02d}")
        if text.startswith("{") and text.endswith("}") and text[1:-1] in values \
                and isinstance(values[text[1:-1]], int):
            return values[text[1:-1]]
        for key, value in values.items():
            text = text.replace("{" + key + "}", str(value))
        return text
    if isinstance(text, dict):
        return {k: _fill(v, values) for k, v in text.items()}
    if isinstance(text, list):
        return [_fill(v, values) for v in text]
    return text


def call(client: FlaskClient, row: Row, caller: Caller | None, values: dict[str, Any]
         ) -> Any:
    headers = caller.headers if caller and caller.token else {}
    path = _fill(row.path, values)
    body = _fill(row.body, values)
    send: Callable[..., Any] = getattr(client, row.method.lower())
    return send(path, json=body, headers=headers) if body is not None \
        else send(path, headers=headers)


def test_every_operation_is_in_the_matrix(app: Flask) -> None:
    declared = {(op.method, rule) for op, rule in operations(app)}
    covered = {(r.method, r.rule or r.path) for r in rows()}
    required = {(r.method, r.rule or r.path) for r in rows() if not r.optional}
    assert declared - covered == set(), "operations missing from the matrix"
    assert required - declared == set(), "matrix rows with no operation"


def test_matrix(client: FlaskClient, callers: dict[str, Caller],
                values: dict[str, Any]) -> None:
    mismatches = []
    declared = {(op.method, rule) for op, rule in operations(client.application)}
    for row in rows():
        if (row.method, row.rule or row.path) not in declared:
            continue
        for role in ("anonymous", *ROLES):
            caller = callers[role]
            response = call(client, row, caller, {**values, "role": role})
            status = response.status_code
            if status >= 500:
                mismatches.append(f"{row.method} {row.path} as {role}: {status}")
                continue
            if row.allowed is PUBLIC:
                ok = status not in (401, 403)
            elif role == "anonymous":
                ok = status == 401
            elif role in row.allowed:
                ok = status not in (401, 403)
            else:
                ok = status == 403
            if not ok:
                mismatches.append(f"{row.method} {row.path} as {role}: {status} "
                                  f"{response.get_data(as_text=True)[:200]}")
    assert mismatches == []


def test_contact_scope_on_quotas(client: FlaskClient, callers: dict[str, Caller]) -> None:
    contact = callers["contact"].headers
    own = client.get(f"/v1/quotas/entities/{COMMUNE}", headers=contact)
    assert own.status_code == 200
    other = client.get(f"/v1/quotas/entities/{OTHER_PROVINCE}", headers=contact)
    assert other.status_code == 403
    assert other.get_json()["type"].endswith("/out-of-scope")
    report = client.get("/v1/quotas?limit=500", headers=contact).get_json()
    assert {line["province_code"] for line in report["items"]} == {PROVINCE}
    refused = client.get(f"/v1/quotas?province={OTHER_PROVINCE}", headers=contact)
    assert refused.status_code == 403


@pytest.mark.parametrize(("role", "status", "problem"), [
    (ADMIN, 403, "second-factor-not-enrolled"), (OPERATOR, 403, "second-factor-not-enrolled"),
    (CONTACT, 200, None), (HOLDER, 200, None)])
def test_password_login_by_role_under_the_second_factor_policy(
        client: FlaskClient, api_runtime: Runtime, callers: dict[str, Caller], role: str,
        status: int, problem: str | None) -> None:
    """``POST /v1/auth/login`` with the default ``TAWQI_TOTP_REQUIRED_ROLES``: the roles that
    need a second factor are refused until they enrol (then they send ``totp_code``:
    tests/api/test_second_factor.py); the others log in with their password."""
    api_runtime.settings = api_runtime.settings.replace(totp_required_roles="operator,"
                                                                            "dgcl_admin")
    username = {ADMIN: "admin", OPERATOR: "operator", CONTACT: "contact",
                HOLDER: "holder"}[role]
    answer = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == status, answer.get_json()
    if problem is not None:
        assert answer.get_json()["type"].endswith("/" + problem)
    else:
        assert answer.get_json()["role"] == role
