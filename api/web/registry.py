"""The operator's certificate registry: search (CIN, serial, state), then suspend, release,
revoke with an RFC 5280 reason, or renew (the same key certified again). Each action is the
CA's own (:mod:`pki.lifecycle`, :func:`pki.issuance.renew`), with the CA's keys loaded from
the application's services before the work starts, as the API does."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import request

from api.policy import Scope
from api.web.pages import FormError, _done, _html, bp
from api.web.session import Page, page
from api.wiring.adapters import revoke_certificate
from api.wiring.flaskapp import wiring
from core.errors import TawqiError
from delivery import holders
from pki import issuance, lifecycle, queries
from pki.reasons import REVOCATION_REASONS

STATES = ("issued", "suspended", "revoked")
CIN = re.compile(r"[A-Za-z]{1,2}[0-9]{1,8}")
PER_PAGE = 50


def _scope(p: Page, found: lifecycle.CertificateStatus) -> Scope:
    holder = holders.find_by_cin(p.session, found.cin) if found.cin else None
    if holder is None:
        return Scope()
    return Scope(province_code=holder.province_code, holder_id=holder.id)


def _registry_page(p: Page, status: int = 200, form_error: FormError | None = None) -> Any:
    text = request.args.get("q", "").strip()[:64]
    state = request.args.get("status") or None
    state = state if state in STATES else None
    if text and not CIN.fullmatch(text):
        found = [c for c in [_by_serial(p, text)] if c is not None]
        total = len(found)
    else:
        window = queries.certificate_page(p.session, status=state, cin=text or None,
                                          limit=PER_PAGE)
        found, total = list(window.items), window.total
    return _html("certificates.html", status, certificates=found, total=total, q=text,
                 state=state or "", states=STATES, reasons=REVOCATION_REASONS,
                 now=p.clock.now(), form_error=form_error,
                 done=request.args.get("done", ""),
                 may_manage=p.allowed("certificates.manage"))


def _by_serial(p: Page, serial: str) -> lifecycle.CertificateStatus | None:
    try:
        return lifecycle.certificate_status(p.session, serial.lower())
    except TawqiError:
        return None


@bp.get("/certificates")
@page("certificates.list")
def certificates(p: Page) -> Any:
    return _registry_page(p)


def _act(p: Page, serial: str, work: Callable[[Any], object], done: str) -> Any:
    found = lifecycle.certificate_status(p.session, serial)
    p.authorize(_scope(p, found))
    authority = wiring().authority()  # the CA's keys, before the work
    try:
        with p.attempt():
            work(authority)
    except TawqiError as exc:
        if exc.status >= 500:
            raise
        return _registry_page(p, exc.status, FormError.of(exc, f"cert-{serial}"))
    return _done("web.certificates", done, q=serial)


@bp.post("/certificates/<serial>/suspend")
@page("certificates.manage")
def suspend(p: Page, serial: str) -> Any:
    return _act(p, serial, lambda ca: lifecycle.suspend(
        p.session, p.clock, ca, serial, actor=p.actor, note=request.form.get("note", "")),
        "suspended")


@bp.post("/certificates/<serial>/release")
@page("certificates.manage")
def release(p: Page, serial: str) -> Any:
    return _act(p, serial, lambda ca: lifecycle.release(
        p.session, p.clock, ca, serial, actor=p.actor, note=request.form.get("note", "")),
        "released")


@bp.post("/certificates/<serial>/revoke")
@page("certificates.manage")
def revoke(p: Page, serial: str) -> Any:
    return _act(p, serial, lambda ca: revoke_certificate(
        p.session, p.clock, ca, serial, request.form.get("reason", ""), actor=p.actor),
        "revoked")


@bp.post("/certificates/<serial>/renew")
@page("certificates.manage")
def renew(p: Page, serial: str) -> Any:
    return _act(p, serial, lambda ca: issuance.renew(
        p.session, p.clock, ca, None, serial, actor=p.actor), "renewed")
