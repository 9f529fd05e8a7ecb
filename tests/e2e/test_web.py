"""The web pages in a real browser (Debian's Chromium driven by Playwright), against the app
served on 127.0.0.1 by werkzeug in a thread, over the test database and SoftHSM2 runtime of
the API tests (SQLite only: the queries themselves run on both databases in
tests/delivery/test_oversight.py).

The harness (browser, served app, login, axe-core and screenshots) is tests/e2e/conftest.py.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from delivery import oversight
from delivery.models import APPROVED, CertificateRequest, Holder
from tests.api.conftest import PASSWORD
from tests.delivery import oversight_scene
from tests.delivery.oversight_scene import HERE, THERE, YEAR
from tests.e2e.conftest import Site, check, login

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

def test_admin_sees_the_national_figures_in_french_and_arabic(page: Page, site: Site) -> None:
    login(page, site, "admin")
    expect(page).to_have_url(re.compile(r"/web/national$"))
    with site.rt.unit_of_work() as session:
        rows = {f.area.code: f for f in oversight.areas(
            session, site.rt.clock, year=YEAR, overdue_days=7)}
    north = rows["01"]
    row = page.locator("#row-01")
    expect(row.locator(".able-count")).to_have_text(str(north.communes_able))
    expect(row.locator(".without")).to_have_text(str(north.without))
    expect(row.locator(".waiting")).to_have_text(str(north.waiting_total))
    expect(row.locator(".transit")).to_have_text(str(north.batches_in_transit))
    expect(row.locator(".quota-figures")).to_have_text(
        f"{north.quota.consumed} · {north.quota.reserved} · {north.quota.available}")
    expect(page.locator("#kpi-without .value")).to_have_text(
        str(sum(f.without for f in rows.values())))
    expect(page.locator(f"[id='blocked-{oversight_scene.COMMUNE_B}']")).to_contain_text("20")
    expect(page.locator("#ranking tbody tr").first).to_contain_text("Tanger")
    assert page.locator("html").get_attribute("dir") == "ltr"
    check(page, site, "national")

    page.click("#lang-switch")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.locator("html")).to_have_attribute("lang", "ar")
    expect(page.locator("h1")).to_contain_text("لوحة القيادة الوطنية")
    expect(page.locator("#row-01 th a")).to_contain_text("طنجة")
    check(page, site, "national")

    # drill down: region -> province -> commune, still in Arabic
    page.click("#row-01 th a")
    expect(page).to_have_url(re.compile(r"/web/region/01$"))
    page.click(f"[id='row-{HERE}'] th a")
    expect(page).to_have_url(re.compile(rf"/web/province/{re.escape(HERE)}$"))
    expect(page.locator("#batches")).to_contain_text("EE876543216MA")
    expect(page.locator("#kpi-transit .value")).to_have_text("1")
    check(page, site, "province")
    page.click("#lang-switch")
    expect(page.locator("html")).to_have_attribute("dir", "ltr")
    check(page, site, "province")


def test_contact_sees_only_their_province_and_registers_a_holder(page: Page,
                                                                site: Site) -> None:
    login(page, site, "contact")
    expect(page).to_have_url(re.compile(rf"/web/province/{re.escape(HERE)}$"))
    assert page.locator("a[href='/web/national']").count() == 0

    form = page.locator("#form-register")
    form.locator("input[name=cin]").fill("ZT123456")
    form.locator("input[name=given_name_fr]").fill("Zineb")
    form.locator("input[name=surname_fr]").fill("Tazi")
    form.locator("input[name=given_name_ar]").fill("زينب")
    form.locator("input[name=surname_ar]").fill("التازي")
    form.locator("select[name=commune_code]").select_option(oversight_scene.COMMUNE_D)
    form.locator("input[name=mobile]").fill("+212661234567")
    form.locator("input[name=email]").fill("z.tazi@example.ma")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_be_visible()
    expect(page.locator("#holders")).to_contain_text("Zineb Tazi")
    check(page, site, "province-contact")
    with site.rt.unit_of_work() as session:
        holder = session.query(Holder).filter_by(cin="ZT123456").one()
        assert (holder.province_code, holder.commune_code) == (HERE,
                                                               oversight_scene.COMMUNE_D)
        assert holder.registered_by_contact_id == site.scene.contact_here.id

    # a refused registration shows the reason and keeps what was typed
    form = page.locator("#form-register")
    form.locator("input[name=cin]").fill("ZT123456")
    for field, value in (("given_name_fr", "Autre"), ("surname_fr", "Personne"),
                         ("given_name_ar", "آخر"), ("surname_ar", "شخص"),
                         ("mobile", "+212661234568"), ("email", "a.p@example.ma")):
        form.locator(f"input[name={field}]").fill(value)
    form.locator("button[type=submit]").click()
    expect(page.locator("#form-error")).to_be_visible()
    expect(page.locator("#form-register input[name=given_name_fr]")).to_have_value("Autre")

    for url in (f"/web/province/{THERE}", "/web/national", "/web/region/01", "/web/queue"):
        response = page.goto(site.url + url)
        assert response is not None and response.status == 403, url
        expect(page.locator(".error-page .code")).to_have_text("403")


def test_posts_without_the_csrf_token_are_refused(page: Page, site: Site) -> None:
    body = {"cin": "QQ123456", "given_name_fr": "Q", "surname_fr": "Q",
            "given_name_ar": "ق", "surname_ar": "ق", "role": "president",
            "commune_code": oversight_scene.COMMUNE_D, "mobile": "+212661234569",
            "email": "q@example.ma"}
    refused = page.request.post(f"{site.url}/web/login",
                                form={"username": "contact", "password": PASSWORD})
    assert refused.status == 403
    login(page, site, "contact")
    expect(page).to_have_url(re.compile(r"/web/province/"))
    for token in (None, "0" * 64):
        form = dict(body, **({"csrf_token": token} if token else {}))
        response = page.request.post(f"{site.url}/web/province/{HERE}/holders", form=form)
        assert response.status == 403
    with site.rt.unit_of_work() as session:
        assert session.query(Holder).filter_by(cin="QQ123456").count() == 0
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["tawqi_web"]["httpOnly"] and cookies["tawqi_web"]["sameSite"] == "Lax"


def test_operator_approves_from_the_queue(page: Page, site: Site) -> None:
    login(page, site, "operator")
    page.goto(f"{site.url}/web/queue")
    row = page.locator(f"#queue-{site.scene.request_b_new}")
    expect(row).to_contain_text("Berrada")
    expect(row.locator("input[name=number]")).to_have_value(site.scene.holder_b_new.cin)
    row.locator("button.ok").click()
    expect(page.locator("#flash")).to_be_visible()
    expect(page.locator(f"#stage-approved #queue-{site.scene.request_b_new}")).to_be_visible()
    check(page, site, "queue")
    with site.rt.unit_of_work() as session:
        found = session.get(CertificateRequest, site.scene.request_b_new)
        assert found is not None and found.status == APPROVED


def test_holder_accepts_the_terms(page: Page, site: Site) -> None:
    login(page, site, "holder.c")
    expect(page).to_have_url(re.compile(r"/web/me$"))
    row = page.locator(f"#credential-{site.scene.request_c}")
    expect(row).to_contain_text("Expirée")
    check(page, site, "me")
    row.locator("a.button").click()
    expect(page.locator("#terms-ar")).to_have_attribute("lang", "ar")
    page.locator(f"#accept-{site.scene.request_c} button").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        found = session.get(CertificateRequest, site.scene.request_c)
        assert found is not None and found.terms_version == site.rt.settings.terms_version
    response = page.goto(f"{site.url}/web/province/{THERE}")
    assert response is not None and response.status == 403


def test_holder_declares_a_device_pin_changed(page: Page, site: Site) -> None:
    with site.rt.unit_of_work() as session:
        found = session.get_one(CertificateRequest, site.scene.request_c)
        found.pin_change_required = True
    login(page, site, "holder.c")
    page.click("#lang-switch")
    form = page.locator(f"#declare-{site.scene.request_c}")
    expect(form).to_contain_text("جهاز توقيع مادي")
    form.locator("button").click()
    expect(page.locator("#flash")).to_contain_text("تم تسجيل تغيير الرمز السري")
    check(page, site, "holder-device-declared")
    with site.rt.unit_of_work() as session:
        assert not session.get_one(CertificateRequest, site.scene.request_c
                                   ).pin_change_required
