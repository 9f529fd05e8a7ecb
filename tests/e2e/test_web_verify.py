"""The public verification page, without login, in French and in Arabic: a PDF signed
elsewhere (its chain unknown here), the same PDF altered, a file that is not a PDF, a PDF
without signature; the reports name the signer, capacity and commune, never the CIN. Then
the page's rate limit. Each signature says its indication and, in words, why (the ETSI
sub-indication); CRLs uploaded with a document signed elsewhere are used. Every page passes
axe-core and fits 390 px."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, expect

from tests.api.test_csc import _foreign_pdf
from tests.e2e.conftest import Site, check, fits, set_lang
from tests.pki.outside_pki import outside_pki
from tests.pki.test_pades_pki import permit_pdf

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

VERDICT = {"fr": ("Validité indéterminée", "Signature invalide", "modifié"),
           "ar": ("صلاحية غير محددة", "توقيع غير صالح", "عُدِّلت")}


#: the words of sub-indications: unknown chain, no revocation status yet, changed bytes
WHY = {"fr": ("pas émis par une autorité reconnue", "réessayez plus tard",
              "modifié après la signature"),
       "ar": ("ليست صادرة عن سلطة تصديق معترف بها", "أعد المحاولة لاحقًا",
              "عُدِّلت الوثيقة بعد التوقيع")}
VALID = {"fr": "Signature valide", "ar": "توقيع صالح"}


def _drop(page: Page, name: str, data: bytes,
          revocation: list[tuple[str, bytes]] | None = None) -> None:
    page.set_input_files("#verify-form input[name=document]",
                         files=[{"name": name, "mimeType": "application/pdf",
                                 "buffer": data}])
    page.set_input_files("#verify-form input[name=revocation]",
                         files=[{"name": n, "mimeType": "application/pkix-crl", "buffer": b}
                                for n, b in revocation or []])
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
    expect(report.locator(".sub-indication")).to_contain_text(WHY[lang][0])
    assert "NO_CERTIFICATE_CHAIN_FOUND" not in page.content()
    check(page, site, "verify-report")
    fits(page)

    _drop(page, "permis.pdf", foreign.replace(b"Facture", b"Fucture", 1))
    expect(page.locator("#signature-1")).to_contain_text(failed)
    expect(page.locator("#signature-1")).to_contain_text(altered)
    expect(page.locator("#signature-1 .sub-indication")).to_contain_text(WHY[lang][2])

    _drop(page, "permis.pdf", b"%PDF-1.7 nothing")
    expect(page.locator("#form-error")).to_be_visible()
    assert "PDF" in page.locator("#form-error").inner_text()
    check(page, site, "verify-refused")

    _drop(page, "permis.pdf", permit_pdf())
    expect(page.locator("#no-signature")).to_be_visible()


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_revocation_lists_uploaded_with_the_document(page: Page, site: Site, lang: str,
                                                      tmp_path: Path) -> None:
    """A document signed by another (trusted) PKI whose CRLs are not in the file: without
    them the answer is try later, said in words; with them uploaded, the signature is
    valid. A file that is no CRL is refused on the form."""
    at = site.rt.clock.now() - timedelta(minutes=1)
    elsewhere = outside_pki("http://crl.invalid", at)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(elsewhere.root.cert.public_bytes(serialization.Encoding.PEM))
    site.rt.settings = site.rt.settings.replace(verify_trust_anchors=str(anchors))
    with ThreadPoolExecutor(1) as pool:
        signed = pool.submit(lambda: elsewhere.sign(elsewhere.holder(days=3650))).result()
    crls = [("ca.crl", elsewhere.crl("ca", at)), ("root.crl", elsewhere.crl("root", at))]
    page.goto(f"{site.url}/web/verify")
    set_lang(page, site, lang)
    check(page, site, "verify-revocation-form")

    _drop(page, "facture.pdf", signed)
    report = page.locator("#signature-1")
    expect(report).to_contain_text(VERDICT[lang][0])
    expect(report.locator(".sub-indication")).to_contain_text(WHY[lang][1])
    assert "TRY_LATER" not in page.content()
    check(page, site, "verify-try-later")
    fits(page)

    _drop(page, "facture.pdf", signed, crls)
    expect(page.locator("#signature-1")).to_contain_text(VALID[lang])
    assert page.locator("#signature-1 .sub-indication").count() == 0

    _drop(page, "facture.pdf", signed, [("notes.crl", b"not a CRL")])
    expect(page.locator("#form-error")).to_be_visible()
    assert "OCSP" in page.locator("#form-error").inner_text()
    check(page, site, "verify-revocation-refused")


def test_the_page_is_rate_limited_per_address(page: Page, site: Site) -> None:
    site.rt.settings = site.rt.settings.replace(rate_limit_verify="2/300")
    page.goto(f"{site.url}/web/verify")
    for _ in range(2):
        _drop(page, "permis.pdf", permit_pdf())
        expect(page.locator("#no-signature")).to_be_visible()
    _drop(page, "permis.pdf", permit_pdf())
    expect(page.locator("#form-error")).to_be_visible()
    assert page.locator("#no-signature").count() == 0
