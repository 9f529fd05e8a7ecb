"""Login by form, the session cookie, CSRF tokens and the page wrapper.

The session cookie carries the very bearer token :func:`api.accounts.login` issues (only
its hash is stored; logout and disabling an account revoke it, as for the API). It is
HttpOnly, SameSite=Lax, limited to ``/web`` and Secure when ``TAWQI_PUBLIC_URL`` is https.

CSRF: every POST form carries a token derived from a secret the browser keeps in an
HttpOnly cookie (the session token, or before login a random pre-session value):
``HMAC-SHA256(SHA-256(secret), "tawqi-web-csrf")``. Another site can make the browser send
the cookie but can neither read it nor compute the token. No server-side state, so it holds
across workers without a shared key.

:func:`page` gives a view its unit of work and principal and applies ``api.policy``: a role
absent from the action's rule is refused before the view runs, and a view under a scoped
rule must call :meth:`Page.authorize` (fail closed, as :mod:`api.routing` does).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import g, redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from api import accounts, policy
from api.accounts import Principal
from api.errors import TokenInvalid
from api.routing import ScopeNotChecked
from api.runtime import Runtime
from api.web.i18n import DEFAULT_LANG, LANGS
from api.wiring.flaskapp import runtime
from core.clock import Clock
from core.config import Settings
from core.errors import Forbidden

SESSION_COOKIE = "tawqi_web"
PRESESSION_COOKIE = "tawqi_web_pre"
#: A password-checked login waiting for its second factor (a pending token).
PENDING_COOKIE = "tawqi_web_2fa"
LANG_COOKIE = "tawqi_lang"
COOKIE_PATH = "/web"
CSRF_FIELD = "csrf_token"


class CsrfRefused(Forbidden):
    """A form posted without the CSRF token of this browser's session."""

    type = "csrf-refused"
    title = "Form refused"


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.lower().startswith("https://")


def lang() -> str:
    chosen = request.cookies.get(LANG_COOKIE, DEFAULT_LANG)
    return chosen if chosen in LANGS else DEFAULT_LANG


def _csrf_secret() -> str | None:
    return request.cookies.get(SESSION_COOKIE) or request.cookies.get(PENDING_COOKIE) \
        or request.cookies.get(PRESESSION_COOKIE) or g.get("tawqi_web_presession")


def csrf_token() -> str:
    """The token to put in this page's forms (starting a pre-session if needed)."""
    secret = _csrf_secret()
    if secret is None:
        secret = secrets.token_urlsafe(32)
        g.tawqi_web_presession = secret  # set as a cookie by the response hook
    return _derive(secret)


def _derive(secret: str) -> str:
    key = hashlib.sha256(secret.encode("utf-8")).digest()
    return hmac.new(key, b"tawqi-web-csrf", hashlib.sha256).hexdigest()


def check_csrf() -> None:
    """Refuse a POST whose form token does not match this browser's secret."""
    secret = request.cookies.get(SESSION_COOKIE) or request.cookies.get(PENDING_COOKIE) \
        or request.cookies.get(PRESESSION_COOKIE)
    sent = request.form.get(CSRF_FIELD, "")
    if not secret or not sent or not hmac.compare_digest(sent, _derive(secret)):
        raise CsrfRefused("this form lacks a valid CSRF token; reload the page")


def set_cookies(response: Response) -> Response:
    """Response hook: the pre-session cookie a page's forms rely on."""
    fresh = g.get("tawqi_web_presession")
    if fresh is not None and not request.cookies.get(SESSION_COOKIE):
        response.set_cookie(PRESESSION_COOKIE, fresh, httponly=True, samesite="Lax",
                            secure=secure_cookies(runtime().settings), path=COOKIE_PATH)
    return response


def start_session(response: Response, token: str, max_age: int) -> None:
    settings = runtime().settings
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True,
                        samesite="Lax", secure=secure_cookies(settings), path=COOKIE_PATH)
    response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH)
    response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)


def start_pending(response: Response, token: str, max_age: int) -> None:
    """The password was right; the second factor is still to come."""
    response.set_cookie(PENDING_COOKIE, token, max_age=max_age, httponly=True,
                        samesite="Lax", secure=secure_cookies(runtime().settings),
                        path=COOKIE_PATH)
    response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH)


def principal_of(session: Session, clock: Clock) -> Principal | None:
    """The user behind this browser's session cookie, or None (no cookie, or revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or not token.startswith(accounts.SESSION_PREFIX):
        return None
    try:
        found = accounts.authenticate(session, clock, token)
    except TokenInvalid:
        return None
    return found if found.kind == "user" else None


@dataclass
class Page:
    """What a web view gets: the unit of work, the caller, the language."""

    runtime: Runtime
    session: Session
    principal: Principal
    action: str | None
    lang: str
    _scoped: bool = False

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def actor(self) -> str:
        return self.principal.actor

    def authorize(self, scope: policy.Scope, action: str | None = None) -> None:
        policy.authorize(self.principal, action or self._action(), scope)
        if action is None:
            self._scoped = True

    def allowed(self, action: str, scope: policy.Scope | None = None) -> bool:
        """Whether to show a form or a button (the POST is authorised again)."""
        try:
            if scope is None:
                policy.check_role(self.principal, action)
            else:
                policy.authorize(self.principal, action, scope)
        except Forbidden:
            return False
        return True

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """A savepoint: a refused form leaves nothing of its work behind."""
        with self.session.begin_nested():
            yield

    def _action(self) -> str:
        if self.action is None:
            raise TypeError("this page declares no action")
        return self.action

    @property
    def scoped(self) -> bool:
        return self._scoped


def needs_second_factor(settings: Settings, principal: Principal) -> bool:
    """A user of a role that must have a TOTP second factor and has none yet."""
    roles = {r.strip() for r in settings.totp_required_roles.split(",") if r.strip()}
    return principal.role in roles and not principal.second_factor


def page(action: str | None, *, enrolling: bool = False
         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a web view under ``action`` of :data:`api.policy.RULES` (None: any
    logged-in user). Anonymous browsers are sent to the login form; a user who must have
    a second factor and has none, to its enrolment page (``enrolling`` marks that page)."""
    if action is not None:
        policy.reach("holder", action)  # KeyError at import time for a typo

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(**kwargs: Any) -> Any:
            rt = runtime()
            with rt.unit_of_work() as session:
                principal = principal_of(session, rt.clock)
                if principal is None:
                    target = request.full_path if request.method == "GET" else None
                    return redirect(url_for("web.login", next=target), 303)
                g.tawqi_web_principal = principal
                if not enrolling and needs_second_factor(rt.settings, principal):
                    return redirect(url_for("web.second_factor"), 303)
                if action is not None:
                    policy.check_role(principal, action)
                call = Page(rt, session, principal, action, lang())
                result = view(call, **kwargs)
                if action is not None and not call.scoped and \
                        policy.reach(principal.role, action) is not policy.ANY:
                    raise ScopeNotChecked("the service could not complete the request")
                return result

        return wrapper

    return decorate
