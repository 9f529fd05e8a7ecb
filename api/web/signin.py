"""A holder's sign-in without a password: the CIN, then the one-time code sent by SMS to
the registered mobile (:mod:`delivery.signin`).

Both steps are counted against the ``otp`` limit per CIN and per address, in their own
transaction and before the work, whatever the CIN (so that the limits say nothing about
who is registered either). The first step answers the same for every CIN; the second
refuses every wrong, expired or foreign code with the same sentence. The code is read from
the form, handed to the service and never written back into a page or a log.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api import accounts, ratelimit
from api.routing import client_address
from api.web import i18n
from api.web.pages import _html, bp, rt_passwords
from api.web.session import lang, runtime, start_session
from api.wiring.flaskapp import wiring
from core.errors import RateLimited, Unauthenticated
from delivery import holders, signin
from delivery.errors import SignInCodeInvalid


def _count(cin: str, client: str) -> None:
    rt = runtime()
    limit = ratelimit.limit_of(rt.settings, "otp")
    key = cin.strip().upper()[:16]
    with rt.unit_of_work() as session:
        ratelimit.enforce(session, rt.clock, [(f"signin:cin:{key}", limit),
                                              (f"signin:ip:{client}", limit)],
                          "sign-in codes")


@bp.get("/signin")
def signin_form() -> Response:
    return _html("signin.html", step="cin", cin="")


@bp.post("/signin")
def signin_request() -> Response:
    rt = runtime()
    cin = request.form.get("cin", "").strip().upper()[:16]
    client = client_address()
    if not cin:
        return _html("signin.html", 400, step="cin", cin="", error="signin.cin_missing")
    try:
        _count(cin, client)
    except RateLimited:
        return _html("signin.html", 429, step="cin", cin=cin, error="signin.limited")
    root = wiring()
    with rt.unit_of_work() as session:
        info = signin.request_code(session, rt.clock, root.sealer(), cin=cin,
                                   policy=root.policy, client=client)
    return _html("signin.html", step="code", cin=cin, challenge=info.challenge_id,
                 minutes=root.policy.otp_ttl_minutes)


@bp.post("/signin/code")
def signin_confirm() -> Response | BaseResponse:
    rt = runtime()
    cin = request.form.get("cin", "").strip().upper()[:16]
    challenge_id = request.form.get("challenge", "")[:36]
    code = request.form.get("code", "")
    client = client_address()
    again = {"step": "code", "cin": cin, "challenge": challenge_id,
             "minutes": wiring().policy.otp_ttl_minutes}
    try:
        _count(cin, client)
        holder_id = signin.confirm_code(rt.sessions, rt.clock, challenge_id=challenge_id,
                                        cin=cin, code=code, client=client)
        ttl = timedelta(minutes=rt.settings.session_ttl_minutes)
        with rt.unit_of_work() as session:
            holder = holders.get_holder(session, holder_id)
            issued = accounts.login_holder(
                session, rt.clock, rt_passwords(), holder_id=holder_id,
                display_name=f"{holder.given_name_fr} {holder.surname_fr}", ttl=ttl,
                client=client)
    except RateLimited:
        return _html("signin.html", 429, error="signin.limited", **again)
    except (SignInCodeInvalid, Unauthenticated) as exc:
        return _html("signin.html", exc.status, error_text=i18n.error_message(lang(), exc),
                     **again)
    response = redirect(url_for("web.me"), 303)
    start_session(response, issued.token, int(ttl.total_seconds()))
    return response
