"""The holder's journey: their own credentials only (``Scope(holder_id=...)``).

``/web/me`` shows the holder's certificates and their state, the terms of use (both
languages, ``/web/terms``), and the forms of the holder's own PIN work: change a hosted
key's PIN on the token (:func:`delivery.pins.change_pin`), declare that a device token's PIN
was changed on the holder's machine, reset a PIN with the one-time code sent by SMS
(:mod:`delivery.reset`), and confirm a new mobile or email with the code sent to it
(:mod:`delivery.contact_change`). Attempts are rate-limited as in the API (the ``pin`` and
``otp`` limits, per credential or CIN and per person, counted in their own transaction).

PINs and codes are read from the form, passed to the service, and never written back into
a page, a log or an error.
"""

from __future__ import annotations

from typing import Any

from flask import request

from api import ratelimit
from api.policy import Scope
from api.web.pages import FormError, _done, _html, bp
from api.web.session import Page, page, runtime
from api.wiring.flaskapp import wiring
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unavailable
from delivery import contact_change, holders, oversight, pins, requests, reset
from delivery.errors import PinPolicy
from delivery.models import Holder
from quotas.models import Commune, Province

#: Errors a holder's form shows beside the form (a wrong PIN or code is a Forbidden).
HOLDER_FORM_ERRORS = (InvalidInput, Conflict, NotFound, Forbidden, RateLimited, Unavailable)
#: Form fields never sent back into a page.
SECRET_FIELDS = ("old_pin", "new_pin", "new_pin_again", "code")


def _own(p: Page) -> Holder:
    holder_id = p.principal.holder_id if p.principal.role == "holder" else None
    if holder_id is None:
        raise Forbidden("this page shows a holder's own credentials")
    p.authorize(Scope(holder_id=holder_id))
    return holders.get_holder(p.session, holder_id)


def me_page(p: Page, status: int = 200, form_error: FormError | None = None,
            challenge: reset.ResetChallengeInfo | None = None) -> Any:
    holder = _own(p)
    commune = p.session.get(Commune, holder.commune_code) if holder.commune_code else None
    province = p.session.get(Province, holder.province_code)
    form = {k: v for k, v in request.form.items()
            if k not in SECRET_FIELDS and k != "csrf_token"}
    return _html("me.html", status, holder=holder, commune=commune, province=province,
                 credentials=oversight.holder_credentials(
                     p.session, p.clock, holder.id, terms_version=p.settings.terms_version),
                 changes=contact_change.pending_changes(p.session, p.clock, holder.id),
                 terms_version=p.settings.terms_version, done=request.args.get("done", ""),
                 form_error=form_error, form=form, challenge=challenge,
                 open_form=form_error.form if form_error else "")


@bp.get("/me")
@page("holders.read")
def me(p: Page) -> Any:
    return me_page(p)


@bp.get("/terms")
@page("holder.terms")
def terms(p: Page) -> Any:
    holder = _own(p)
    credentials = oversight.holder_credentials(p.session, p.clock, holder.id,
                                               terms_version=p.settings.terms_version)
    return _html("terms.html", version=p.settings.terms_version,
                 pending=[c for c in credentials if c.may_accept_terms])


def _limit(p: Page, kind: str, subject: str) -> None:
    """Count the attempt in its own transaction (kept even if the attempt fails)."""
    rt = runtime()
    limit = ratelimit.limit_of(rt.settings, kind)
    with rt.unit_of_work() as session:
        ratelimit.enforce(session, rt.clock, [(f"{kind}:{subject}", limit),
                                              (f"{kind}:who:{p.principal.key}", limit)],
                          f"{kind} attempts")


def _attempt(p: Page, where: str, work: Any, done: str) -> Any:
    try:
        work()
    except HOLDER_FORM_ERRORS as exc:
        p.session.rollback()
        return me_page(p, exc.status, FormError.of(exc, where))
    return _done("web.me", done)


def _own_request(p: Page, request_id: int) -> int:
    found = requests.get_request(p.session, request_id)
    p.authorize(Scope(holder_id=found.holder_id))
    return found.holder_id


@bp.post("/requests/<int:request_id>/terms")
@page("holder.terms")
def accept_terms(p: Page, request_id: int) -> Any:
    _own_request(p, request_id)
    requests.accept_terms(p.session, p.clock, request_id, version=p.settings.terms_version,
                          actor=p.actor)
    return _done("web.me", "terms")


@bp.post("/requests/<int:request_id>/pin")
@page("holder.pin")
def change_pin(p: Page, request_id: int) -> Any:
    """A hosted key's PIN, changed on the token (the old one is checked there)."""
    _own_request(p, request_id)
    old_pin = request.form.get("old_pin", "")
    new_pin = request.form.get("new_pin", "")
    again = request.form.get("new_pin_again", "")

    def work() -> None:
        if new_pin != again:
            raise PinPolicy("the two new PINs differ", field="new_pin_again")
        _limit(p, "pin", f"request:{request_id}")
        p.session.commit()  # the service runs its own transactions
        pins.change_pin(p.runtime.sessions, p.clock, wiring().tokens(), request_id,
                        old_pin=old_pin, new_pin=new_pin, actor=p.actor)

    return _attempt(p, f"pin-{request_id}", work, "pin")


@bp.post("/requests/<int:request_id>/pin-changed")
@page("holder.pin")
def pin_changed(p: Page, request_id: int) -> Any:
    """A device token's holder changed the PIN on their own machine."""
    _own_request(p, request_id)

    def work() -> None:
        with p.attempt():
            pins.record_pin_changed(p.session, p.clock, request_id, actor=p.actor)

    return _attempt(p, f"declare-{request_id}", work, "pin_declared")


@bp.post("/pin-reset")
@page("holder.pin")
def start_reset(p: Page) -> Any:
    """Send a one-time code to the holder's registered mobile; show the form for it."""
    holder = _own(p)
    try:
        _limit(p, "otp", f"cin:{holder.cin}")
        root = wiring()
        with p.attempt():
            info = reset.request_pin_reset(p.session, p.clock, root.sealer(),
                                           cin=holder.cin, actor=p.actor,
                                           policy=root.policy)
    except HOLDER_FORM_ERRORS as exc:
        return me_page(p, exc.status, FormError.of(exc, "reset"))
    return me_page(p, challenge=info)


@bp.post("/pin-reset/<challenge_id>")
@page("holder.pin")
def confirm_reset(p: Page, challenge_id: str) -> Any:
    holder = _own(p)
    code = request.form.get("code", "")

    def work() -> None:
        _limit(p, "otp", f"cin:{holder.cin}")
        p.session.commit()
        root = wiring()
        reset.confirm_pin_reset(p.runtime.sessions, p.clock, root.tokens(),
                                root.sealer(), challenge_id=challenge_id, cin=holder.cin,
                                code=code, so_pin=p.settings.so_pin, actor=p.actor,
                                policy=root.policy)

    return _attempt(p, "reset", work, "reset")


@bp.post("/contact-change")
@page("holder.contact")
def confirm_contact(p: Page) -> Any:
    """The holder confirms a new mobile or email with the code sent to it."""
    holder = _own(p)
    channel = request.form.get("channel", "")
    code = request.form.get("code", "")

    def work() -> None:
        _limit(p, "otp", f"cin:{holder.cin}")
        p.session.commit()
        contact_change.confirm_change(p.runtime.sessions, p.clock, holder_id=holder.id,
                                      channel=channel, code=code, actor=p.actor)

    return _attempt(p, f"change-{channel}", work, "contact_confirmed")


@bp.post("/me/preferences")
@page("holder.contact")
def preferences(p: Page) -> Any:
    """The language of the holder's messages; notices to the professional address."""
    holder = _own(p)

    def work() -> None:
        with p.attempt():
            holders.set_preferences(
                p.session, p.clock, holder.id, actor=p.actor,
                lang=request.form.get("preferred_lang", ""),
                notices_to_professional=request.form.get("notices_to_professional") == "1")

    return _attempt(p, "preferences", work, "preferences")
