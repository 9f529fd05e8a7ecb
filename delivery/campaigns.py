"""Election campaigns: from the list of the newly elected to communes that can sign again.

A DGCL administrator opens a campaign (name, installation date of the new councils, scope,
funding). The newly elected are imported from a CSV file, all or nothing: every line is
checked first and every error is reported with its line number. For each seat (a role in a
commune) the importer recognises who is re-elected (they keep their certificate, nothing is
requested), who changes mandate (a vice-president who becomes president) and who is new
(registered); the outgoing holder's mandate ends on the installation date. A request is
submitted for every incoming holder at once, so that approval, personalisation and shipping
happen before the installation. At installation the outgoing certificates are revoked in one
bulk operation (``affiliationChanged``), resumable and with a dry run.

:func:`report` says, per seat: the outgoing certificate's status, each step of the incoming
request, whether the commune can sign again (and since when not), and the gap in days
between the end of the outgoing mandate and the incoming holder's activation; the blocked
seats come worst first. :func:`notify_contacts` sends each province's contact its list.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import deferred, record
from core.clock import Clock, as_utc
from core.errors import TawqiError
from delivery import holders, mandate_change, mandates, requests
from delivery.contacts import active_contact
from delivery.errors import (
    CampaignExists,
    CampaignImportInvalid,
    CampaignNotFound,
    CampaignStateError,
    InvalidCampaign,
    InvalidHolder,
)
from delivery.messages import seat_line
from delivery.models import (
    ACTIVE,
    CAMPAIGN_FUNDINGS,
    CAMPAIGN_IMPORTED,
    CAMPAIGN_INSTALLED,
    CAMPAIGN_OPEN,
    CAMPAIGN_SCOPES,
    CLOSED_STATES,
    DEVICE,
    FUNDING_EXTRA,
    HOSTED,
    KIND_NEW,
    PERSONALISED,
    REQUEST_STATES,
    SCOPE_NATION,
    SCOPE_PROVINCE,
    SCOPE_REGION,
    Campaign,
    CampaignEntry,
    CertificateRequest,
    Holder,
    Mandate,
)
from delivery.outbox import Notification, enqueue
from delivery.validation import require_text
from pki.models import STATUS_ISSUED, STATUS_SUSPENDED, CertificateRecord
from quotas import ledger
from quotas.models import ENTITY_COMMUNE, Commune, Province, Region

#: The CSV file's columns, in this order, with a header line.
CSV_COLUMNS = ("commune_code", "role", "cin", "given_name_fr", "surname_fr", "given_name_ar",
               "surname_ar", "civility", "phone", "email")
MAX_IMPORT_LINES = 20_000
DGCL = "DGCL"
_CODE = re.compile(r"[0-9]{2}(\.[0-9]{3}(\.[0-9]{2}\.[0-9]{2})?)?")

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------- opening


def open_campaign(session: Session, clock: Clock, *, name: str, installation_date: date,
                  scope_kind: str, scope_codes: Sequence[str] = (), funding: str,
                  actor: str) -> Campaign:
    """Open a campaign. ``scope_codes``: nothing for the nation, one region or province
    code, or the commune codes."""
    name = require_text(name, field="name", max_length=200, error=InvalidCampaign)
    if scope_kind not in CAMPAIGN_SCOPES:
        raise InvalidCampaign(f"scope must be one of {', '.join(CAMPAIGN_SCOPES)}",
                              field="scope_kind")
    if funding not in CAMPAIGN_FUNDINGS:
        raise InvalidCampaign(f"funding must be one of {', '.join(CAMPAIGN_FUNDINGS)}",
                              field="funding")
    codes = sorted({c.strip() for c in scope_codes if c.strip()})
    malformed = [c for c in codes if not _CODE.fullmatch(c)]
    if malformed:
        raise InvalidCampaign(f"not a territory code: {malformed[0][:20]!r}",
                              field="scope_codes")
    if scope_kind == SCOPE_NATION:
        if codes:
            raise InvalidCampaign("a national campaign takes no codes", field="scope_codes")
    elif scope_kind in (SCOPE_REGION, SCOPE_PROVINCE):
        if len(codes) != 1:
            raise InvalidCampaign(f"give one {scope_kind} code", field="scope_codes")
        table: type[Region] | type[Province] = Region if scope_kind == SCOPE_REGION \
            else Province
        if session.get(table, codes[0]) is None:
            raise InvalidCampaign(f"no {scope_kind} {codes[0]}", field="scope_codes")
    else:
        if not codes:
            raise InvalidCampaign("give the communes", field="scope_codes")
        found = set(session.scalars(select(Commune.code).where(Commune.code.in_(codes),
                                                               Commune.kind != "arrondissement")))
        missing = [c for c in codes if c not in found]
        if missing:
            raise InvalidCampaign(f"not communes: {', '.join(missing[:10])}",
                                  field="scope_codes", missing=missing[:50])
    if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
        raise CampaignExists(f"a campaign named {name!r} exists", name=name)
    campaign = Campaign(name=name, installation_date=installation_date, scope_kind=scope_kind,
                        scope_codes=json.dumps(codes), funding=funding, status=CAMPAIGN_OPEN,
                        opened_by=actor, opened_at=clock.now())
    try:
        with session.begin_nested():
            session.add(campaign)
    except IntegrityError as exc:
        raise CampaignExists(f"a campaign named {name!r} exists", name=name) from exc
    record(session, clock, actor=actor, action="delivery.campaign.opened",
           object_type="campaign", object_id=campaign.id,
           summary={"name": name, "installation_date": installation_date.isoformat(),
                    "scope": scope_kind, "codes": codes[:50], "funding": funding})
    return campaign


def get_campaign(session: Session, campaign_id: int, *, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        query = query.with_for_update()
    campaign = session.scalar(query)
    if campaign is None:
        raise CampaignNotFound(f"no campaign {campaign_id}", campaign_id=campaign_id)
    return campaign


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc())))


def _in_scope(session: Session, campaign: Campaign, commune: Commune) -> bool:
    codes = json.loads(campaign.scope_codes)
    if campaign.scope_kind == SCOPE_NATION:
        return True
    if campaign.scope_kind == SCOPE_PROVINCE:
        return commune.province_code == codes[0]
    if campaign.scope_kind == SCOPE_REGION:
        province = session.get_one(Province, commune.province_code)
        return province.region_code == codes[0]
    return commune.code in codes


# ------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class LineError:
    """One refused line: ``message`` in English for the API and the CLI, and ``reason``
    (a stable slug: ``not_csv``, ``empty``, ``header``, ``too_many``, ``columns``,
    ``not_commune``, ``out_of_scope``, ``invalid``, ``seat_taken``, ``cin_repeated``,
    ``no_contact``, ``refused``) with its plain ``params`` for the pages to say it in the
    reader's language."""

    line: int
    field: str
    message: str
    reason: str = "invalid"
    params: Mapping[str, str | int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "message": self.message,
                "reason": self.reason, "params": dict(self.params)}


@dataclass(frozen=True)
class _Row:
    line: int
    commune: Commune
    registration: holders.HolderRegistration


@dataclass(frozen=True)
class ImportResult:
    campaign_id: int
    lines: int
    new_holders: int
    re_elected: int
    changed_mandate: int
    requests: int
    outgoing: int


def _read(session: Session, campaign: Campaign, text: str) -> tuple[list[_Row], list[LineError]]:
    if "\x00" in text:
        return [], [LineError(1, "", "not a CSV file: it holds NUL characters", "not_csv")]
    try:
        return _read_rows(session, campaign, text)
    except csv.Error as exc:  # e.g. a NUL byte: not a CSV file at all
        return [], [LineError(1, "", f"not a CSV file: {exc}", "not_csv")]


def _read_rows(session: Session, campaign: Campaign, text: str
               ) -> tuple[list[_Row], list[LineError]]:
    errors: list[LineError] = []
    rows: list[_Row] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        return [], [LineError(1, "", "the file is empty", "empty")]
    header = [h.strip().lower() for h in header]
    if tuple(header) != CSV_COLUMNS:
        return [], [LineError(1, "", f"the header must be: {','.join(CSV_COLUMNS)}", "header",
                              {"columns": ",".join(CSV_COLUMNS)})]
    seats: dict[tuple[str, str], int] = {}
    cins: dict[str, int] = {}
    taken = {(e.commune_code, e.role): e.line for e in session.scalars(
        select(CampaignEntry).where(CampaignEntry.campaign_id == campaign.id))}
    contacts: dict[str, bool] = {}
    lines: list[tuple[int, list[str]]] = []
    for number, cells in enumerate(reader, start=2):
        lines.append((number, cells))
        if number > MAX_IMPORT_LINES and any(c.strip() for c in cells):
            break  # refused below, as the first line over the limit
    # the file's communes in a few set queries, then found in the identity map (held here:
    # the map keeps only what something refers to)
    loaded = _load_communes(session, {c[0].strip() for _, c in lines
                                      if len(c) == len(CSV_COLUMNS)})
    for number, cells in lines:
        if not any(c.strip() for c in cells):
            continue
        if number > MAX_IMPORT_LINES:
            errors.append(LineError(number, "", f"at most {MAX_IMPORT_LINES} lines",
                                    "too_many", {"limit": MAX_IMPORT_LINES}))
            break
        if len(cells) != len(CSV_COLUMNS):
            errors.append(LineError(number, "", f"{len(cells)} columns, "
                                                f"{len(CSV_COLUMNS)} expected", "columns",
                                    {"count": len(cells), "expected": len(CSV_COLUMNS)}))
            continue
        values = dict(zip(CSV_COLUMNS, (c.strip() for c in cells), strict=True))
        commune = session.get(Commune, values["commune_code"])
        if commune is None or commune.kind == "arrondissement":
            errors.append(LineError(number, "commune_code",
                                    f"{values['commune_code']!r} is not a commune",
                                    "not_commune", {"code": values["commune_code"][:20]}))
            continue
        if not _in_scope(session, campaign, commune):
            errors.append(LineError(number, "commune_code",
                                    f"{commune.code} is outside the campaign's scope",
                                    "out_of_scope", {"code": commune.code}))
            continue
        try:
            registration = holders.HolderRegistration(
                cin=values["cin"], given_name_fr=values["given_name_fr"],
                surname_fr=values["surname_fr"], given_name_ar=values["given_name_ar"],
                surname_ar=values["surname_ar"], role=values["role"],
                mobile=values["phone"], email=values["email"], commune_code=commune.code,
                civility=values["civility"],
                mandate_started_on=campaign.installation_date)
        except InvalidHolder as exc:
            field = str(exc.extras.get("field", ""))
            errors.append(LineError(number, "phone" if field == "mobile" else field,
                                    exc.detail))
            continue
        seat = (commune.code, registration.role)
        if seat in seats or seat in taken:
            first = seats.get(seat) or taken[seat]
            errors.append(LineError(number, "role", f"{registration.role} of {commune.code} "
                                                    f"is already on line {first}",
                                    "seat_taken", {"role": registration.role,
                                                   "code": commune.code, "first": first}))
            continue
        if registration.cin in cins:
            errors.append(LineError(number, "cin", f"CIN {registration.cin} is already on "
                                                   f"line {cins[registration.cin]}",
                                    "cin_repeated", {"cin": registration.cin,
                                                     "first": cins[registration.cin]}))
            continue
        if commune.province_code not in contacts:
            contacts[commune.province_code] = active_contact(
                session, commune.province_code) is not None
        if not contacts[commune.province_code]:
            errors.append(LineError(number, "commune_code",
                                    f"province {commune.province_code} has no designated "
                                    "contact to receive the token", "no_contact",
                                    {"code": commune.province_code}))
            continue
        seats[seat] = number
        cins[registration.cin] = number
        rows.append(_Row(number, commune, registration))
    del loaded  # every line is read
    if not rows and not errors:
        errors.append(LineError(1, "", "the file has no lines", "empty"))
    return rows, errors


_CHUNK = 500


def _chunks(values: Sequence[Any]) -> list[list[Any]]:
    items = list(values)
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _load_communes(session: Session, codes: set[str]) -> list[Commune]:
    """Load the communes into the session's identity map (``session.get`` then finds them
    without a query while the caller holds the list)."""
    found: list[Commune] = []
    for chunk in _chunks(sorted(c for c in codes if c)):
        found += session.scalars(select(Commune).where(Commune.code.in_(chunk)))
    return found


@dataclass
class _Known:
    """What the import reads in a few set queries up front, instead of once per line."""

    holders: dict[str, Holder]  # by CIN, the file's holders already registered
    seats: dict[tuple[str, str], list[Mandate]]  # (commune, role) -> mandates in force
    contacts: dict[str, Any]  # province -> its designated contact
    held: list[Holder]  # the seats' holders, kept in the identity map for ending mandates


def _known(session: Session, rows: list[_Row]) -> _Known:
    found: dict[str, Holder] = {}
    for chunk in _chunks(sorted({r.registration.cin for r in rows})):
        for holder in session.scalars(select(Holder).where(Holder.cin.in_(chunk))):
            found[holder.cin] = holder
    wanted = {(r.commune.code, r.registration.role) for r in rows}
    seats: dict[tuple[str, str], list[Mandate]] = {}
    for chunk in _chunks(sorted({code for code, _ in wanted})):
        for mandate in session.scalars(select(Mandate).where(
                Mandate.commune_code.in_(chunk), Mandate.ended_on.is_(None))
                .order_by(Mandate.id)):
            seat = (str(mandate.commune_code), mandate.role)
            if seat in wanted:
                seats.setdefault(seat, []).append(mandate)
    outgoing = sorted({m.holder_id for ms in seats.values() for m in ms})
    held: list[Holder] = []
    for chunk in _chunks(outgoing):  # into the identity map, for ending their mandates
        held += session.scalars(select(Holder).where(Holder.id.in_(chunk)))
    contacts = {code: active_contact(session, code)
                for code in sorted({r.commune.province_code for r in rows})}
    return _Known(found, seats, contacts, held)


def import_elected(session: Session, clock: Clock, campaign_id: int, text: str, *,
                   actor: str, token_form: str = DEVICE,
                   progress: Progress | None = None) -> ImportResult:
    """Import the newly elected (CSV text, :data:`CSV_COLUMNS`), all or nothing, in the
    caller's transaction. Raises :class:`CampaignImportInvalid` with every error (line
    number, field, message) and changes nothing if any line is wrong."""
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status == CAMPAIGN_INSTALLED:
        raise CampaignStateError("the campaign is installed: nothing more can be imported",
                                 campaign_id=campaign.id, status=campaign.status)
    rows, errors = _read(session, campaign, text)
    if errors:
        raise CampaignImportInvalid(f"{len(errors)} error(s); nothing was imported",
                                    errors=[e.as_dict() for e in errors[:500]],
                                    error_count=len(errors))
    with deferred(session):  # the events appended in one go at the end (one head lock)
        return _import_rows(session, clock, campaign, rows, errors, actor=actor,
                            token_form=token_form, progress=progress)


def _import_rows(session: Session, clock: Clock, campaign: Campaign, rows: list[_Row],
                 errors: list[LineError], *, actor: str, token_form: str,
                 progress: Progress | None) -> ImportResult:
    counts = {"new": 0, "re_elected": 0, "changed": 0, "requests": 0, "outgoing": 0}
    at = campaign.installation_date
    reason = f"campaign {campaign.name}"
    known = _known(session, rows)
    # the communes' quota ledgers for the year, created together rather than one by one
    ledger.prepare_ledgers(session, [r.commune.code for r in rows], at.year)
    for done, row in enumerate(rows, start=1):
        try:
            with session.begin_nested():
                _import_row(session, clock, campaign, row, counts, known, actor=actor,
                            token_form=token_form, at=at, reason=reason)
        except TawqiError as exc:  # a token under way, the quota exhausted...
            errors.append(LineError(row.line, str(exc.extras.get("field", "")), exc.detail,
                                    "refused", {"type": exc.type}))
        if progress is not None:
            progress(done, len(rows))
    if errors:  # the caller's transaction is rolled back when this propagates
        raise CampaignImportInvalid(f"{len(errors)} error(s); nothing was imported",
                                    errors=[e.as_dict() for e in errors[:500]],
                                    error_count=len(errors))
    campaign.status = CAMPAIGN_IMPORTED
    campaign.imported_at = clock.now()
    session.flush()
    result = ImportResult(campaign.id, len(rows), counts["new"], counts["re_elected"],
                          counts["changed"], counts["requests"], counts["outgoing"])
    record(session, clock, actor=actor, action="delivery.campaign.imported",
           object_type="campaign", object_id=campaign.id, summary=vars(result))
    return result


def _import_row(session: Session, clock: Clock, campaign: Campaign, row: _Row,
                counts: dict[str, int], known: _Known, *, actor: str, token_form: str,
                at: date, reason: str) -> None:
    registration = row.registration
    commune = row.commune
    # in force now: a mandate read up front may have been ended by an earlier line
    seat = [m for m in known.seats.get((commune.code, registration.role), ())
            if m.ended_on is None]
    holder = known.holders.get(registration.cin)
    outgoing_serials: list[str] = []
    outgoing: Mandate | None = None
    re_elected = holder is not None and any(m.holder_id == holder.id for m in seat)
    for mandate in seat:
        if holder is not None and mandate.holder_id == holder.id:
            continue
        outgoing = mandate
        _, serials = mandate_change.end_mandate(
            session, clock, mandate.holder_id, ended_on=at, reason=reason, actor=actor,
            revoke=None)
        outgoing_serials += serials
        counts["outgoing"] += 1
    request_id = None
    if holder is not None and holder.civility != registration.civility:
        holders.set_civility(session, clock, holder.id, registration.civility, actor=actor)
    if re_elected and holder is not None:
        incoming = mandates.require_current_mandate(session, holder)
        counts["re_elected"] += 1
        record(session, clock, actor=actor, action="delivery.mandate.renewed",
               object_type="holder", object_id=holder.id,
               summary={"mandate_id": incoming.id, "campaign_id": campaign.id,
                        "role": incoming.role, "entity": incoming.entity})
    else:
        entity = mandates.Entity(ENTITY_COMMUNE, commune.code, commune.province_code)
        if holder is None:
            holder = holders.register_holder(session, clock, registration, actor=actor,
                                             campaign_id=campaign.id)
            incoming = mandates.require_current_mandate(session, holder)
            counts["new"] += 1
        else:
            current = mandates.current_mandate(session, holder.id)
            if current is not None:
                _, serials = mandate_change.end_mandate(
                    session, clock, holder.id, ended_on=at, reason=reason, actor=actor,
                    revoke=None)
                outgoing_serials += serials
            incoming = mandates.open_mandate(session, clock, holder, role=registration.role,
                                             entity=entity, started_on=at, actor=actor,
                                             campaign_id=campaign.id, follows=current)
            counts["changed"] += 1
        year = at.year
        if campaign.funding == FUNDING_EXTRA:
            ledger.add_extra_allotment(
                session, clock, ledger.Entity(ENTITY_COMMUNE, commune.code), year, count=1,
                billed_to=DGCL, reference=f"campaign:{campaign.id}:{commune.code}:"
                                          f"{registration.role}", actor=actor)
        contact = known.contacts.get(commune.province_code)
        assert contact is not None  # checked while reading
        request = requests.submit_request(session, clock, contact_id=contact.id,
                                          holder_id=holder.id, token_form=token_form,
                                          actor=actor, year=year)
        request_id = request.id
        counts["requests"] += 1
    session.add(CampaignEntry(
        campaign_id=campaign.id, line=row.line, commune_code=commune.code,
        province_code=commune.province_code, role=registration.role,
        incoming_holder_id=holder.id, incoming_mandate_id=incoming.id,
        re_elected=re_elected, request_id=request_id,
        outgoing_holder_id=outgoing.holder_id if outgoing is not None else None,
        outgoing_mandate_id=outgoing.id if outgoing is not None else None,
        outgoing_serials=" ".join(outgoing_serials)))
    session.flush()


# ------------------------------------------------------------------------------- install


@dataclass(frozen=True)
class InstallResult:
    campaign_id: int
    dry_run: bool
    to_revoke: tuple[str, ...]
    revoked: tuple[str, ...]
    already_revoked: int
    activated: tuple[int, ...] = ()  # hosted requests activated at installation


def _live(session: Session, serials: Sequence[str]) -> set[str]:
    if not serials:
        return set()
    return set(session.scalars(select(CertificateRecord.serial).where(
        CertificateRecord.serial.in_(list(serials)),
        CertificateRecord.status.in_((STATUS_ISSUED, STATUS_SUSPENDED)))))


def install(session: Session, clock: Clock, campaign_id: int, *, actor: str,
            revoke: mandate_change.Revoker | None, dry_run: bool = False,
            activate: bool = False) -> InstallResult:
    """The new councils are installed: revoke every outgoing certificate of the campaign
    (``affiliationChanged``) in one bulk operation. With ``activate``, then activate the
    incoming holders' hosted tokens personalised beforehand (quota consumed, PIN notices
    queued: :func:`delivery.requests.activate_request`). Resumable: what is already revoked
    or active is skipped. ``dry_run`` lists what would be revoked and changes nothing."""
    campaign = get_campaign(session, campaign_id, lock=not dry_run)
    if campaign.status == CAMPAIGN_OPEN:
        raise CampaignStateError("import the newly elected before installing",
                                 campaign_id=campaign.id, status=campaign.status)
    entries = list(session.scalars(select(CampaignEntry).where(
        CampaignEntry.campaign_id == campaign.id).order_by(CampaignEntry.id)))
    wanted = [s for e in entries for s in e.outgoing_serials.split() if s]
    live = _live(session, wanted)
    to_revoke = tuple(s for s in wanted if s in live)
    if dry_run:
        return InstallResult(campaign.id, True, to_revoke, (), len(wanted) - len(to_revoke))
    if as_utc(clock.now()).date() < campaign.installation_date:
        raise CampaignStateError(
            f"the councils are installed on {campaign.installation_date.isoformat()}",
            campaign_id=campaign.id, installation_date=campaign.installation_date.isoformat())
    with deferred(session):  # the events appended in one go at the end (one head lock)
        return _install(session, clock, campaign, entries, wanted, to_revoke, actor=actor,
                        revoke=revoke, activate=activate)


def _load_for_activation(session: Session, request_ids: list[int]) -> list[object]:
    """The holders, mandates and communes the activations read, in a few set queries;
    returned for the caller to hold (the identity map keeps only what is referred to)."""
    held: list[object] = []
    for chunk in _chunks(request_ids):
        rows = session.execute(select(CertificateRequest.holder_id, CertificateRequest.mandate_id)
                               .where(CertificateRequest.id.in_(chunk))).all()
        found = list(session.scalars(select(Holder).where(
            Holder.id.in_({h for h, _ in rows}))))
        held += found
        held += session.scalars(select(Mandate).where(Mandate.id.in_({m for _, m in rows})))
        codes = {h.commune_code for h in found if h.commune_code}
        held += session.scalars(select(Commune).where(Commune.code.in_(codes)))
    return held


def _install(session: Session, clock: Clock, campaign: Campaign, entries: list[CampaignEntry],
             wanted: list[str], to_revoke: tuple[str, ...], *, actor: str,
             revoke: mandate_change.Revoker | None, activate: bool) -> InstallResult:
    if to_revoke:
        if revoke is None:
            raise CampaignStateError("revoking the outgoing certificates needs the CA")
        revoke(to_revoke, mandate_change.AFFILIATION_CHANGED, actor)
    # the outgoing credentials leave ``active`` (also those an interrupted run revoked)
    requests.end_revoked_with_mandate(session, clock, wanted, actor=actor,
                                      note=f"campaign {campaign.name}: mandate ended")
    now = clock.now()
    for entry in entries:
        if entry.outgoing_revoked_at is None:
            entry.outgoing_revoked_at = now
    activated: list[int] = []
    if activate:
        ready = session.scalars(select(CertificateRequest.id).join(
            CampaignEntry, CampaignEntry.request_id == CertificateRequest.id).where(
            CampaignEntry.campaign_id == campaign.id, CertificateRequest.token_form == HOSTED,
            CertificateRequest.status == PERSONALISED,
            CertificateRequest.kind == KIND_NEW).order_by(CertificateRequest.id))
        ready_ids = list(ready)
        held = _load_for_activation(session, ready_ids)
        for request_id in ready_ids:
            requests.activate_request(session, clock, request_id, actor=actor)
            activated.append(request_id)
        del held
    first_time = campaign.status != CAMPAIGN_INSTALLED
    campaign.status = CAMPAIGN_INSTALLED
    campaign.installed_at = campaign.installed_at or now
    campaign.installed_by = campaign.installed_by or actor
    session.flush()
    record(session, clock, actor=actor, action="delivery.campaign.installed",
           object_type="campaign", object_id=campaign.id,
           summary={"revoked": len(to_revoke), "already_revoked": len(wanted) - len(to_revoke),
                    "activated": len(activated), "first_time": first_time})
    return InstallResult(campaign.id, False, to_revoke, to_revoke,
                         len(wanted) - len(to_revoke), tuple(activated))


# ------------------------------------------------------------------------------- report

#: The incoming request's steps, in order (for "each step" and for worst-first ordering).
STEPS = tuple(s for s in REQUEST_STATES if s not in CLOSED_STATES)


@dataclass(frozen=True)
class SeatStatus:
    """One seat of the campaign (a role in a commune), as the report shows it."""

    commune_code: str
    commune_fr: str
    commune_ar: str
    province_code: str
    role: str
    re_elected: bool
    incoming_holder_id: int
    incoming_name_fr: str
    incoming_name_ar: str
    outgoing_name_fr: str | None
    outgoing_status: str | None  # the outgoing certificate's: issued, revoked... or None
    request_id: int | None
    request_status: str | None
    steps: dict[str, datetime]  # step -> when it was reached
    can_sign: bool  # someone can sign for the seat now (incoming, or outgoing before)
    signing_since: datetime | None  # when the incoming holder could sign (activation)
    blocked_since: date | None  # installed, and nobody can sign: since the installation
    gap_days: int | None  # from the outgoing mandate's end to the incoming activation

    def as_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            if isinstance(v, datetime | date):
                return v.isoformat()
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {k: plain(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CampaignReport:
    campaign: Campaign
    seats: tuple[SeatStatus, ...]

    @property
    def blocked(self) -> tuple[SeatStatus, ...]:
        """Seats where nobody can sign, worst first: blocked longest, then furthest from
        activation."""
        rows = [s for s in self.seats if s.blocked_since is not None]
        return tuple(sorted(rows, key=lambda s: (
            s.blocked_since or date.max,
            STEPS.index(s.request_status) if s.request_status in STEPS else -1,
            s.commune_code, s.role)))

    @property
    def max_gap_days(self) -> int | None:
        gaps = [s.gap_days for s in self.seats if s.gap_days is not None]
        return max(gaps) if gaps else None


def _name(holder: Holder | None, lang: str) -> str:
    if holder is None:
        return ""
    return (f"{holder.given_name_fr} {holder.surname_fr}" if lang == "fr"
            else f"{holder.given_name_ar} {holder.surname_ar}")


def _credential_active(session: Session, holder_id: int, at: datetime
                       ) -> CertificateRequest | None:
    """The holder's newest active request whose certificate is valid at ``at``."""
    rows = session.scalars(select(CertificateRequest).where(
        CertificateRequest.holder_id == holder_id, CertificateRequest.status == ACTIVE,
        CertificateRequest.certificate_serial.is_not(None))
        .order_by(CertificateRequest.id.desc()))
    for row in rows:
        cert = session.scalar(select(CertificateRecord).where(
            CertificateRecord.serial == row.certificate_serial))
        if cert is not None and cert.status == STATUS_ISSUED and \
                as_utc(cert.not_before) <= at <= as_utc(cert.not_after):
            return row
    return None


def report(session: Session, clock: Clock, campaign_id: int, *,
           province_code: str | None = None) -> CampaignReport:
    """Per seat: outgoing certificate, incoming request's steps, can the commune sign
    again (yes, or since when not), the gap in days. ``province_code``: one province's."""
    campaign = get_campaign(session, campaign_id)
    query = select(CampaignEntry).where(CampaignEntry.campaign_id == campaign.id)
    if province_code:
        query = query.where(CampaignEntry.province_code == province_code)
    now = as_utc(clock.now())
    seats = []
    for entry in session.scalars(query.order_by(CampaignEntry.commune_code,
                                                CampaignEntry.role)):
        commune = session.get_one(Commune, entry.commune_code)
        incoming = session.get_one(Holder, entry.incoming_holder_id)
        outgoing = (session.get(Holder, entry.outgoing_holder_id)
                    if entry.outgoing_holder_id else None)
        serials = entry.outgoing_serials.split()
        certs = [session.scalar(select(CertificateRecord).where(
            CertificateRecord.serial == s)) for s in serials]
        out_status = next((c.status for c in certs if c is not None and
                           c.status in (STATUS_ISSUED, STATUS_SUSPENDED)),
                          certs[0].status if certs and certs[0] is not None else None)
        outgoing_valid = any(c is not None and c.status == STATUS_ISSUED for c in certs)
        request = (session.get(CertificateRequest, entry.request_id)
                   if entry.request_id else None)
        steps = ({s.status: s.at for s in requests.timeline(session, request.id).steps}
                 if request is not None else {})
        active = _credential_active(session, incoming.id, now)
        signing_since = None
        if active is not None:
            signing_since = requests.timeline(session, active.id).reached(ACTIVE)
        ended = campaign.installation_date
        installed = now.date() >= ended
        can_sign = active is not None or (outgoing_valid and not installed)
        # Blocked: the councils are installed and nobody can sign for the seat.
        blocked_since = ended if installed and not can_sign else None
        gap = None
        if signing_since is not None:
            gap = max(0, (as_utc(signing_since).date() - ended).days)
        elif blocked_since is not None:
            gap = (now.date() - ended).days
        seats.append(SeatStatus(
            entry.commune_code, commune.name_fr, commune.name_ar, entry.province_code,
            entry.role, entry.re_elected, incoming.id, _name(incoming, "fr"),
            _name(incoming, "ar"), _name(outgoing, "fr") or None, out_status,
            request.id if request is not None else None,
            request.status if request is not None else None, steps, can_sign,
            signing_since, blocked_since, gap))
    return CampaignReport(campaign, tuple(seats))


def incoming_civilities(session: Session, found: CampaignReport) -> dict[int, str]:
    """Each incoming holder's civility (holder id -> ``mr``/``mrs``), for the titles of a
    report's seats (:func:`delivery.titles.title_for`)."""
    ids = {s.incoming_holder_id for s in found.seats}
    if not ids:
        return {}
    rows = session.execute(select(Holder.id, Holder.civility).where(Holder.id.in_(ids)))
    return {holder_id: civility for holder_id, civility in rows}


def notify_contacts(session: Session, clock: Clock, campaign_id: int, *,
                    actor: str) -> int:
    """Email each province's contact the campaign's list for their province (blocked seats
    first). Once per province and day. Returns how many notices were queued."""
    campaign = get_campaign(session, campaign_id)
    provinces = sorted(set(session.scalars(select(CampaignEntry.province_code).where(
        CampaignEntry.campaign_id == campaign.id))))
    day = as_utc(clock.now()).date().isoformat()
    queued = 0
    for code in provinces:
        contact = active_contact(session, code)
        if contact is None:
            continue
        province = session.get_one(Province, code)
        found = report(session, clock, campaign.id, province_code=code)
        civility = incoming_civilities(session, found)
        blocked = {id(s) for s in found.blocked}
        ordered = [*found.blocked, *(s for s in found.seats if id(s) not in blocked)]
        lines = []
        for seat in ordered:
            lines.append(seat_line(
                commune_fr=seat.commune_fr, commune_ar=seat.commune_ar, role=seat.role,
                civility=civility[seat.incoming_holder_id], name_fr=seat.incoming_name_fr,
                name_ar=seat.incoming_name_ar, request_status=seat.request_status,
                blocked_since=seat.blocked_since, can_sign=seat.can_sign))
        enqueue(session, clock, Notification(
            channel="email", recipient=contact.email, template="campaign.status",
            dedupe_key=f"campaign.status:{campaign.id}:{code}:{day}",
            params={"contact_name": contact.full_name, "campaign": campaign.name,
                    "province_fr": province.name_fr, "province_ar": province.name_ar,
                    "installation_date": campaign.installation_date.isoformat(),
                    "blocked": len(found.blocked), "count": len(found.seats),
                    "items": "\n".join(lines)}))
        queued += 1
    record(session, clock, actor=actor, action="delivery.campaign.notified",
           object_type="campaign", object_id=campaign.id,
           summary={"provinces": len(provinces), "queued": queued})
    return queued


def send_campaign_notices(session: Session, clock: Clock, *, actor: str,
                          follow_days: int = 30) -> int:
    """The periodic job's work: the contacts of each campaign under way get their
    province's list (:func:`notify_contacts`, once per province and day) from the import
    until the installation, then while seats stay blocked, for ``follow_days`` after it.
    Returns how many notices were queued."""
    today = as_utc(clock.now()).date()
    queued = 0
    under_way = session.scalars(select(Campaign).where(
        Campaign.status.in_((CAMPAIGN_IMPORTED, CAMPAIGN_INSTALLED))).order_by(Campaign.id))
    for campaign in list(under_way):
        if campaign.status == CAMPAIGN_INSTALLED and (
                today > campaign.installation_date + timedelta(days=follow_days)
                or not report(session, clock, campaign.id).blocked):
            continue
        queued += notify_contacts(session, clock, campaign.id, actor=actor)
    return queued
