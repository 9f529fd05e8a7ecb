"""The web interface for people: server-rendered pages in French and Arabic (DESIGN §3.7).

Views parse the form, authorise through :mod:`api.policy` (via :func:`session.page`), call
the same domain services as the JSON API and render a template. No SQL, no crypto here:
the dashboards read :mod:`delivery.oversight` and :mod:`quotas.oversight`.

Pages: login; national dashboard (regions, ranking, communes without a certificate) →
region → province (holders, requests, batches, quota per commune, the contact's forms) →
commune; the operator's queue (approve, reject); the holder's own credentials (terms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from api import accounts, ratelimit
from api.policy import Scope
from api.routing import client_address
from api.web import charts, i18n
from api.web.session import (
    COOKIE_PATH,
    CSRF_FIELD,
    LANG_COOKIE,
    Page,
    check_csrf,
    csrf_token,
    end_session,
    lang,
    page,
    principal_of,
    runtime,
    secure_cookies,
    set_cookies,
    start_pending,
    start_session,
)
from api.wiring.flaskapp import wiring
from core.audit import record
from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TawqiError,
    Unauthenticated,
)
from delivery import batches, contacts, holders, outbox, oversight, requests, titles
from delivery.errors import InvalidHolder
from delivery.models import BATCH_PREPARING, OPEN_STATES, PERSONALISED, TOKEN_FORMS
from quotas.errors import UnknownEntity
from quotas.models import Commune, Province, Region

bp = Blueprint("web", __name__, url_prefix="/web", template_folder="templates",
               static_folder="static", static_url_path="/static")

# Pages load only our stylesheet; forms post only to us.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
FORM_ERRORS = (InvalidInput, Conflict, NotFound)


# --------------------------------------------------------------------------- plumbing


@bp.before_request
def _csrf() -> None:
    if request.method == "POST":
        check_csrf()


@bp.after_request
def _headers(response: BaseResponse) -> BaseResponse:
    # a view may widen its own policy (the OAuth page posts forms that end at the client)
    response.headers.setdefault("Content-Security-Policy", CSP)
    if request.endpoint not in ("web.static", "web.font"):
        response.headers["Cache-Control"] = "no-store"
    return set_cookies(response)


#: Where Debian's fonts-dejavu-core installs the Latin face.
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
#: The faces web.css names with @font-face, by the name it asks for: (directory, file).
#: Amiri comes from the stamp's font directory (``TAWQI_STAMP_FONT_DIR``).
FONTS = {"amiri-regular.ttf": (None, "Amiri-Regular.ttf"),
         "amiri-bold.ttf": (None, "Amiri-Bold.ttf"),
         "dejavu-sans.ttf": (DEJAVU_DIR, "DejaVuSans.ttf"),
         "dejavu-sans-bold.ttf": (DEJAVU_DIR, "DejaVuSans-Bold.ttf"),
         "dejavu-sans-mono.ttf": (DEJAVU_DIR, "DejaVuSansMono.ttf")}


@bp.get("/fonts/<name>")
def font(name: str) -> BaseResponse:
    """The fonts the pages use, served by us: people's computers do not have Amiri."""
    found = FONTS.get(name)
    if found is None:
        raise NotFound(f"no font {name}")
    folder = found[0] or Path(runtime().settings.stamp_font_dir)
    response = send_from_directory(folder, found[1], mimetype="font/ttf", max_age=86400)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.app_context_processor
def _context() -> dict[str, Any]:
    if not request.blueprint == "web":
        return {}
    current = lang()

    def t(key: str, **values: Any) -> str:
        return i18n.text(current, key, **values)

    def tn(key: str, n: int, **values: Any) -> str:
        return i18n.plural(current, key, n, **values)

    def name(obj: Any, field: str = "name") -> str:
        return i18n.pick(current, obj, field)

    def num(value: int | float | None) -> str:
        return i18n.number(current, value)

    def title(holder: Any) -> str:  # the holder's title, agreeing with their civility
        return titles.title_for(holder.role, holder.civility, current)

    def role_title(role: str, civility: str) -> str:  # a seat's, agreeing with its holder
        return titles.title_for(role, civility, current)

    def day(at: datetime | None) -> str:
        return i18n.day(current, at)

    def when(at: datetime | None) -> str:
        return i18n.moment(current, at)

    def pct(share: float) -> str:
        return i18n.number(current, round(share * 100))

    return {"lang": current, "dir": "rtl" if current == "ar" else "ltr", "t": t, "tn": tn,
            "name": name, "csrf_field": CSRF_FIELD, "csrf_token": csrf_token,
            "user": g.get("tawqi_web_principal"), "day": day, "when": when, "pct": pct,
            "num": num, "title": title, "role_title": role_title,
            "here": request.full_path.rstrip("?")}


def _html(template: str, code: int = 200, **values: Any) -> Response:
    return make_response(render_template(f"web/{template}", **values), code)


def _done(endpoint: str, done: str, **values: Any) -> BaseResponse:
    return redirect(url_for(endpoint, done=done, **values), 303)


@bp.errorhandler(TawqiError)
def _domain_error(exc: TawqiError) -> Any:
    """The error page in the reader's language: a message chosen by the error's type,
    never the service's English detail nor an internal action name."""
    if isinstance(exc, Unauthenticated):
        return redirect(url_for("web.login"), 303)
    status = exc.status if 400 <= exc.status < 500 else 500
    if status >= 500:  # the operators' logs get the service's own words
        current_app.logger.error("web page %s failed: %s (%s)", request.path, exc.type,
                                 exc.detail)
    message = i18n.error_message(lang(), exc) if status < 500 else \
        i18n.text(lang(), "error.500")
    return _html("error.html", status, status=status, title_key="error.title"
                 if isinstance(exc, Forbidden) else "error.other", message=message)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    key = f"error.{code}" if i18n.has(lang(), f"error.{code}") else "error.generic"
    return _html("error.html", code, status=code, title_key="error.other",
                 message=i18n.text(lang(), key))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    """Anything else: logged whole for the operators, a page in the reader's language."""
    if isinstance(exc, (TawqiError, HTTPException)):  # handled above
        raise exc
    current_app.logger.exception("web page %s failed", request.path)
    return _html("error.html", 500, status=500, title_key="error.other",
                 message=i18n.text(lang(), "error.500"))


@dataclass(frozen=True)
class FormError:
    """A refused form, as the page shows it: the message and the field it concerns."""

    message: str
    field: str | None
    form: str = ""  # which form of the page (its id) was refused

    @classmethod
    def of(cls, exc: TawqiError, form: str = "") -> FormError:
        field = exc.extras.get("field")
        return cls(i18n.error_message(lang(), exc), field if isinstance(field, str) else None,
                   form)


def _home_for(principal: accounts.Principal) -> str:
    if principal.role == "contact" and principal.province_code:
        return url_for("web.province", code=principal.province_code)
    if principal.role == "holder":
        return url_for("web.me")
    return url_for("web.national")


def _safe_next(target: str | None) -> str | None:
    """Only our own pages, never another host."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/web/") or \
            target.startswith("//"):
        return None
    return target


#: Rows per page of the province page's long tables.
PROVINCE_PAGE_SIZE = 25


@dataclass(frozen=True)
class Pager:
    """One page of a long table: the page asked by the query argument ``key``."""

    key: str
    number: int
    pages: int
    total: int

    @classmethod
    def of(cls, key: str, total: int, size: int) -> Pager:
        pages = max(1, -(-total // size))
        raw = request.args.get(key, "1")
        number = int(raw) if raw.isdigit() else 1
        return cls(key, min(max(number, 1), pages), pages, total)

    def slice(self, rows: list[Any], size: int) -> list[Any]:
        return rows[(self.number - 1) * size:self.number * size]

    def url(self, number: int) -> str:
        args: dict[str, Any] = {k: v for k, v in request.args.items()
                                if k not in (self.key, "done")}
        args[self.key] = str(number)
        args.update(request.view_args or {})
        return url_for(request.endpoint or "web.home", **args)


def _year(p: Page) -> int:
    raw = request.args.get("year", "")
    year = int(raw) if raw.isdigit() and len(raw) == 4 else p.clock.now().year
    return min(max(year, 2020), 2100)


# --------------------------------------------------------------------------- login


@bp.get("/login")
def login() -> Response:
    return _html("login.html", next=_safe_next(request.args.get("next")) or "")


@bp.post("/login")
def login_post() -> BaseResponse:
    rt = runtime()
    username = request.form.get("username", "").strip().lower()[:64]
    password = request.form.get("password", "")[:1024]
    target = _safe_next(request.form.get("next"))
    client = client_address()
    limit, backoff = ratelimit.login_policy(rt.settings)
    try:  # the API's login rules: failures only, backoff per name (docs/api.md)
        with rt.unit_of_work() as session:
            ratelimit.login_attempt(session, rt.clock, username=username, address=client,
                                    limit=limit, backoff=backoff)
    except RateLimited:
        return _html("login.html", 429, next=target or "", error="login.limited",
                     username=username)
    passwords = rt_passwords()
    ttl = timedelta(minutes=rt.settings.session_ttl_minutes)
    try:
        with rt.unit_of_work() as session:
            issued = accounts.login(session, rt.clock, passwords, username=username,
                                    password=password, ttl=ttl, client=client,
                                    second_factor_step=True)
            ratelimit.login_succeeded(session, rt.clock, username=username, address=client,
                                      limit=limit)
            if issued.pending:  # the password was right; now the authenticator's code
                pending = redirect(url_for("web.login_second_factor", next=target), 303)
                start_pending(pending, issued.token,
                              int(accounts.SECOND_FACTOR_TTL.total_seconds()))
                return pending
            principal = accounts.authenticate(session, rt.clock, issued.token)
    except Unauthenticated:
        with rt.unit_of_work() as session:
            record(session, rt.clock, actor="anonymous", action="auth.login_failed",
                   object_type="username", object_id=username or "-",
                   summary={"client": client, "via": "web"})
        return _html("login.html", 401, next=target or "", error="login.bad",
                     username=username)
    response = redirect(target or _home_for(principal), 303)
    start_session(response, issued.token, int(ttl.total_seconds()))
    return response


def rt_passwords() -> accounts.Passwords:
    found: accounts.Passwords = current_app.extensions["tawqi.passwords"]
    return found


@bp.post("/logout")
def logout() -> BaseResponse:
    rt = runtime()
    with rt.unit_of_work() as session:
        principal = principal_of(session, rt.clock)
        if principal is not None:
            accounts.logout(session, rt.clock, principal)
    response = redirect(url_for("web.login"), 303)
    end_session(response)
    return response


@bp.get("/lang/<choice>")
def switch_lang(choice: str) -> BaseResponse:
    if choice not in i18n.LANGS:
        raise NotFound(f"no language {choice}")
    response = redirect(_safe_next(request.args.get("next")) or url_for("web.home"), 303)
    response.set_cookie(LANG_COOKIE, choice, max_age=365 * 86400, httponly=True,
                        samesite="Lax", secure=secure_cookies(runtime().settings),
                        path=COOKIE_PATH)
    return response


@bp.get("/")
@page(None)
def home(p: Page) -> BaseResponse:
    return redirect(_home_for(p.principal), 303)


# --------------------------------------------------------------------------- dashboards


def _region(session: Session, code: str) -> Region:
    found = session.get(Region, code)
    if found is None:
        raise UnknownEntity(f"no region {code}", entity=code)
    return found


def _province(session: Session, code: str) -> Province:
    found = session.get(Province, code)
    if found is None:
        raise UnknownEntity(f"no prefecture/province {code}", entity=code)
    return found


def _charts(p: Page, rows: list[oversight.AreaFigures]) -> list[Any]:
    """The report's charts: the share of communes able to sign, and the quota consumed,
    per area (the table of the page carries the same figures)."""
    current = p.lang
    able = [charts.Bar(i18n.pick(current, r.area, "name"), r.able_share,
                       f"{i18n.number(current, round(r.able_share * 100))} %") for r in rows]
    used = [charts.Bar(i18n.pick(current, r.area, "name"), r.quota.consumed,
                       i18n.number(current, r.quota.consumed)) for r in rows]
    rtl = current == "ar"
    made = []
    for key, bars, scale in (("able", able, 1.0),
                             ("consumed", used, max([b.value for b in used] + [1]))):
        title = i18n.text(current, f"chart.{key}")
        made.append((title, charts.bar_chart(bars, scale=scale, chart_id=f"chart-{key}",
                                             rtl=rtl, title=title,
                                             desc=i18n.text(current, "chart.desc"))))
    return made


def _dashboard(p: Page, rows: list[oversight.AreaFigures], whole: oversight.Area,
               **scope: str) -> dict[str, Any]:
    blocked = oversight.blockages(p.session, p.clock, **scope)
    lost = [b for b in blocked if not b.never]
    return {"rows": rows, "ranking": oversight.rank(rows), "charts": _charts(p, rows),
            "sum": oversight.total(rows, whole), "lost": lost[:50],
            "never": len(blocked) - len(lost), "year": _year(p),
            "states": [s for s in OPEN_STATES]}


@bp.get("/national")
@page("oversight.read")
def national(p: Page) -> Response:
    year = _year(p)
    rows = oversight.areas(p.session, p.clock, year=year,
                           overdue_days=wiring().policy.handover_overdue_days)
    country = oversight.Area("country", "MA", i18n.text("fr", "country"),
                             i18n.text("ar", "country"))
    return _html("dashboard.html", level="region", area=country, parent=None,
                 child_endpoint="web.region", **_dashboard(p, rows, country))


@bp.get("/region/<code>")
@page("oversight.read")
def region(p: Page, code: str) -> Response:
    found = _region(p.session, code)
    rows = oversight.areas(p.session, p.clock, year=_year(p),
                           overdue_days=wiring().policy.handover_overdue_days,
                           region_code=code)
    area = oversight.Area("region", found.code, found.name_fr, found.name_ar)
    return _html("dashboard.html", level="province", area=area, parent=None,
                 child_endpoint="web.province", **_dashboard(p, rows, area, region_code=code))


def _province_page(p: Page, code: str, commune_code: str | None = None,
                   status: int = 200, form_error: FormError | None = None,
                   form: dict[str, str] | None = None, open_form: str = "") -> Response:
    province = _province(p.session, code)
    p.authorize(Scope(province_code=province.code))
    commune = None
    if commune_code is not None:
        commune = p.session.get(Commune, commune_code)
        if commune is None or commune.province_code != province.code:
            raise UnknownEntity(f"no commune {commune_code} in {code}", entity=commune_code)
    region_row = p.session.get(Region, province.region_code)
    overdue_days = wiring().policy.handover_overdue_days
    year = _year(p)
    rows = oversight.areas(p.session, p.clock, year=year, overdue_days=overdue_days,
                           province_code=code)
    area = oversight.Area("province", province.code, province.name_fr, province.name_ar)
    board = _dashboard(p, rows, area, province_code=code)
    board["sum"] = oversight.province_figures(p.session, p.clock, code, year=year,
                                              overdue_days=overdue_days)
    people = oversight.province_holders(p.session, p.clock, code)
    asked = oversight.province_requests(p.session, p.clock, code)
    if commune is not None:
        people = [h for h in people if h.commune_code == commune.code]
        asked = [r for r in asked if r.commune_code == commune.code]
        board["rows"] = [r for r in rows if r.area.code == commune.code]
    communes = [r.area for r in rows]
    scope = Scope(province_code=code)
    holders_pager = Pager.of("hp", len(people), PROVINCE_PAGE_SIZE)
    requests_pager = Pager.of("rp", len(asked), PROVINCE_PAGE_SIZE)
    return _html(
        "province.html", status, province=province, region=region_row, commune=commune,
        holders=people, holders_rows=holders_pager.slice(people, PROVINCE_PAGE_SIZE),
        holders_pager=holders_pager, requests_pager=requests_pager,
        requests=requests_pager.slice(asked, PROVINCE_PAGE_SIZE), open_states=OPEN_STATES,
        may_cancel=p.allowed("requests.cancel", scope),
        may_report=p.allowed("requests.incident", scope),
        reportable=_reportable(people),
        may_receive=p.allowed("batches.receive", scope),
        batches=oversight.province_batches(p.session, p.clock, code,
                                           overdue_days=overdue_days),
        communes=communes, roles=list(holders.ROLES), civilities=titles.CIVILITIES,
        token_forms=TOKEN_FORMS,
        may_register=p.allowed("holders.write", scope),
        may_request=p.allowed("requests.create", scope),
        may_handover=p.allowed("requests.handover", scope),
        may_drill_up=p.allowed("oversight.read"),
        form_error=form_error, form=form or {}, open_form=open_form,
        done=request.args.get("done", ""), level="commune", area=area, **board)


@bp.get("/province/<code>")
@page("reports.read")
def province(p: Page, code: str) -> Response:
    return _province_page(p, code)


@bp.get("/province/<code>/commune/<commune_code>")
@page("reports.read")
def commune(p: Page, code: str, commune_code: str) -> Response:
    return _province_page(p, code, commune_code)


def _contact_acting(p: Page, province_code: str) -> int | None:
    """Which contact the caller acts as: delivery's rule (the API shares it)."""
    return contacts.acting_contact_id(p.session, province_code,
                                      as_contact=p.principal.role == "contact")


def _acting_contact(p: Page, province_code: str) -> int:
    """The designated contact a request or registration is made through: the caller's
    own record for a contact, the province's for an operator."""
    return contacts.designated_contact_id(p.session, province_code)


#: States of a token the hand-over area offers to report lost, stolen or damaged: with the
#: contact, handed over, or in use (delivery.incidents decides what it accepts).
REPORTABLE_STATES = ("delivered", "handed_over", "active")


def _reportable(people: list[oversight.HolderLine]) -> set[int]:
    """The requests whose token may be reported from the hand-over area: each holder's
    newest request (one already replaced is not), in use only while its certificate is
    valid."""
    return {h.request_id for h in people
            if h.request_id is not None and h.request_status in REPORTABLE_STATES
            and (h.request_status != "active" or h.certificate == "valid")}


def _form_action(p: Page, code: str, open_form: str,
                 work: Callable[[], None], done: str) -> Any:
    """Run a form's work in a savepoint; on a refusal show the page again with the reason
    and what was typed."""
    try:
        with p.attempt():
            work()
    except FORM_ERRORS as exc:
        form = {k: v for k, v in request.form.items() if k != CSRF_FIELD}
        return _province_page(p, code, status=exc.status,
                              form_error=FormError.of(exc, open_form), form=form,
                              open_form=open_form)
    return _done("web.province", done, code=code)


@bp.post("/province/<code>/holders")
@page("holders.write")
def register_holder(p: Page, code: str) -> Any:
    _province(p.session, code)
    p.authorize(Scope(province_code=code))
    f = request.form

    def work() -> None:
        commune_code = f.get("commune_code", "") or None
        if commune_code is not None:
            found = p.session.get(Commune, commune_code)
            if found is None or found.province_code != code:
                raise InvalidHolder(f"commune {commune_code} is not in {code}",
                                            field="commune_code")
        contact_id = _contact_acting(p, code)
        holders.register_holder(p.session, p.clock, holders.HolderRegistration(
            cin=f.get("cin", ""), given_name_fr=f.get("given_name_fr", ""),
            surname_fr=f.get("surname_fr", ""), given_name_ar=f.get("given_name_ar", ""),
            surname_ar=f.get("surname_ar", ""), role=f.get("role", ""),
            civility=f.get("civility", "mr"), mobile=f.get("mobile", ""),
            email=f.get("email", ""), commune_code=commune_code,
            province_code=None if commune_code else code,
            preferred_lang=f.get("preferred_lang", "fr")), actor=p.actor,
            contact_id=contact_id)

    return _form_action(p, code, "register", work, "holder")


@bp.post("/province/<code>/requests")
@page("requests.create")
def submit_request(p: Page, code: str) -> Any:
    _province(p.session, code)
    p.authorize(Scope(province_code=code))
    raw = request.form.get("holder_id", "")

    def work() -> None:
        if not raw.isdigit():
            raise InvalidHolder("choose a holder", field="holder_id")
        holder = holders.get_holder(p.session, int(raw))
        if holder.province_code != code:
            raise InvalidHolder("this holder is not of this province",
                                        field="holder_id")
        requests.submit_request(p.session, p.clock, contact_id=_acting_contact(p, code),
                                holder_id=holder.id,
                                token_form=request.form.get("token_form", ""),
                                actor=p.actor)

    return _form_action(p, code, "request", work, "request")


@bp.post("/requests/<int:request_id>/handover")
@page("requests.handover")
def handover(p: Page, request_id: int) -> Any:
    found = requests.get_request(p.session, request_id)
    p.authorize(Scope(province_code=found.province_code))
    contact_id = _contact_acting(p, found.province_code)

    def work() -> None:
        batches.record_handover(p.session, p.clock, request_id,
                                handed_to=request.form.get("handed_to", ""),
                                acknowledgement=request.form.get("acknowledgement", ""),
                                actor=p.actor, policy=wiring().policy,
                                contact_id=contact_id)

    return _form_action(p, found.province_code, f"handover-{request_id}", work, "handover")


# --------------------------------------------------------------------------- operator


def _queue_page(p: Page, status: int = 200, form_error: FormError | None = None) -> Response:
    threshold = runtime().settings.outbox_alert_age_minutes
    alarm = (outbox.alert(p.session, p.clock, threshold_minutes=threshold)
             if p.allowed("outbox.read") else None)
    queue = oversight.operator_queue(p.session, p.clock)
    to_ship = sorted({(r.province_code, r.province_name_fr, r.province_name_ar)
                      for r in queue[PERSONALISED] if r.batch_id is None})
    return _html("queue.html", status, queue=queue,
                 stages=oversight.QUEUE_STAGES, may_decide=p.allowed("requests.decide"),
                 may_ship=p.allowed("batches.ship"), may_retry=p.allowed("outbox.manage"),
                 to_ship=[oversight.Area("province", c, fr, ar) for c, fr, ar in to_ship],
                 preparing=list(batches.list_batches(p.session,
                                                     status=BATCH_PREPARING).items),
                 documents=("cin", "passport", "residence"),
                 form_error=form_error, done=request.args.get("done", ""),
                 outbox_alert=alarm if alarm is not None and alarm.raised else None,
                 outbox_threshold=threshold)


@bp.get("/queue")
@page("queue.read")
def queue(p: Page) -> Response:
    return _queue_page(p)


def _decide(p: Page, request_id: int, work: Callable[[], object], done: str) -> Any:
    found = requests.get_request(p.session, request_id)
    p.authorize(Scope(province_code=found.province_code))
    try:
        with p.attempt():
            work()
    except FORM_ERRORS as exc:
        return _queue_page(p, exc.status, FormError.of(exc))
    return _done("web.queue", done)


@bp.post("/requests/<int:request_id>/reject")
@page("requests.decide")
def reject(p: Page, request_id: int) -> Any:
    return _decide(p, request_id, lambda: requests.reject_request(
        p.session, p.clock, request_id, actor=p.actor,
        reason=request.form.get("reason", "")), "rejected")
