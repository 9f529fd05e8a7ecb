"""The provincial contact's journey (own province only), beside the province page of
:mod:`api.web.pages`: change a holder's mobile or email (the holder confirms it with a code
sent to the new one, :mod:`delivery.contact_change`), cancel a request, record that the
courier's parcel arrived (its tokens are then with the contact, ready to hand over).

Registering holders, requesting certificates and the hand-over itself are in
:mod:`api.web.pages`. Each form runs in a savepoint; a refusal shows the province page again
with the reason next to the field and what was typed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request

from api.policy import Scope
from api.web.pages import _contact_acting, _form_action, bp
from api.web.session import Page, page
from api.wiring.flaskapp import wiring
from delivery import batches, holders, requests


@bp.post("/holders/<int:holder_id>/contact")
@page("holders.write")
def change_contact(p: Page, holder_id: int) -> Any:
    holder = holders.get_holder(p.session, holder_id)
    code = holder.province_code
    p.authorize(Scope(province_code=code, holder_id=holder.id))
    mobile = request.form.get("mobile", "").strip() or None
    email = request.form.get("email", "").strip() or None

    def work() -> None:
        root = wiring()
        sealer = root.sealer() if mobile is not None or email is not None else None
        holders.update_contact_details(p.session, p.clock, holder_id, actor=p.actor,
                                       sealer=sealer, policy=root.policy, mobile=mobile,
                                       email=email)

    return _form_action(p, code, f"contact-{holder_id}", work, "contact")


def _province_form(p: Page, code: str, open_form: str, done: str,
                   work: Callable[[int | None], None]) -> Any:
    """Authorise the caller on province ``code``, then run the form's ``work`` with the
    designated contact they act as (None for an operator), as :func:`_form_action` does."""
    p.authorize(Scope(province_code=code))
    contact_id = _contact_acting(p, code)
    return _form_action(p, code, open_form, lambda: work(contact_id), done)


@bp.post("/requests/<int:request_id>/cancel")
@page("requests.cancel")
def cancel(p: Page, request_id: int) -> Any:
    found = requests.get_request(p.session, request_id)

    def work(contact_id: int | None) -> None:
        requests.cancel_request(p.session, p.clock, request_id, actor=p.actor,
                                reason=request.form.get("reason", ""),
                                contact_id=contact_id)

    return _province_form(p, found.province_code, f"cancel-{request_id}", "cancelled", work)


@bp.post("/batches/<int:batch_id>/receive")
@page("batches.receive")
def receive(p: Page, batch_id: int) -> Any:
    found = batches.get_batch(p.session, batch_id)

    def work(contact_id: int | None) -> None:
        batches.receive_batch(p.session, p.clock, batch_id, actor=p.actor,
                              contact_id=contact_id)

    return _province_form(p, found.province_code, f"receive-{batch_id}", "received", work)
