"""The operator's journey: the work queue with search, filters, sort and pages; the
structured identity check; approve or reject one request or many; personalise; activate (a
hosted key: its PIN goes to the holder then); prepare a
province's batch and dispatch it with its tracking number; retry dead notifications.

Every action is authorised per request or batch through :mod:`api.policy` and runs in its
own savepoint, so that one refusal in a bulk action leaves the others done and is reported
beside its request, in the reader's language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import request

from api.policy import Scope
from api.web import i18n
from api.web.pages import FormError, _done, _html, _queue_page, bp
from api.web.session import Page, page
from api.wiring.flaskapp import wiring
from core.errors import TawqiError
from delivery import batches, outbox, personalisation, requests
from delivery.models import KIND_RENEWAL, KIND_REPLACEMENT, REQUEST_STATES, TOKEN_FORMS
from delivery.search import SORTS, Filters, search_requests
from quotas import queries as refqueries

#: Identity documents an operator checks (the number of a CIN is the holder's CIN).
DOCUMENTS = ("cin", "passport", "residence")
BULK_ACTIONS = ("approve", "reject", "personalise", "activate")
PER_PAGE = 25


@dataclass(frozen=True)
class Outcome:
    request_id: int
    ok: bool
    message: str


def identity_check(document: str, number: str, checked_by: str) -> str:
    """The structured check as the request records it (one line, stable words)."""
    if document not in DOCUMENTS:
        from delivery.errors import InvalidHolder

        raise InvalidHolder("choose the document checked", field="document")
    return f"{document} {number.strip()} checked by {checked_by.strip()}"


def _filters() -> Filters:
    args = request.args
    raw_page = args.get("page", "1")
    raw_per = args.get("per", "")
    per_page = min(max(int(raw_per), 2), 100) if raw_per.isdigit() else PER_PAGE
    status = args.get("status") or None
    form = args.get("token_form") or None
    return Filters(text=args.get("q", "")[:100],
                   status=status if status in REQUEST_STATES else None,
                   province_code=(args.get("province") or None),
                   token_form=form if form in TOKEN_FORMS else None,
                   sort=args.get("sort", "age") if args.get("sort") in SORTS else "age",
                   descending=args.get("order") == "desc",
                   page=int(raw_page) if raw_page.isdigit() else 1, per_page=per_page)


def _search_page(p: Page, status: int = 200, outcomes: list[Outcome] | None = None,
                 form_error: FormError | None = None) -> Any:
    filters = _filters()
    found = search_requests(p.session, p.clock, filters)
    provinces = list(refqueries.provinces(p.session).items)
    return _html("requests.html", status, found=found, filters=filters,
                 states=REQUEST_STATES, token_forms=TOKEN_FORMS, provinces=provinces,
                 sorts=list(SORTS), documents=DOCUMENTS, outcomes=outcomes or [],
                 form_error=form_error, may_decide=p.allowed("requests.decide"),
                 may_personalise=p.allowed("requests.personalise"),
                 may_activate=p.allowed("requests.activate"),
                 args={k: v for k, v in request.args.items() if k != "page"})


@bp.get("/requests")
@page("queue.read")
def search(p: Page) -> Any:
    return _search_page(p)


def _one(p: Page, request_id: int, action: str, work: Callable[[], object]) -> Outcome:
    try:
        found = requests.get_request(p.session, request_id)
        p.authorize(Scope(province_code=found.province_code), action)
        with p.attempt():
            work()
    except TawqiError as exc:
        return Outcome(request_id, False, i18n.error_message(p.lang, exc))
    return Outcome(request_id, True, "")


@bp.post("/requests/bulk")
@page("queue.read")
def bulk(p: Page) -> Any:
    """Approve, reject, personalise or activate every request ticked, each on its own
    (activating a hosted key sends its PIN to the holder)."""
    form = request.form
    action = form.get("action", "")
    ids = sorted({int(x) for x in form.getlist("ids") if x.isdigit()})
    if action not in BULK_ACTIONS or not ids:
        from delivery.errors import InvalidHolder

        exc = InvalidHolder("tick requests and choose an action", field="ids")
        return _search_page(p, exc.status, form_error=FormError.of(exc, "bulk"))
    outcomes = []
    for request_id in ids:
        outcomes.append(_one(p, request_id, *_bulk_work(p, action, request_id)))
    return _search_page(p, outcomes=outcomes)


def _bulk_work(p: Page, action: str, request_id: int) -> tuple[str, Callable[[], object]]:
    form = request.form
    if action == "approve":
        def approve() -> object:
            found = requests.get_request(p.session, request_id)
            from delivery.holders import get_holder

            number = form.get("number", "") or get_holder(p.session, found.holder_id).cin
            return requests.approve_request(
                p.session, p.clock, request_id, actor=p.actor,
                identity_check=identity_check(form.get("document", ""), number,
                                              form.get("checked_by", "") or p.principal.name))
        return "requests.decide", approve
    if action == "reject":
        return "requests.decide", lambda: requests.reject_request(
            p.session, p.clock, request_id, actor=p.actor, reason=form.get("reason", ""))
    root = wiring()
    if action == "activate":
        def activate() -> object:
            found = requests.get_request(p.session, request_id)
            supersede = None
            if found.kind in (KIND_RENEWAL, KIND_REPLACEMENT):  # the CA revokes the old one
                personaliser = root.personaliser()

                def supersede(serial: str) -> None:
                    personaliser.supersede(p.session, p.clock, serial=serial, actor=p.actor)
            return requests.activate_request(p.session, p.clock, request_id, actor=p.actor,
                                             supersede=supersede)
        return "requests.activate", activate
    return "requests.personalise", lambda: personalisation.personalise_request(
        p.session, p.clock, request_id, personaliser=root.personaliser(),
        sealer=root.sealer(), actor=p.actor, policy=root.policy)


def _on_queue(p: Page, act: Callable[[], None], field: str, done: str) -> Any:
    """Do ``act`` on the queue page: the queue again with the refusal next to ``field``, or
    the queue with ``done`` said."""
    try:
        with p.attempt():
            act()
    except TawqiError as exc:
        if exc.status >= 500:
            raise
        return _queue_page(p, exc.status, FormError.of(exc, field))
    return _done("web.queue", done)


@bp.post("/requests/<int:request_id>/approve")
@page("requests.decide")
def approve(p: Page, request_id: int) -> Any:
    found = requests.get_request(p.session, request_id)
    p.authorize(Scope(province_code=found.province_code))
    f = request.form

    def act() -> None:
        requests.approve_request(
            p.session, p.clock, request_id, actor=p.actor,
            identity_check=identity_check(f.get("document", ""),
                                          f.get("number", ""),
                                          f.get("checked_by", "") or p.principal.name))
    return _on_queue(p, act, f"approve-{request_id}", "approved")


@bp.post("/provinces/<code>/batch")
@page("batches.ship")
def prepare(p: Page, code: str) -> Any:
    p.authorize(Scope(province_code=code))

    def act() -> None:
        batches.prepare_batch(p.session, p.clock, code, actor=p.actor)
    return _on_queue(p, act, f"prepare-{code}", "prepared")


@bp.post("/batches/<int:batch_id>/dispatch")
@page("batches.ship")
def dispatch(p: Page, batch_id: int) -> Any:
    found = batches.get_batch(p.session, batch_id)
    p.authorize(Scope(province_code=found.province_code))

    def act() -> None:
        batches.dispatch_batch(p.session, p.clock, batch_id,
                               tracking_number=request.form.get("tracking_number", ""),
                               actor=p.actor, policy=wiring().policy)
    return _on_queue(p, act, f"dispatch-{batch_id}", "dispatched")


@bp.post("/outbox/retry-dead")
@page("outbox.manage")
def retry_dead(p: Page) -> Any:
    outbox.retry_all_dead(p.session, p.clock, actor=p.actor)
    return _done("web.queue", "retried")
