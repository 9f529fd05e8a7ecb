"""The provincial contact's whole journey in the browser, in French and in Arabic: register
a holder, change a holder's mobile (waiting for the holder's confirmation), request a
certificate (no holder pre-selected; holders with an active certificate marked), cancel it,
record the courier's parcel, hand each token over. Every page passes axe-core and fits a
390 px screen; a refused form says why next to the field, in the page's language.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from delivery.models import (
    CANCELLED,
    DELIVERED,
    HANDED_OVER,
    CertificateRequest,
    ContactChange,
    CourierBatch,
    Holder,
)
from tests.delivery import oversight_scene
from tests.delivery.oversight_scene import HERE, THERE
from tests.e2e.conftest import Site, check, fits, fonts, login, set_lang

pytestmark = [pytest.mark.hsm,
              pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)]

WORDS = {"fr": {"flash": "enregistré", "error_mobile": "mobile", "active": "certificat actif"},
         "ar": {"flash": "تم", "error_mobile": "الهاتف", "active": "شهادة نشطة"}}


def _flash(page: Page) -> None:
    expect(page.locator("#flash")).to_be_visible()


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_contact_journey(page: Page, site: Site, lang: str) -> None:
    words = WORDS[lang]
    cin = "ZT12345" + ("6" if lang == "fr" else "7")
    login(page, site, "contact")
    expect(page).to_have_url(re.compile(rf"/web/province/{re.escape(HERE)}$"))
    set_lang(page, site, lang)
    expect(page.locator("html")).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
    check(page, site, "contact-province")
    fits(page)
    assert {"Tawqi Latin", "Tawqi Arabic" if lang == "ar" else "Tawqi Latin"} <= fonts(page)

    # a refused registration: the reason next to the field, in the page's language
    form = page.locator("#form-register")
    for field, value in (("cin", cin), ("given_name_fr", "Zineb"), ("surname_fr", "Tazi"),
                         ("given_name_ar", "زينب"), ("surname_ar", "التازي"),
                         ("mobile", "12"), ("email", "z.tazi@example.ma")):
        form.locator(f"input[name={field}]").fill(value)
    form.locator("select[name=commune_code]").select_option(oversight_scene.COMMUNE_D)
    form.locator("button[type=submit]").click()
    error = page.locator("#error-register-mobile")
    expect(error).to_be_visible()
    expect(error).to_contain_text(words["error_mobile"])
    expect(page.locator("#form-register input[name=mobile]")).to_have_attribute(
        "aria-invalid", "true")
    expect(page.locator("#form-register input[name=given_name_fr]")).to_have_value("Zineb")
    check(page, site, "contact-register-refused")

    # registered
    form = page.locator("#form-register")
    form.locator("input[name=mobile]").fill("+212661234567")
    form.locator("button[type=submit]").click()
    _flash(page)
    with site.rt.unit_of_work() as session:
        holder = session.scalars(select(Holder).filter_by(cin=cin)).one()
        holder_id = holder.id
    expect(page.locator(f"#holder-{holder_id}")).to_contain_text(cin)

    # change the holder's mobile: waits for the holder's confirmation
    details = page.locator(f"#contact-{holder_id}")
    details.locator("summary").click()
    details.locator("input[name=mobile]").fill("+212661234599")
    details.locator("button[type=submit]").click()
    _flash(page)
    with site.rt.unit_of_work() as session:
        change = session.scalars(select(ContactChange).filter_by(holder_id=holder_id)).one()
        assert change.status == "pending" and change.new_value == "+212661234599"
        assert session.get(Holder, holder_id).mobile == "+212661234567"  # type: ignore[union-attr]

    # request: nobody pre-selected; a holder with an active certificate is marked
    request_form = page.locator("#form-request")
    select_holder = request_form.locator("select[name=holder_id]")
    expect(select_holder).to_have_value("")
    expect(select_holder.locator(f"option[value='{site.scene.holder_a.id}']")).to_contain_text(
        words["active"])
    select_holder.select_option(str(holder_id))
    request_form.locator("select[name=token_form]").select_option("device")
    request_form.locator("button[type=submit]").click()
    _flash(page)
    with site.rt.unit_of_work() as session:
        asked = session.scalars(select(CertificateRequest).filter_by(holder_id=holder_id)).one()
        request_id = asked.id
    check(page, site, "contact-requested")

    # cancel it
    cancel = page.locator(f"#cancel-{request_id}")
    cancel.locator("summary").click()
    cancel.locator("input[name=reason]").fill("Erreur de saisie")
    cancel.locator("button[type=submit]").click()
    _flash(page)
    with site.rt.unit_of_work() as session:
        assert session.get(CertificateRequest, request_id).status == CANCELLED  # type: ignore[union-attr]

    # the parcel arrives: its token is with the contact, then handed over, as is the
    # older overdue one
    page.click(f"#receive-{site.scene.batch_in_transit}")
    _flash(page)
    with site.rt.unit_of_work() as session:
        assert session.get(CourierBatch, site.scene.batch_in_transit).status == "received"  # type: ignore[union-attr]
        assert session.get(CertificateRequest, site.scene.request_in_transit  # type: ignore[union-attr]
                           ).status == DELIVERED
    check(page, site, "contact-received")
    for request_id in (site.scene.request_in_transit, site.scene.request_overdue):
        handover = page.locator(f"#handover-{request_id}")
        handover.locator("summary").click()
        handover.locator("input[name=acknowledgement]").fill(f"AR-2026-{request_id}")
        handover.locator("button[type=submit]").click()
        _flash(page)
        with site.rt.unit_of_work() as session:
            assert session.get(CertificateRequest, request_id  # type: ignore[union-attr]
                               ).status == HANDED_OVER
    check(page, site, "contact-handed-over")
    fits(page)

    # another province: refused in the reader's language, without internal action names
    response = page.goto(f"{site.url}/web/province/{THERE}")
    assert response is not None and response.status == 403
    body = page.locator("main").inner_text()
    assert "oversight" not in body and "reports.read" not in body and "contact may" not in body
    if lang == "ar":
        assert re.search(r"[\u0600-\u06FF]", page.locator("#error-message").inner_text())
    check(page, site, "contact-forbidden")
