"""A lost, stolen or damaged token, reported in the browser (:mod:`delivery.incidents`).

The holder reports their own token on ``/web/me``; the province's contact (or an operator)
reports it from the province page: the holder rows, or the hand-over area (the requests
table: a token with the contact, handed over or in use; :mod:`delivery.incidents` decides
which states it accepts). The certificate is suspended (lost,
damaged) or revoked (stolen) and a replacement request is created, in one transaction; a
refusal is shown beside the form, in the reader's language.
"""

from __future__ import annotations

from typing import Any

from flask import request

from api.policy import Scope
from api.web.holder import _attempt
from api.web.pages import _contact_acting, _form_action, bp
from api.web.session import Page, page
from api.wiring.flaskapp import wiring
from delivery import incidents, requests


def _done_code(kind: str) -> str:
    return "incident_revoked" if kind == "stolen" else "incident_suspended"


@bp.post("/requests/<int:request_id>/incident")
@page("requests.incident")
def report_incident(p: Page, request_id: int) -> Any:
    found = requests.get_request(p.session, request_id)
    code = found.province_code
    kind = request.form.get("incident", "")
    note = request.form.get("note", "")
    # the hand-over area of the province page has its own form (and refusal) per request
    area = "handover-" if request.form.get("area") == "handover" else ""
    where = f"incident-{area}{request_id}"
    if p.principal.role == "holder":
        holder_id = p.principal.holder_id
        p.authorize(Scope(province_code=code, holder_id=found.holder_id))

        def own() -> None:
            with p.attempt():
                incidents.report_token_incident(
                    p.session, p.clock, request_id, incident=kind, note=note,
                    actor=p.actor, personaliser=wiring().personaliser(),
                    holder_id=holder_id)

        return _attempt(p, where, own, _done_code(kind))
    p.authorize(Scope(province_code=code, holder_id=found.holder_id))
    contact_id = _contact_acting(p, code)

    def work() -> None:
        incidents.report_token_incident(
            p.session, p.clock, request_id, incident=kind, note=note, actor=p.actor,
            personaliser=wiring().personaliser(), contact_id=contact_id)

    return _form_action(p, code, where, work, _done_code(kind))
