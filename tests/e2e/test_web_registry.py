"""The operator's certificate registry in the browser, in French and in Arabic, on the real
CA (SoftHSM2): find a holder's certificate by CIN, suspend it, release it, renew it, revoke
the renewed one for a change of affiliation. Every page passes axe-core."""

from __future__ import annotations

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from pki.models import CertificateRecord
from tests.api.conftest import make_user
from tests.e2e.conftest import Site, check, fits, login, set_lang
from tests.e2e.test_web_holder import Hosted, holder_app, hosted_site  # noqa: F401

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_operator_manages_a_certificate(page: Page, hosted_site: Site,  # noqa: F811
                                        holder_app: Flask, lang: str) -> None:  # noqa: F811
    site = hosted_site
    hosted: Hosted = site.scene
    make_user(site.rt, holder_app, "operator", "operator")
    with site.rt.unit_of_work() as session:
        serial = session.scalars(select(CertificateRecord.serial).where(
            CertificateRecord.cin == "HB246810")).one()
    login(page, site, "operator")
    set_lang(page, site, lang)
    page.click("#nav-certificates")
    page.fill("#registry-search input[name=q]", "HB246810")
    page.click("#registry-search button[type=submit]")
    row = page.locator(f"[id='cert-{serial}']")
    expect(row).to_be_visible()
    check(page, site, "registry")
    fits(page)

    def state() -> str:
        with site.rt.unit_of_work() as session:
            return session.scalars(select(CertificateRecord.status).where(
                CertificateRecord.serial == serial)).one()

    row.locator("button.suspend").click()
    expect(page.locator("#flash")).to_be_visible()
    assert state() == "suspended"
    page.locator(f"[id='cert-{serial}'] button.release").click()
    expect(page.locator("#flash")).to_be_visible()
    assert state() == "issued"
    page.locator(f"[id='cert-{serial}'] button.renew").click()
    expect(page.locator("#flash")).to_be_visible()
    with site.rt.unit_of_work() as session:
        renewed = session.scalars(select(CertificateRecord).where(
            CertificateRecord.cin == "HB246810", CertificateRecord.serial != serial)).one()
        new_serial = renewed.serial
    page.fill("#registry-search input[name=q]", new_serial)
    page.click("#registry-search button[type=submit]")
    form = page.locator(f"[id='cert-{new_serial}'] form.revoke")
    form.locator("select[name=reason]").select_option("affiliationChanged")
    form.locator("button").click()
    expect(page.locator("#flash")).to_be_visible()
    check(page, site, "registry-revoked")
    with site.rt.unit_of_work() as session:
        found = session.scalars(select(CertificateRecord).where(
            CertificateRecord.serial == new_serial)).one()
        assert found.status == "revoked" and found.revocation_reason == "affiliationChanged"
    assert hosted.request_id
