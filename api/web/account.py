"""The second factor of people who sign in with a password: TOTP (:mod:`api.totp`).

- ``/web/login/second-factor``: after a right password, an account with a second factor
  gives the code of its authenticator application (or one of its recovery codes). The
  pending token in its own cookie opens nothing else, lasts five minutes and five codes;
  codes are also counted per account (the ``otp`` limit), which only someone who knew the
  password can spend. A code is never accepted twice.
- ``/web/account/second-factor``: enrolment, shown as a QR code (an inline SVG made here)
  and as the secret to type; the first right code enables it and shows the recovery codes,
  once. Roles listed in ``TAWQI_TOTP_REQUIRED_ROLES`` are sent here until they enrol.

The secret is sealed on the token layer (the envelope key) and never logged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api import accounts, qr, ratelimit
from api.errors import SecondFactorInvalid
from api.routing import client_address
from api.web import i18n
from api.web.pages import _done, _html, _safe_next, bp, redirect
from api.web.session import (
    PENDING_COOKIE,
    Page,
    end_session,
    lang,
    page,
    runtime,
    start_session,
)
from api.wiring.flaskapp import wiring
from core.errors import RateLimited


@bp.get("/login/second-factor")
def login_second_factor() -> Any:
    rt = runtime()
    with rt.unit_of_work() as session:
        user = accounts.pending_user(session, rt.clock, request.cookies.get(PENDING_COOKIE, ""))
    if user is None:
        return redirect(url_for("web.login"), 303)
    return _html("second_factor.html", next=_safe_next(request.args.get("next")) or "")


@bp.post("/login/second-factor")
def login_second_factor_post() -> Any:
    rt = runtime()
    token = request.cookies.get(PENDING_COOKIE, "")
    code = request.form.get("code", "")[:64]
    target = _safe_next(request.form.get("next"))
    client = client_address()
    with rt.unit_of_work() as session:
        user = accounts.pending_user(session, rt.clock, token)
    if user is None:  # expired, used up, or never there: the password again
        response = redirect(url_for("web.login"), 303)
        end_session(response)
        return response
    try:
        limit = ratelimit.limit_of(rt.settings, "otp")
        with rt.unit_of_work() as session:
            ratelimit.enforce(session, rt.clock, [(f"auth:2fa:user:{user.id}", limit)],
                              "second-factor codes")
    except RateLimited:
        return _html("second_factor.html", 429, next=target or "", error="login.limited")
    ttl = timedelta(minutes=rt.settings.session_ttl_minutes)
    with rt.unit_of_work() as session:  # a wrong code is counted and committed
        issued = accounts.complete_second_factor(session, rt.clock, wiring().sealer(),
                                                 token=token, code=code, ttl=ttl,
                                                 client=client)
    if issued is None:
        return _html("second_factor.html", 401, next=target or "", error="totp.bad")
    response = redirect(target or url_for("web.home"), 303)
    start_session(response, issued.token, int(ttl.total_seconds()))
    return response


@bp.get("/account/second-factor")
@page(None, enrolling=True)
def second_factor(p: Page) -> Any:
    return _enrol_page(p)


def _enrol_page(p: Page, status: int = 200, error: str = "") -> Any:
    user = accounts.get_user(p.session, p.principal.id)
    if user.totp_enabled_at is not None:
        return _html("enrol.html", status, enabled=True, done=request.args.get("done", ""))
    sealer = wiring().sealer()
    with p.attempt():
        found = accounts.pending_enrolment(p.session, sealer, user.id) or \
            accounts.start_totp(p.session, p.clock, sealer, user.id)
    return _html("enrol.html", status, enabled=False, secret=found.secret_base32,
                 qr_svg=qr.svg(found.uri, title=i18n.text(lang(), "totp.qr_title")),
                 error=error)


@bp.post("/account/second-factor")
@page(None, enrolling=True)
def second_factor_confirm(p: Page) -> Any:
    code = request.form.get("code", "")[:16]
    try:
        with p.attempt():
            codes = accounts.confirm_totp(p.session, p.clock, wiring().sealer(),
                                          p.principal.id, code, actor=p.actor)
    except SecondFactorInvalid as exc:
        return _enrol_page(p, exc.status, i18n.error_message(lang(), exc))
    return _html("enrol.html", enabled=True, recovery=codes)


@bp.post("/users/<int:user_id>/second-factor/reset")
@page("users.manage")
def reset_second_factor(p: Page, user_id: int) -> BaseResponse:
    accounts.reset_second_factor(p.session, p.clock, user_id, actor=p.actor)
    return _done("web.users", "second_factor_reset")
