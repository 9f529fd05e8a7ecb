"""A stamped signature's public status page, as a citizen holding the printed permit
reaches it: the permit is signed through the CSC API (remote signing, hosted token in
SoftHSM2), the URL is the one the stamp's QR code holds (read back from a render of the
page and compared module by module), and the page, without login, names the signer, the
capacity and the commune, the signing time and the certificate's status today, in French
and Arabic, with the way to check the PDF itself. axe-core finds nothing serious."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from api.runtime import Runtime
from pki.signing.pades import read_pdf
from pki.signing.stamp import qr_matrix
from tests.api.conftest import PUBLIC_URL, make_platform
from tests.api.test_csc import Sms, authorize, make_hosted
from tests.e2e.conftest import SHOTS, Site, check, fits, serve, set_lang
from tests.e2e.test_web_verify import VALID, _drop
from tests.pki.test_pades import drawn_qr, with_quiet_zone
from tests.pki.test_pades_pki import permit_pdf

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

STATUS = {"fr": ("Signature électronique", "valide", "Vérifier le PDF"),
          "ar": ("توقيع إلكتروني", "صالحة", "التحقق من ملف PDF")}


def _sign(rt: Runtime, app: Flask) -> tuple[bytes, str, str]:
    """A permit signed at B-LT with a visible stamp: the PDF, the status page's path, the
    holder's CIN."""
    sms = Sms(rt, app)
    hosted = make_hosted(rt, app, sms)
    platform = make_platform(rt)
    client = app.test_client()
    document = permit_pdf()
    granted = authorize(client, platform, hosted, sms, document=document)
    signed = client.post("/csc/v2/signatures/signDoc", headers=platform.headers,
                         content_type="multipart/form-data", data={
                             "credentialID": hosted.serial, "SAD": granted["SAD"],
                             "conformance_level": "AdES-B-LT",
                             "document": (io.BytesIO(document), "permis.pdf")})
    assert signed.status_code == 200, signed.get_json()
    return signed.data, signed.headers["X-Signature-Status"], hosted.cin


def test_the_stamps_qr_code_leads_to_the_status_page(page: Page, app: Flask,
                                                     api_runtime: Runtime,
                                                     tmp_path: Path) -> None:
    # pyHanko runs its own event loop: not in this thread, where Playwright's runs
    with ThreadPoolExecutor(1) as pool:
        pdf, path, cin = pool.submit(_sign, api_runtime, app).result()
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{22}", path)
    (signature,) = read_pdf(pdf, max_bytes=10**8).embedded_regular_signatures
    box = tuple(float(v) for v in signature.sig_field["/Rect"])
    assert drawn_qr(pdf, box, tmp_path) == with_quiet_zone(qr_matrix(PUBLIC_URL + path))

    with serve(app) as url:
        site = Site(url, api_runtime, None, SHOTS)
        for lang in ("fr", "ar"):
            page.goto(url + path)  # what the phone opens, without login
            expect(page).to_have_url(re.compile(r"/web/s/[A-Za-z0-9_-]{22}$"))
            set_lang(page, site, lang)
            title, valid, check_link = STATUS[lang]
            expect(page.locator("h1")).to_have_text(title)
            panel = page.locator("#signature-status")
            expect(panel.locator("#certificate-status")).to_have_text(valid)
            expect(panel).to_contain_text("16")  # the signing day (frozen clock: 16 March)
            signer = panel.locator("h2").inner_text().strip()
            assert signer and cin not in page.content()
            check(page, site, "signature-status")
            fits(page)
            expect(page.locator("#check-link")).to_have_text(check_link)
            page.click("#check-link")  # the invitation to drop the PDF
            expect(page).to_have_url(re.compile(r"/web/verify$"))
            _drop(page, "permis.pdf", pdf)
            expect(page.locator("#signature-1")).to_contain_text(VALID[lang])
            if lang == "fr":  # the certificate names the holder in Latin letters
                expect(page.locator("#signature-1")).to_contain_text(signer)
        unknown = page.goto(url + "/s/" + "A" * 22)
        assert unknown is not None and unknown.status == 404
        expect(page.locator("h1")).to_be_visible()
        check(page, site, "signature-unknown")
