"""The campaigns page: each election campaign's seats, worst blocked first (operators and
the DGCL; a contact sees their province's seats). The figures are
:func:`delivery.campaigns.report`'s, as the API serves them.

Operators and the DGCL also run a campaign here (``campaigns.manage``), with the functions
the API calls: open it (name, installation date, scope, funding), import the newly elected
(a CSV file; every error shown beside the upload field with its line number and its
reason in the reader's language, nothing imported if any), prepare the incoming tokens
(approval and personalisation in batches, :func:`delivery.preparation.prepare_campaign`:
each press runs a few batches, the page then shows the counts prepared and left, read
afresh on every load, and a button to continue), install the new councils after a dry run
that lists the certificates it would revoke.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import request

from api.delivery_common import preparation_progress
from api.policy import Scope
from api.web import i18n
from api.web.pages import FormError, _done, _html, bp
from api.web.session import Page, lang, page
from api.wiring.flaskapp import wiring
from core.errors import Conflict, InvalidInput, NotFound
from delivery import campaigns, mandate_change, preparation
from delivery.errors import CampaignImportInvalid, InvalidCampaign
from delivery.models import CAMPAIGN_FUNDINGS, CAMPAIGN_SCOPES
from delivery.personalisation import BatchPersonaliser

CAMPAIGN_FORM_ERRORS = (InvalidInput, Conflict, NotFound)
#: One press of "prepare the tokens": at most this many batches of this many requests
#: (the page then shows what is left and a button to continue).
PREPARE_BATCHES, PREPARE_BATCH_SIZE = 5, 20


@bp.get("/campaigns")
@page("campaigns.read")
def campaigns_page(p: Page) -> Any:
    return _campaign_page(p, None)


@bp.get("/campaigns/<int:campaign_id>")
@page("campaigns.read")
def campaign_page(p: Page, campaign_id: int) -> Any:
    return _campaign_page(p, campaign_id)


def _campaign_page(p: Page, campaign_id: int | None, status: int = 200,
                   form_error: FormError | None = None,
                   line_errors: list[dict[str, Any]] | None = None,
                   preview: campaigns.InstallResult | None = None) -> Any:
    listed = campaigns.list_campaigns(p.session)
    province = p.principal.province_code if p.principal.role == "contact" else None
    if province is not None:  # a contact reads their own province's seats only
        p.authorize(Scope(province_code=province))
    chosen = campaign_id if campaign_id is not None else (listed[0].id if listed else None)
    found = (campaigns.report(p.session, p.clock, chosen, province_code=province)
             if chosen is not None else None)
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    return _html("campaigns.html", status, campaigns=listed, report=found,
                 steps=campaigns.STEPS, may_manage=p.allowed("campaigns.manage"),
                 scopes=CAMPAIGN_SCOPES, fundings=CAMPAIGN_FUNDINGS,
                 done=request.args.get("done", ""), form_error=form_error, form=form,
                 open_form=form_error.form if form_error else "",
                 line_errors=line_errors or [], preview=preview,
                 civilities=campaigns.incoming_civilities(p.session, found) if found else {},
                 progress=(preparation_progress(p.session, found.campaign.id)
                           if found is not None and p.allowed("campaigns.manage") else None),
                 columns=",".join(campaigns.CSV_COLUMNS))


def _refused(p: Page, campaign_id: int | None, exc: Any, where: str) -> Any:
    p.session.rollback()
    errors = exc.extras.get("errors") if isinstance(exc, CampaignImportInvalid) else None
    return _campaign_page(p, campaign_id, exc.status, FormError.of(exc, where),
                          line_errors=_in_words(errors) if isinstance(errors, list) else None)


_NAMES = ("given_name_fr", "surname_fr", "given_name_ar", "surname_ar")


def _in_words(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each refused line in the reader's language: its number, the column and the reason
    (from the error's ``reason`` and ``params``), never the service's English."""
    reader = lang()
    shown = []
    for e in errors:
        column = str(e.get("field") or "")
        key = f"field.{column}"
        words = i18n.text(reader, key) if column and i18n.has(reader, key) else ""
        why = _why(reader, str(e.get("reason") or "invalid"), column,
                   dict(e.get("params") or {}))
        line = i18n.number(reader, int(e.get("line") or 1))
        shown.append({"line": e.get("line"), "column": column, "words": words,
                      "text": i18n.text(reader, "campaign.error_at", line=line,
                                        column=words, why=why) if words else
                      i18n.text(reader, "campaign.error_line", line=line, why=why)})
    return shown


def _why(reader: str, reason: str, column: str, params: dict[str, Any]) -> str:
    if reason == "invalid":
        key = f"campaign.invalid.{'name' if column in _NAMES else column}"
        return i18n.text(reader, key if i18n.has(reader, key) else "campaign.reason.invalid")
    if reason == "refused":
        key = f"campaign.refused.{params.get('type', '')}"
        return i18n.text(reader, key if i18n.has(reader, key) else "campaign.reason.refused")
    values = {k: i18n.number(reader, v) if isinstance(v, int) else str(v)
              for k, v in params.items()}
    if "role" in params:
        values["role"] = i18n.text(reader, f"role.{params['role']}")
    key = f"campaign.reason.{reason}"
    return i18n.text(reader, key if i18n.has(reader, key) else "campaign.reason.invalid",
                     **values)


@bp.post("/campaigns")
@page("campaigns.manage")
def open_campaign(p: Page) -> Any:
    f = request.form
    try:
        with p.attempt():
            try:
                when = date.fromisoformat(f.get("installation_date", ""))
            except ValueError as exc:
                raise InvalidCampaign("installation_date is not a date",
                                      field="installation_date") from exc
            opened = campaigns.open_campaign(
                p.session, p.clock, name=f.get("name", ""), installation_date=when,
                scope_kind=f.get("scope_kind", ""),
                scope_codes=f.get("scope_codes", "").replace(",", " ").split(),
                funding=f.get("funding", ""), actor=p.actor)
    except CAMPAIGN_FORM_ERRORS as exc:
        return _refused(p, None, exc, "campaign-open")
    return _done("web.campaign_page", "campaign_opened", campaign_id=opened.id)


@bp.post("/campaigns/<int:campaign_id>/import")
@page("campaigns.manage")
def import_elected(p: Page, campaign_id: int) -> Any:
    upload = request.files.get("csv")
    text = upload.read().decode("utf-8-sig", errors="replace") if upload else ""
    try:
        with p.attempt():
            if not text.strip():
                raise InvalidCampaign("no file", field="csv")
            campaigns.import_elected(p.session, p.clock, campaign_id, text, actor=p.actor,
                                     token_form=request.form.get("token_form", "device"))
    except CAMPAIGN_FORM_ERRORS as exc:
        return _refused(p, campaign_id, exc, "campaign-import")
    return _done("web.campaign_page", "campaign_imported", campaign_id=campaign_id)


@bp.post("/campaigns/<int:campaign_id>/install")
@page("campaigns.manage")
def install(p: Page, campaign_id: int) -> Any:
    dry_run = request.form.get("dry_run") == "1"
    try:
        with p.attempt():
            revoke = None if dry_run else mandate_change.lifecycle_revoker(
                p.session, p.clock, wiring().authority())
            result = campaigns.install(p.session, p.clock, campaign_id, actor=p.actor,
                                       revoke=revoke, dry_run=dry_run)
    except CAMPAIGN_FORM_ERRORS as exc:
        return _refused(p, campaign_id, exc, "campaign-install")
    if dry_run:
        return _campaign_page(p, campaign_id, preview=result)
    return _done("web.campaign_page", "campaign_installed", campaign_id=campaign_id)


@bp.post("/campaigns/<int:campaign_id>/prepare")
@page("campaigns.manage")
def prepare_tokens(p: Page, campaign_id: int) -> Any:
    """Approve the campaign's requests (the identity check stated in the form) and
    personalise their tokens, a few batches per press; resumable."""
    check = request.form.get("identity_check", "")
    try:
        if not check.strip():
            raise InvalidCampaign("say how the identities were checked",
                                  field="identity_check")
        campaigns.get_campaign(p.session, campaign_id)  # CampaignNotFound
        p.session.commit()  # the preparation runs its own transactions
        found = wiring()
        personaliser = found.personaliser()
        if not isinstance(personaliser, BatchPersonaliser):
            raise InvalidCampaign("the configured personaliser cannot work in batches")
        preparation.prepare_campaign(
            p.runtime.sessions, p.clock, campaign_id, personaliser=personaliser,
            sealer=found.sealer(), policy=found.policy, actor=p.actor, identity_check=check,
            batch_size=PREPARE_BATCH_SIZE, max_batches=PREPARE_BATCHES)
    except CAMPAIGN_FORM_ERRORS as exc:
        return _refused(p, campaign_id, exc, "campaign-prepare")
    return _done("web.campaign_page", "campaign_prepared", campaign_id=campaign_id)
