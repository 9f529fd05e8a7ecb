"""Election campaigns: open (DGCL administrator or operator), import the newly elected
(CSV), prepare the incoming tokens (in batches, resumable), install (bulk revocation of the
outgoing certificates, activation of the hosted tokens), the per-seat report and the
contacts' emails. A contact reads only their own province's seats."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from api.delivery_common import PROVINCE, TokenForm, preparation_progress
from api.policy import merge_filter
from api.routing import Call, Routes
from api.schema import rule
from api.wiring import ServiceUnavailable
from api.wiring.flaskapp import load_authority_first, wiring
from delivery import campaigns, mandate_change, preparation
from delivery.models import Campaign
from delivery.personalisation import BatchPersonaliser

routes = Routes()

#: The largest CSV accepted in one import (the nation's 1,503 presidents fit many times).
MAX_CSV_CHARS = 4_000_000


@dataclass(frozen=True)
class CampaignIn:
    name: str = field(metadata=rule(min_length=1, max_length=200))
    installation_date: date
    scope_kind: Literal["nation", "region", "province", "communes"]
    funding: Literal["quota", "extra"] = field(metadata=rule(
        description="quota: within the year's quota; extra: an extra allotment on the "
                    "ledger, billed to the DGCL"))
    scope_codes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CampaignOut:
    id: int
    name: str
    installation_date: date
    scope_kind: str
    funding: str
    status: str
    opened_by: str
    opened_at: datetime
    imported_at: datetime | None
    installed_at: datetime | None


@dataclass(frozen=True)
class CampaignImportIn:
    """The newly elected, as CSV text with a header line: commune_code, role, cin,
    given_name_fr, surname_fr, given_name_ar, surname_ar, civility, phone, email."""

    csv: str = field(metadata=rule(min_length=1, max_length=MAX_CSV_CHARS))
    token_form: TokenForm = "device"


@dataclass(frozen=True)
class CampaignInstallIn:
    dry_run: bool = False
    activate: bool = field(default=False, metadata=rule(
        description="then activate the incoming holders' hosted tokens prepared beforehand "
                    "(quota consumed, PIN notices queued)"))


@dataclass(frozen=True)
class CampaignInstallOut:
    campaign_id: int
    dry_run: bool
    to_revoke: list[str]
    revoked: list[str]
    already_revoked: int
    activated: list[int] = field(metadata=rule(
        description="the requests whose hosted tokens this call activated"))


#: The most batches one call prepares (the answer says what is left: call again).
MAX_BATCHES = 50


@dataclass(frozen=True)
class CampaignPrepareIn:
    identity_check: str = field(metadata=rule(
        min_length=1, max_length=500, pattern=r"\S",
        description="how the registration authority checked the holders' identity (kept "
                    "on each approval)"))
    batch_size: int = field(default=20, metadata=rule(
        minimum=1, maximum=100, description="requests per transaction"))
    max_batches: int = field(default=5, metadata=rule(
        minimum=1, maximum=MAX_BATCHES,
        description="the most batches this call prepares before answering"))


@dataclass(frozen=True)
class CampaignPrepareOut:
    campaign_id: int
    batches: int
    approved: int = field(metadata=rule(description="requests approved by this call"))
    personalised: list[int] = field(metadata=rule(
        description="requests whose tokens this call personalised"))
    skipped: list[int] = field(metadata=rule(
        description="requests found prepared by another worker meanwhile"))
    prepared: int = field(metadata=rule(
        description="the campaign's tokens prepared so far, by every call"))
    to_prepare: int = field(metadata=rule(
        description="the campaign's requests still to prepare (0: done; otherwise call "
                    "again)"))


@dataclass(frozen=True)
class CampaignReportOut:
    campaign: CampaignOut
    seats: list[campaigns.SeatStatus]
    blocked: list[campaigns.SeatStatus]
    max_gap_days: int | None


@dataclass(frozen=True)
class CampaignReportQuery:
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))


@dataclass(frozen=True)
class CampaignNotifyOut:
    queued: int


def campaign_out(c: Campaign) -> CampaignOut:
    return CampaignOut(c.id, c.name, c.installation_date, c.scope_kind, c.funding, c.status,
                       c.opened_by, c.opened_at, c.imported_at, c.installed_at)


@dataclass(frozen=True)
class CampaignListOut:
    items: list[CampaignOut]


@routes.operation("GET", "/campaigns", action="campaigns.read", response=CampaignListOut,
                  summary="Election campaigns, newest first")
def list_campaigns(call: Call) -> CampaignListOut:
    call.list_scope()
    return CampaignListOut([campaign_out(c) for c in campaigns.list_campaigns(call.session)])


@routes.operation("POST", "/campaigns", action="campaigns.manage", body=CampaignIn,
                  response=CampaignOut, status=201, idempotency="optional", errors=(409,),
                  summary="Open an election campaign")
def open_campaign(call: Call, body: CampaignIn) -> CampaignOut:
    return campaign_out(campaigns.open_campaign(
        call.session, call.clock, name=body.name, installation_date=body.installation_date,
        scope_kind=body.scope_kind, scope_codes=body.scope_codes, funding=body.funding,
        actor=call.actor))


@routes.operation("GET", "/campaigns/<id:campaign_id>", action="campaigns.read",
                  query=CampaignReportQuery, response=CampaignReportOut,
                  summary="A campaign's report per seat: outgoing certificate, incoming "
                          "request's steps, can the commune sign again; blocked seats worst first")
def campaign_report(call: Call, campaign_id: int, query: CampaignReportQuery) -> CampaignReportOut:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = campaigns.report(call.session, call.clock, campaign_id, province_code=province)
    return CampaignReportOut(campaign_out(found.campaign), list(found.seats),
                             list(found.blocked), found.max_gap_days)


@routes.operation("POST", "/campaigns/<id:campaign_id>/import", action="campaigns.manage",
                  body=CampaignImportIn, response=campaigns.ImportResult, idempotency="optional",
                  errors=(409,),
                  summary="Import the newly elected (CSV; all or nothing, every error with its "
                          "line number); requests are submitted for the incoming holders")
def import_elected(call: Call, campaign_id: int, body: CampaignImportIn) -> campaigns.ImportResult:
    return campaigns.import_elected(call.session, call.clock, campaign_id, body.csv,
                                    actor=call.actor, token_form=body.token_form)


@routes.operation("POST", "/campaigns/<id:campaign_id>/prepare", action="campaigns.manage",
                  body=CampaignPrepareIn, response=CampaignPrepareOut, idempotency="optional",
                  transactional=False, errors=(404, 409, 503), prepare=load_authority_first,
                  summary="Prepare the incoming holders' tokens: approve the campaign's "
                          "requests and personalise their tokens (key on the token, "
                          "certificate, sealed PIN), batch after batch",
                  description="Runs at most max_batches batches of batch_size requests, each "
                              "in transactions of its own, then answers what this call "
                              "prepared and what is left (to_prepare); call again until it "
                              "is 0. Resumable and safe to run twice: a request prepared "
                              "(here or by `tawqi campaign prepare`) is never prepared "
                              "again, and an Idempotency-Key replays the first answer.")
def prepare(call: Call, campaign_id: int, body: CampaignPrepareIn) -> CampaignPrepareOut:
    found = wiring()
    personaliser = found.personaliser()
    if not isinstance(personaliser, BatchPersonaliser):
        raise ServiceUnavailable("the configured personaliser cannot work in batches")
    result = preparation.prepare_campaign(
        call.runtime.sessions, call.clock, campaign_id, personaliser=personaliser,
        sealer=found.sealer(), policy=found.policy, actor=call.actor,
        identity_check=body.identity_check, batch_size=body.batch_size,
        max_batches=body.max_batches)
    with call.runtime.unit_of_work() as session:
        progress = preparation_progress(session, campaign_id)
    return CampaignPrepareOut(result.campaign_id, result.batches, result.approved,
                              list(result.personalised), list(result.skipped),
                              progress.prepared, progress.to_prepare)


@routes.operation("POST", "/campaigns/<id:campaign_id>/install", action="campaigns.manage",
                  body=CampaignInstallIn, response=CampaignInstallOut, idempotency="optional",
                  errors=(409, 503), prepare=load_authority_first,
                  summary="Install the new councils: revoke the outgoing certificates in bulk "
                          "(affiliationChanged), and with activate activate the hosted "
                          "tokens prepared beforehand; resumable; dry_run lists what it "
                          "would do")
def install(call: Call, campaign_id: int, body: CampaignInstallIn) -> CampaignInstallOut:
    revoke = None
    if not body.dry_run:
        revoke = mandate_change.lifecycle_revoker(call.session, call.clock,
                                                  wiring().authority())
    result = campaigns.install(call.session, call.clock, campaign_id, actor=call.actor,
                               revoke=revoke, dry_run=body.dry_run, activate=body.activate)
    return CampaignInstallOut(result.campaign_id, result.dry_run, list(result.to_revoke),
                              list(result.revoked), result.already_revoked,
                              list(result.activated))


@routes.operation("POST", "/campaigns/<id:campaign_id>/notify", action="campaigns.manage",
                  response=CampaignNotifyOut, idempotency="optional",
                  summary="Email each province's contact its list (once a day)")
def notify(call: Call, campaign_id: int) -> CampaignNotifyOut:
    return CampaignNotifyOut(campaigns.notify_contacts(call.session, call.clock, campaign_id,
                                               actor=call.actor))



