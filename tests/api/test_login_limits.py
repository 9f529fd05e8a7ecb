"""Login limits: failures only, per address, and a per-name backoff that whoever knows only
the name cannot turn against its owner (issue 10 point 2, issue 14). The API's login and
the web form's share the rules."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.ratelimit import Backoff
from api.runtime import Runtime
from core.clock import FrozenClock
from tests.api.conftest import PASSWORD, Caller

OFFICE, ATTACKER, PHONE = "10.1.0.7", "203.0.113.66", "10.9.0.1"


def login(client: FlaskClient, address: str, password: str = PASSWORD,
          username: str = "operator") -> tuple[int, int | None]:
    response = client.post("/v1/auth/login", json={"username": username,
                                                   "password": password},
                           environ_base={"REMOTE_ADDR": address})
    retry = response.headers.get("Retry-After")
    return response.status_code, int(retry) if retry else None


def web_login(app: Flask, address: str, password: str = PASSWORD,
              username: str = "operator") -> int:
    """The browser's way: the form page (its CSRF token), then the POST."""
    browser = app.test_client()
    page = browser.get("/web/login", environ_base={"REMOTE_ADDR": address})
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.get_data(as_text=True))
    assert found is not None
    response = browser.post("/web/login", data={"username": username, "password": password,
                                                "csrf_token": found[1]},
                            environ_base={"REMOTE_ADDR": address})
    return response.status_code


@pytest.fixture
def roomy(api_runtime: Runtime) -> Runtime:
    """Room for 100 failures per address, so that the name backoff shows on its own."""
    api_runtime.settings = api_runtime.settings.replace(
        rate_limit_auth="100/60", login_free_failures=3, login_backoff_max_seconds=16)
    return api_runtime


def test_backoff_delays() -> None:
    backoff = Backoff(free_failures=3, max_seconds=16)
    assert [backoff.delay(n) for n in range(10)] == [0, 0, 0, 1, 2, 4, 8, 16, 16, 16]


def test_successful_logins_do_not_count(client: FlaskClient, app: Flask,
                                        callers: dict[str, Caller]) -> None:
    # make_settings: 5 failed logins per 60 s and per address; an office logs in all day.
    assert {login(client, OFFICE)[0] for _ in range(12)} == {200}
    assert {web_login(app, OFFICE) for _ in range(7)} == {303}
    # A mistyped password now and then costs one failure each, no more.
    for _ in range(3):
        assert login(client, OFFICE, "typo")[0] == 401
        assert login(client, OFFICE)[0] == 200


def test_failed_logins_back_off_per_name(client: FlaskClient, callers: dict[str, Caller],
                                         roomy: Runtime, clock: FrozenClock) -> None:
    assert [login(client, ATTACKER, "guess")[0] for _ in range(3)] == [401] * 3
    waits = []
    for _ in range(6):
        status, retry = login(client, ATTACKER, "guess")
        assert status == 429 and retry is not None
        waits.append(retry)
        clock.advance(timedelta(seconds=retry))
        assert login(client, ATTACKER, "guess")[0] == 401  # the wait is over: one guess
    assert waits == [1, 2, 4, 8, 16, 16]  # exponential, capped (TAWQI_LOGIN_BACKOFF_MAX_...)
    refused = client.post("/v1/auth/login", json={"username": "operator",
                                                  "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": ATTACKER})
    assert refused.status_code == 429  # the address that failed waits, even when right
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["type"].endswith("/rate-limited")
    # Other names are not held back by this one.
    assert login(client, ATTACKER, username="contact")[0] == 200


def test_the_name_alone_locks_nobody_out(client: FlaskClient, app: Flask,
                                         callers: dict[str, Caller], roomy: Runtime,
                                         clock: FrozenClock) -> None:
    for _ in range(3):  # the name is now backing off...
        login(client, ATTACKER, "guess")
    assert login(client, ATTACKER, "guess")[0] == 429
    # ...but its owner, from an address that has not failed on it, gets in.
    assert login(client, OFFICE) == (200, None)
    assert web_login(app, PHONE) == 303
    # A guess from a fresh address is checked (and counted), then that address waits too.
    assert login(client, "198.51.100.9", "guess")[0] == 401
    assert login(client, "198.51.100.9")[0] == 429
    # The owner's own typo and retry from the office: refused while the name backs off...
    assert login(client, OFFICE, "typo")[0] == 401
    status, retry = login(client, OFFICE)
    assert status == 429 and retry is not None
    # ...and let in once the wait is over, which forgets the office's failures.
    clock.advance(timedelta(seconds=retry))
    assert login(client, OFFICE)[0] == 200
    assert login(client, OFFICE, "typo")[0] == 401
    assert login(client, ATTACKER, "guess")[0] == 429  # the attacker still waits


def test_address_limit_counts_failures_of_every_name(client: FlaskClient, app: Flask,
                                                     callers: dict[str, Caller],
                                                     clock: FrozenClock) -> None:
    # make_settings: 5 failures per 60 s per address, whatever the names.
    names = ["operator", "contact", "holder", "ghost", "admin"]
    assert [login(client, ATTACKER, "guess", name)[0] for name in names] == [401] * 5
    status, retry = login(client, ATTACKER, username="contact2")
    assert status == 429 and retry is not None and retry <= 60
    assert web_login(app, ATTACKER, username="contact2") == 429
    assert login(client, OFFICE, username="contact2")[0] == 200  # another address
    clock.advance(timedelta(seconds=61))
    assert login(client, ATTACKER, username="contact2")[0] == 200


def test_web_form_counts_failures_like_the_api(app: Flask, client: FlaskClient,
                                               callers: dict[str, Caller], roomy: Runtime
                                               ) -> None:
    assert [web_login(app, ATTACKER, "guess") for _ in range(3)] == [401] * 3
    assert web_login(app, ATTACKER) == 429
    assert login(client, ATTACKER)[0] == 429  # one set of counters for both doors
    assert web_login(app, OFFICE) == 303
