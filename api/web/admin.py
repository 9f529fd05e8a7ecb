"""The DGCL administrator's pages: quota policies (read), partnerships and billing, users
and API keys, the audit log with its chain check, and the national or regional report as a
CSV file (UTF-8 with BOM, ``;`` separated, French and Arabic names: it opens correctly in
a French spreadsheet).

Every figure comes from the domain (``quotas.policy``, ``quotas.ledger``,
``api.accounts``, ``core.audit``, ``api.audit_anchor``, ``delivery.oversight``).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import make_response, request

from api import accounts
from api.audit_anchor import verify_in
from api.models import USER_ROLES
from api.web.pages import FormError, _done, _html, _year, bp, rt_passwords
from api.web.session import Page, page
from api.wiring.flaskapp import wiring
from core.audit import list_events
from core.errors import InvalidInput, TawqiError
from delivery import oversight
from quotas import ledger, policy
from quotas import queries as refqueries
from quotas.errors import InvalidPartnership, InvalidPolicy

#: The censuses a policy may read (the legal populations the reference data holds).
CENSUS_YEARS = (2014, 2024)
#: the byte-order mark that tells a spreadsheet the file is UTF-8
BOM = "\ufeff"


def _errors(exc: TawqiError) -> bool:
    return exc.status < 500


# --------------------------------------------------------------------------- quotas


def _quotas_page(p: Page, status: int = 200, form_error: FormError | None = None,
                 form: dict[str, str] | None = None) -> Any:
    year = _year(p)
    lines = ledger.billing(p.session, year)
    specs = policy.list_policies(p.session)
    raw = request.args.get("base", "")
    policy_form = form if form and form_error and form_error.form == "policy" else \
        _policy_form(specs, int(raw) if raw.isdigit() else None)
    return _html("admin_quotas.html", status, policies=specs,
                 billing=lines, total=sum((x.amount_mad for x in lines), Decimal(0)),
                 year=year, form_error=form_error, form=form or {},
                 done=request.args.get("done", ""), policy_form=policy_form,
                 tier_rows=range(POLICY_FORM_TIERS), census_years=CENSUS_YEARS,
                 may_partner=p.allowed("quotas.partnerships.write"),
                 may_policy=p.allowed("quotas.policies.write"))


@bp.get("/admin/quotas")
@page("quotas.billing.read")
def quotas(p: Page) -> Any:
    return _quotas_page(p)


#: Rows of tiers the policy form offers (empty rows are left out).
POLICY_FORM_TIERS = 5


def _policy_form(specs: list[policy.PolicySpec], base: int | None) -> dict[str, str]:
    """The new-version form, filled from version ``base`` (or the latest): versions are
    immutable, so changing a policy is recording the next version."""
    found = next((s for s in specs if s.version == base), specs[-1] if specs else None)
    values = {"version": str(max((s.version for s in specs), default=0) + 1)}
    if found is not None:
        values.update(census_year=str(found.census_year), first_year=str(found.first_year),
                      services_count=str(found.services_count),
                      description=found.description)
        for n, tier in enumerate(found.tiers):
            values.update({f"tier{n}_name": tier.name, f"tier{n}_min": str(tier.min_population),
                           f"tier{n}_max": "" if tier.max_population is None
                           else str(tier.max_population),
                           f"tier{n}_count": str(tier.yearly_count)})
    return values


def _number(text: str, field: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise InvalidPolicy("a whole number is expected here", field=field)
    return int(text)


@bp.post("/admin/policies")
@page("quotas.policies.write")
def new_policy(p: Page) -> Any:
    f = request.form
    try:
        with p.attempt():
            tiers = []
            for n in range(POLICY_FORM_TIERS):
                name = f.get(f"tier{n}_name", "").strip()
                if not name:
                    continue
                top = f.get(f"tier{n}_max", "").strip()
                tiers.append(policy.Tier(name[:40], _number(f.get(f"tier{n}_min", ""), "tiers"),
                                         _number(top, "tiers") if top else None,
                                         _number(f.get(f"tier{n}_count", ""), "tiers")))
            spec = policy.PolicySpec(
                _number(f.get("version", ""), "version"),
                census_year=_number(f.get("census_year", ""), "census_year"),
                first_year=_number(f.get("first_year", ""), "first_year"),
                services_count=_number(f.get("services_count", ""), "services_count"),
                tiers=tuple(tiers), description=f.get("description", "").strip()[:200])
            if spec.census_year not in CENSUS_YEARS:
                raise InvalidPolicy("choose a census", field="census_year")
            policy.record_policy(p.session, p.clock, spec, actor=p.actor)
    except InvalidPolicy as exc:
        form = {k: v for k, v in f.items() if k != "csrf_token"}
        refused = FormError.of(exc, "policy")
        if refused.field is None:  # the tiers as a whole (a gap, an overlap...)
            refused = FormError(refused.message, "tiers", "policy")
        return _quotas_page(p, exc.status, refused, form)
    return _done("web.quotas", "policy")


@bp.post("/admin/partnerships")
@page("quotas.partnerships.write")
def partnership(p: Page) -> Any:
    f = request.form
    try:
        with p.attempt():
            try:
                year, count = int(f.get("year", "")), int(f.get("count", ""))
                price = Decimal(f.get("unit_price_mad", ""))
                signed = date.fromisoformat(f.get("signed_on", ""))
            except (ValueError, InvalidOperation) as exc:
                raise InvalidPartnership("fill in every field", field="partnership") from exc
            ledger.add_partnership(p.session, p.clock, commune_code=f.get("commune_code", ""),
                                   year=year, count=count, unit_price_mad=price,
                                   signed_on=signed, reference=f.get("reference", ""),
                                   actor=p.actor)
    except TawqiError as exc:
        if not _errors(exc):
            raise
        form = {k: v for k, v in f.items() if k != "csrf_token"}
        return _quotas_page(p, exc.status, FormError.of(exc, "partnership"), form)
    return _done("web.quotas", "partnership", year=year)


# --------------------------------------------------------------------------- users, keys


def _users_page(p: Page, status: int = 200, form_error: FormError | None = None,
                new_key: str = "") -> Any:
    users, _total = accounts.list_users(p.session, limit=200)
    keys, _n = accounts.list_api_keys(p.session, include_revoked=True, limit=100)
    provinces = list(refqueries.provinces(p.session).items)
    return _html("admin_users.html", status, users=users, keys=keys, roles=USER_ROLES,
                 provinces=provinces, form_error=form_error, new_key=new_key,
                 done=request.args.get("done", ""),
                 may_manage=p.allowed("users.manage"),
                 may_keys=p.allowed("apikeys.manage"))


@bp.get("/admin/users")
@page("users.read")
def users(p: Page) -> Any:
    return _users_page(p)


@bp.post("/admin/users")
@page("users.manage")
def create_user(p: Page) -> Any:
    f = request.form
    try:
        with p.attempt():
            accounts.create_user(p.session, p.clock, rt_passwords(),
                                 username=f.get("username", ""),
                                 display_name=f.get("display_name", ""),
                                 role=f.get("role", ""), password=f.get("password", ""),
                                 province_code=f.get("province_code") or None,
                                 actor=p.actor)
    except TawqiError as exc:
        if not _errors(exc):
            raise
        return _users_page(p, exc.status, FormError.of(exc, "user"))
    return _done("web.users", "user")


@bp.post("/admin/users/<int:user_id>/active")
@page("users.manage")
def user_active(p: Page, user_id: int) -> Any:
    accounts.set_active(p.session, p.clock, user_id, request.form.get("active") == "1",
                        actor=p.actor)
    return _done("web.users", "user_active")


@bp.post("/admin/api-keys")
@page("apikeys.manage")
def create_key(p: Page) -> Any:
    try:
        with p.attempt():
            issued = accounts.create_api_key(p.session, p.clock,
                                             name=request.form.get("name", ""),
                                             actor=p.actor)
    except TawqiError as exc:
        if not _errors(exc):
            raise
        return _users_page(p, exc.status, FormError.of(exc, "key"))
    return _users_page(p, 201, new_key=issued.key)  # shown once, never again


@bp.post("/admin/api-keys/<int:key_id>/revoke")
@page("apikeys.manage")
def revoke_key(p: Page, key_id: int) -> Any:
    accounts.revoke_api_key(p.session, p.clock, key_id, actor=p.actor)
    return _done("web.users", "key_revoked")


# --------------------------------------------------------------------------- audit


@bp.get("/admin/audit")
@page("audit.read")
def audit(p: Page) -> Any:
    action = request.args.get("action", "").strip() or None
    actor = request.args.get("actor", "").strip() or None
    found = list_events(p.session, action=action, actor=actor, newest_first=True, limit=100)
    report = verify_in(p.session, p.settings) if request.args.get("check") else None
    return _html("admin_audit.html", events=found.items, total=found.total,
                 action=action or "", actor=actor or "", report=report)


# --------------------------------------------------------------------------- reports


@bp.get("/report.csv")
@page("oversight.read")
def report_csv(p: Page) -> Any:
    """Per region (or per province of ``?region=``): the dashboard's figures as CSV."""
    region = request.args.get("region") or None
    year = _year(p)
    rows = oversight.areas(p.session, p.clock, year=year,
                           overdue_days=wiring().policy.handover_overdue_days,
                           region_code=region)
    if region is not None and not rows:
        raise InvalidInput(f"no region {region}", field="region")
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["code", "nom", "الاسم", "communes", "peuvent signer", "sans certificat",
                     "demandes en attente", "lots en transit", "remises en retard",
                     "délai médian (jours)", "quota alloué", "consommé", "réservé",
                     "disponible"])
    for r in rows:
        q = r.quota
        lead = "" if r.median_lead_days is None else \
            f"{r.median_lead_days:.1f}".replace(".", ",")
        writer.writerow([r.area.code, r.area.name_fr, r.area.name_ar, r.communes,
                         r.communes_able, r.without, r.waiting_total, r.batches_in_transit,
                         r.overdue_handovers, lead, q.total, q.consumed, q.reserved,
                         q.available])
    response = make_response(out.getvalue().encode("utf-8"))
    name = f"tawqi-{'region-' + region if region else 'national'}-{year}.csv"
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
