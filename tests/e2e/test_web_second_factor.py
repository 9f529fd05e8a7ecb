"""Operators and administrators sign in with a password and a TOTP second factor, in
French and in Arabic: a user of a role that needs one is sent to the enrolment page (QR
code and key), enables it with a first code and gets recovery codes once; the next login
asks for the code, refuses the same code twice, takes the next one, and takes a recovery
code once; an administrator resets a user's second factor (audited, the secret never in
clear) and that user enrols a new one at the next sign-in. Every page passes axe-core. The
codes are computed here by a separate RFC 6238 implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import struct
from datetime import timedelta

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from api import accounts
from api.models import RecoveryCode, User
from api.wiring.flaskapp import wiring as app_wiring
from core.audit import AuditEvent
from core.clock import FrozenClock
from tests.api.conftest import PASSWORD
from tests.e2e.conftest import Site, check, fits, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]


def totp_now(secret_b32: str, clock: FrozenClock) -> str:
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int(clock.now().timestamp()) // 30
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    at = mac[19] & 15
    return f"{(int.from_bytes(mac[at:at + 4], 'big') & 0x7FFFFFFF) % 1_000_000:06d}"


def password_step(page: Page, site: Site, username: str) -> None:
    page.goto(f"{site.url}/web/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def logout(page: Page) -> None:
    page.click("header form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/web/login"))


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_operator_enrols_and_signs_in_with_totp(page: Page, site: Site, lang: str,
                                                clock: FrozenClock) -> None:
    site.rt.settings = site.rt.settings.replace(totp_required_roles="operator,dgcl_admin",
                                                rate_limit_otp="20/300")
    page.goto(f"{site.url}/web/login")
    set_lang(page, site, lang)
    password_step(page, site, "operator")
    # no second factor yet: every page leads to the enrolment page
    expect(page).to_have_url(re.compile(r"/web/account/second-factor$"))
    page.goto(f"{site.url}/web/queue")
    expect(page).to_have_url(re.compile(r"/web/account/second-factor$"))
    expect(page.locator("#totp-qr svg[role=img]")).to_be_visible()
    check(page, site, "totp-enrol")
    fits(page)
    secret = page.locator("#totp-secret").inner_text().strip()
    with site.rt.unit_of_work() as session:
        user = session.scalars(select(User).filter_by(username="operator")).one()
        assert user.totp_sealed and secret.encode() not in user.totp_sealed
        assert user.totp_enabled_at is None

    page.fill("#enrol input[name=code]", "000000" if totp_now(secret, clock) != "000000"
              else "111111")
    page.click("#enrol button[type=submit]")
    expect(page.locator("#form-error")).to_be_visible()
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", page.locator("#form-error").inner_text())
    assert page.locator("#totp-secret").inner_text().strip() == secret  # the same key
    page.fill("#enrol input[name=code]", totp_now(secret, clock))
    page.click("#enrol button[type=submit]")
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    check(page, site, "totp-recovery")
    page.goto(f"{site.url}/web/queue")
    expect(page).to_have_url(re.compile(r"/web/queue$"))
    with site.rt.unit_of_work() as session:
        stored = session.scalars(select(RecoveryCode.code_hash)).all()
        assert all(code not in " ".join(stored) for code in codes)

    # the next login asks for the code; the code used at enrolment is not taken again
    logout(page)
    password_step(page, site, "operator")
    expect(page).to_have_url(re.compile(r"/web/login/second-factor"))
    check(page, site, "totp-login")
    page.goto(f"{site.url}/web/queue")  # the pending login opens nothing
    expect(page).to_have_url(re.compile(r"/web/login"))
    page.goto(f"{site.url}/web/login/second-factor")
    page.fill("#second-factor input[name=code]", totp_now(secret, clock))
    page.click("#second-factor button[type=submit]")
    expect(page.locator("#form-error")).to_be_visible()
    check(page, site, "totp-refused")
    clock.advance(timedelta(seconds=30))
    page.fill("#second-factor input[name=code]", totp_now(secret, clock))
    page.click("#second-factor button[type=submit]")
    expect(page).to_have_url(re.compile(r"/web/national"))

    # a recovery code, once
    for expected in (r"/web/national", r"/web/login/second-factor"):
        logout(page)
        password_step(page, site, "operator")
        page.fill("#second-factor input[name=code]", codes[0])
        page.click("#second-factor button[type=submit]")
        expect(page).to_have_url(re.compile(expected))

    # an administrator without a second factor is sent to enrol too
    page.context.clear_cookies()
    password_step(page, site, "admin")
    expect(page).to_have_url(re.compile(r"/web/account/second-factor$"))


def _enrolled(app: Flask, site: Site, clock: FrozenClock, username: str) -> str:
    """``username`` with a second factor (enrolled through the accounts service, with the
    app's sealer); returns its secret in base32."""
    sealer = app_wiring(app).sealer()
    with site.rt.unit_of_work() as session:
        user = session.scalars(select(User).filter_by(username=username)).one()
        found = accounts.start_totp(session, clock, sealer, user.id)
        accounts.confirm_totp(session, clock, sealer, user.id,
                              totp_now(found.secret_base32, clock), actor="test")
    return found.secret_base32


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_admin_resets_a_users_second_factor(page: Page, site: Site, lang: str, app: Flask,
                                            clock: FrozenClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    site.rt.settings = site.rt.settings.replace(totp_required_roles="operator,dgcl_admin",
                                                rate_limit_otp="20/300")
    admin_secret = _enrolled(app, site, clock, "admin")
    old_secret = _enrolled(app, site, clock, "operator")
    clock.advance(timedelta(seconds=30))
    with site.rt.unit_of_work() as session:
        operator = session.scalars(select(User).filter_by(username="operator")).one()
        operator_id = operator.id

    page.goto(f"{site.url}/web/login")
    set_lang(page, site, lang)
    password_step(page, site, "admin")
    page.fill("#second-factor input[name=code]", totp_now(admin_secret, clock))
    page.click("#second-factor button[type=submit]")
    expect(page).to_have_url(re.compile(r"/web/national"))
    page.goto(f"{site.url}/web/admin/users")
    button = page.locator(f"#reset-2fa-{operator_id} button")
    expect(button).to_be_visible()
    check(page, site, "users-second-factor")
    fits(page, shot="users-second-factor")
    button.click()
    expect(page.locator("#flash")).to_be_visible()
    flash = page.locator("#flash").inner_text()
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", flash) and not re.search(r"[A-Za-z]{3}", flash)
    else:
        assert "facteur" in flash
    expect(page.locator(f"#reset-2fa-{operator_id}")).to_have_count(0)
    check(page, site, "users-second-factor-reset")
    assert old_secret not in page.content()

    with site.rt.unit_of_work() as session:
        stored = session.get_one(User, operator_id)
        assert stored.totp_sealed is None and stored.totp_enabled_at is None
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "auth.user.second_factor_reset")).all()
        assert [(e.actor, e.object_id) for e in events] == [("user:admin", str(operator_id))]
        summaries = " ".join(e.summary for e in session.scalars(select(AuditEvent)))
        assert old_secret not in summaries and admin_secret not in summaries
        assert session.scalars(select(RecoveryCode).where(
            RecoveryCode.user_id == operator_id, RecoveryCode.used_at.is_(None))).all() == []

    # the operator's next sign-in enrols a new second factor, with a new key
    page.context.clear_cookies()
    page.goto(f"{site.url}/web/login")
    set_lang(page, site, lang)
    password_step(page, site, "operator")
    expect(page).to_have_url(re.compile(r"/web/account/second-factor$"))
    new_secret = page.locator("#totp-secret").inner_text().strip()
    assert new_secret and new_secret != old_secret
    check(page, site, "totp-enrol-again")
    page.fill("#enrol input[name=code]", totp_now(new_secret, clock))
    page.click("#enrol button[type=submit]")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.goto(f"{site.url}/web/queue")
    expect(page).to_have_url(re.compile(r"/web/queue$"))
    for secret in (old_secret, new_secret, admin_secret):
        assert secret not in caplog.text
    with site.rt.unit_of_work() as session:
        sealed = session.get_one(User, operator_id).totp_sealed or b""
        assert new_secret.encode() not in sealed and \
            base64.b32decode(new_secret + "=" * (-len(new_secret) % 8)) not in sealed
