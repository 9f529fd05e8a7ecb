"""The public verification page, without login, in French and in Arabic: a PDF signed
elsewhere (its chain unknown here), the same PDF altered, a file that is not a PDF, a PDF
without signature; the reports name the signer, capacity and commune, never the CIN. Then
the page's rate limit. Every page passes axe-core and fits 390 px."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from tests.api.test_csc import _foreign_pdf
from tests.e2e.conftest import Site, check, fits, set_lang
from tests.pki.test_pades_pki import permit_pdf

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

VERDICT = {"fr": ("Validité indéterminée", "Signature invalide", "modifié"),
           "ar": ("صلاحية غير محددة", "توقيع غير صالح", "عُدِّلت")}


def _drop(page: Page, name: str, data: bytes) -> None:
    page.set_input_files("#verify-form input[name=document]",
                         files=[{"name": name, "mimeType": "application/pdf",
                                 "buffer": data}])
    page.click("#verify-form button[type=submit]")


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_anyone_checks_a_signed_pdf(page: Page, site: Site, lang: str) -> None:
    # pyHanko runs its own event loop: not in this thread, where Playwright's runs
    with ThreadPoolExecutor(1) as pool:
        foreign, _ca = pool.submit(_foreign_pdf).result()
    page.goto(f"{site.url}/web/verify")  # no login
    set_lang(page, site, lang)
    expect(page).to_have_url(re.compile(r"/web/verify$"))
    check(page, site, "verify")
    fits(page)
    undecided, failed, altered = VERDICT[lang]

    _drop(page, "permis.pdf", foreign)
    report = page.locator("#signature-1")
    expect(report).to_contain_text(undecided)
    check(page, site, "verify-report")
    fits(page)

    _drop(page, "permis.pdf", foreign.replace(b"Facture", b"Fucture", 1))
    expect(page.locator("#signature-1")).to_contain_text(failed)
    expect(page.locator("#signature-1")).to_contain_text(altered)

    _drop(page, "permis.pdf", b"%PDF-1.7 nothing")
    expect(page.locator("#form-error")).to_be_visible()
    assert "PDF" in page.locator("#form-error").inner_text()
    check(page, site, "verify-refused")

    _drop(page, "permis.pdf", permit_pdf())
    expect(page.locator("#no-signature")).to_be_visible()


def test_the_page_is_rate_limited_per_address(page: Page, site: Site) -> None:
    site.rt.settings = site.rt.settings.replace(rate_limit_verify="2/300")
    page.goto(f"{site.url}/web/verify")
    for _ in range(2):
        _drop(page, "permis.pdf", permit_pdf())
        expect(page.locator("#no-signature")).to_be_visible()
    _drop(page, "permis.pdf", permit_pdf())
    expect(page.locator("#form-error")).to_be_visible()
    assert page.locator("#no-signature").count() == 0
