"""A holder signs in without a password, in French and in Arabic: the CIN, then the code
read from the SMS the outbox worker sent to the registered mobile. An unknown CIN gets the
same answer and no SMS; a wrong code is refused beside the form in the page's language;
the code works once. Every page passes axe-core.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from api.models import User
from delivery.models import Holder, SignInChallenge
from tests.e2e.conftest import Site, check, fits, set_lang
from tests.e2e.test_web_holder import deliver

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


def _ask(page: Page, site: Site, cin: str) -> None:
    page.goto(f"{site.url}/web/signin")
    page.fill("#signin-cin input[name=cin]", cin)
    page.click("#signin-cin button[type=submit]")
    expect(page.locator("#code-sent")).to_be_visible()


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_holder_signs_in_with_a_code_sent_by_sms(page: Page, site: Site, lang: str) -> None:
    holder: Holder = site.scene.holder_a
    site.rt.settings = site.rt.settings.replace(rate_limit_otp="100/300")
    page.goto(f"{site.url}/web/login")
    set_lang(page, site, lang)
    page.click("#holder-signin")
    expect(page.locator("#signin-cin")).to_be_visible()
    check(page, site, "signin-cin")
    fits(page)

    # an unknown CIN: the same page, and nothing sent
    deliver(site.rt)
    _ask(page, site, "ZZ999999")
    unknown = page.locator("#code-sent").inner_text()
    assert not deliver(site.rt).take()

    # the holder's CIN: the same words, and a code by SMS to the registered mobile
    _ask(page, site, holder.cin.lower())
    assert page.locator("#code-sent").inner_text() == unknown
    check(page, site, "signin-code")
    sent = [body for channel, body in deliver(site.rt).for_recipient(holder.mobile)
            if channel == "sms"]
    assert len(sent) == 1, sent
    code = CODE.findall(sent[0])[0]
    assert sent[0].startswith(code)  # the code first
    with site.rt.unit_of_work() as session:
        stored = session.scalars(select(SignInChallenge)).one()
        assert code not in stored.code_hash
        used_id = stored.id

    wrong = "000000" if code != "000000" else "111111"
    page.fill("#signin-code input[name=code]", wrong)
    page.click("#signin-code button[type=submit]")
    expect(page.locator("#form-error")).to_be_visible()
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", page.locator("#form-error").inner_text())
    assert wrong not in page.content()
    check(page, site, "signin-refused")

    page.fill("#signin-code input[name=code]", code)
    page.click("#signin-code button[type=submit]")
    expect(page).to_have_url(re.compile(r"/web/me"))
    check(page, site, "signin-me")
    with site.rt.unit_of_work() as session:
        account = session.scalars(select(User).where(User.holder_id == holder.id)).one()
        assert account.role == "holder"

    # the holder chooses Arabic for their messages: the next code comes in Arabic only
    page.select_option("#preferences-form select[name=preferred_lang]", "ar")
    page.click("#preferences-form button[type=submit]")
    expect(page.locator("#flash")).to_be_visible()
    check(page, site, "signin-preferences")

    # the code works once
    page.context.clear_cookies()
    page.goto(f"{site.url}/web/signin")
    _ask(page, site, holder.cin)
    arabic = [body for channel, body in deliver(site.rt).for_recipient(holder.mobile)
              if channel == "sms"]
    assert len(arabic) == 1 and re.search(r"[\u0600-\u06FF]", arabic[0])
    assert not re.search(r"[A-Za-z]{3,}", arabic[0]) and CODE.match(arabic[0])
    page.evaluate("(c) => document.querySelector('#signin-code input[name=challenge]')"
                  ".value = c", used_id)
    page.fill("#signin-code input[name=code]", code)
    page.click("#signin-code button[type=submit]")
    expect(page.locator("#form-error")).to_be_visible()
