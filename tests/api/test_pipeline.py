"""The request pipeline of declared operations: authentication before anything is read of
the request (issue 10 point 8), the JSON depth bound (point 7), and rate limits keyed on
what they protect, with the machine client's own limit (point 2)."""

from __future__ import annotations

import json
import re

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import policy
from api.routing import MAX_JSON_DEPTH, json_depth, operations
from api.runtime import Runtime
from tests.api.conftest import Caller

ROLES = ("dgcl_admin", "operator", "contact", "holder", "platform")
INVALID_BODY = {"__bogus__": [[["x"]]], "limit": "many"}
DEEP_ARRAYS = "[" * 100_000 + "]" * 100_000  # 200 KB, under TAWQI_MAX_JSON_KB
DEEP_OBJECTS = '{"a":' * 40_000 + "1" + "}" * 40_000  # 240 KB


def _call(client: FlaskClient, method: str, url: str, headers: dict[str, str]
          ) -> TestResponse:
    return client.open(url, method=method, json=INVALID_BODY, headers=headers,
                       query_string={"__bogus__": "1", "limit": "-5"})


def _secured(app: Flask) -> list[tuple[str, str, str]]:
    """(method, URL with every path parameter filled, action) of each secured operation."""
    found = []
    for op, rule in operations(app):
        if op.action is not None:
            found.append((op.method, re.sub(r"<[^>]+>", "1", rule), op.action))
    return found


def test_every_secured_operation_authenticates_first(app: Flask, client: FlaskClient,
                                                     callers: dict[str, Caller]) -> None:
    secured = _secured(app)
    assert len(secured) >= 60  # the walk covers the whole API, not a sample
    for headers in ({}, {"Authorization": "Bearer tws_not-a-token"},
                    {"Authorization": "Bearer twk_ab12cd34_not-a-key"},
                    {"Authorization": "Basic b3BlcmF0b3I6cGFzc3dvcmQ="}):
        wrong = [(method, url, response.status_code, response.get_json().get("errors"))
                 for method, url, _ in secured
                 if (response := _call(client, method, url, headers)).status_code != 401]
        assert not wrong, (headers, wrong)


def test_a_role_without_the_action_gets_403_before_validation(
        app: Flask, client: FlaskClient, callers: dict[str, Caller]) -> None:
    checked, wrong = 0, []
    for method, url, action in _secured(app):
        role = next((r for r in ROLES if policy.reach(r, action) is None), None)
        if role is None:
            continue  # every role may try it: validation and scope decide
        checked += 1
        response = _call(client, method, url, callers[role].headers)
        if response.status_code != 403:
            wrong.append((method, url, role, response.status_code))
    assert checked >= 40 and not wrong, wrong


def test_json_depth_helper() -> None:
    assert json_depth(3) == 0 and json_depth([]) == 1
    assert json_depth({"a": [1, {"b": [[]]}], "c": {}}) == 5
    nested: object = 0
    for _ in range(MAX_JSON_DEPTH + 5):
        nested = [nested]
    assert json_depth(nested) > MAX_JSON_DEPTH


def _deep(response: TestResponse) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"].endswith("/json-too-deep") and body["max_depth"] == MAX_JSON_DEPTH


def test_deep_json_is_a_400_not_a_500(client: FlaskClient, callers: dict[str, Caller]
                                      ) -> None:
    contact = callers["contact"].headers
    json_type = {"Content-Type": "application/json"}
    for deep in (DEEP_ARRAYS, DEEP_OBJECTS):
        assert len(deep) >= 200_000
        _deep(client.post("/v1/auth/login", data=deep, headers=json_type))  # anonymous
        _deep(client.post("/v1/holders", data=deep, headers={**contact, **json_type}))
        # Anonymous on a secured operation: 401, the body is not even read.
        assert client.post("/v1/holders", data=deep, headers=json_type).status_code == 401
    # Just past the bound, inside a field: 400; at the bound: parsed, then validated (422).
    too_deep = {"username": "contact", "password": "x",
                "extra": json.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)}
    _deep(client.post("/v1/auth/login", json=too_deep))
    at_bound = {**too_deep, "extra": json.loads("[" * (MAX_JSON_DEPTH - 1) +
                                                "]" * (MAX_JSON_DEPTH - 1))}
    assert client.post("/v1/auth/login", json=at_bound).status_code == 422


def _send_otp(client: FlaskClient, caller: Caller, credential: str) -> int:
    return client.post("/csc/v2/credentials/sendOTP", json={"credentialID": credential},
                       headers=caller.headers).status_code


def test_pin_and_otp_limits_are_per_credential_and_the_client_has_its_own(
        client: FlaskClient, callers: dict[str, Caller], api_runtime: Runtime) -> None:
    # make_settings: 3 one-time-code operations per 60 s; the platform's key: 20 per 60 s.
    api_runtime.settings = api_runtime.settings.replace(rate_limit_client="20/60")
    platform, holder = callers["platform"], callers["holder"]
    # One key serves many holders: 15 credentials, none limited (404: no such credential).
    assert {_send_otp(client, platform, f"{n:x}") for n in range(1, 16)} == {404}
    # One credential is limited whoever asks, however its serial is spelt.
    assert [_send_otp(client, platform, c) for c in ("abc", "ABC", "abc", "abc")] == \
        [404, 404, 404, 429]
    assert _send_otp(client, holder, "abc") == 429
    # PIN attempts on it have a bucket of their own.
    authorize = client.post("/csc/v2/credentials/authorize", headers=platform.headers,
                            json={"credentialID": "abc", "PIN": "123456", "OTP": "123456",
                                  "hashes": ["AAAA"]})
    assert authorize.status_code == 404
    # The key's own limit counts sendOTP and authorize together, refused calls excepted:
    # 19 so far, so one more passes and the 21st is refused.
    assert _send_otp(client, platform, "100") == 404
    limited = client.post("/csc/v2/credentials/sendOTP", json={"credentialID": "101"},
                          headers=platform.headers)
    assert limited.status_code == 429
    assert limited.get_json()["limit"] == 20 and int(limited.headers["Retry-After"]) <= 60
    # A holder's own calls do not spend the platform's budget, nor the reverse.
    assert _send_otp(client, holder, "102") == 404
