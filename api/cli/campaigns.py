"""``tawqi campaign``: election campaigns (open, import the newly elected, prepare the
tokens, status, install, notify the contacts)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from api.cli.common import current_wiring, pass_runtime, print_json, print_table
from api.runtime import Runtime
from delivery import campaigns, mandate_change, preparation
from delivery.models import CAMPAIGN_FUNDINGS, CAMPAIGN_SCOPES, TOKEN_FORMS
from delivery.personalisation import BatchPersonaliser

ACTOR = "cli"


@click.group("campaign")
def campaign_group() -> None:
    """Election campaigns: open, import, prepare, status, install, notify."""


@campaign_group.command("open")
@click.option("--name", required=True)
@click.option("--installation-date", type=click.DateTime(formats=["%Y-%m-%d"]), required=True,
              help="The day the new councils are installed.")
@click.option("--scope", "scope_kind", type=click.Choice(CAMPAIGN_SCOPES), required=True)
@click.option("--code", "codes", multiple=True,
              help="The region or province code, or each commune code (repeat).")
@click.option("--funding", type=click.Choice(CAMPAIGN_FUNDINGS), default="quota",
              show_default=True,
              help="quota: within the year's quota; extra: extra allotments billed to the "
                   "DGCL.")
@pass_runtime
def campaign_open(runtime: Runtime, name: str, installation_date: datetime, scope_kind: str,
                  codes: tuple[str, ...], funding: str) -> None:
    """Open a campaign."""
    with runtime.unit_of_work() as session:
        campaign = campaigns.open_campaign(
            session, runtime.clock, name=name, installation_date=installation_date.date(),
            scope_kind=scope_kind, scope_codes=codes, funding=funding, actor=ACTOR)
        click.echo(f"campaign {campaign.id} ({campaign.name}) opened; installation on "
                   f"{campaign.installation_date}")


@campaign_group.command("import")
@click.argument("campaign_id", type=int)
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--token-form", type=click.Choice(TOKEN_FORMS), default="device",
              show_default=True)
@pass_runtime
def campaign_import(runtime: Runtime, campaign_id: int, csv_file: Path,
                    token_form: str) -> None:
    """Import the newly elected from CSV_FILE (all or nothing; every error with its line)."""
    text = csv_file.read_text(encoding="utf-8")
    try:
        with runtime.unit_of_work() as session, click.progressbar(
                length=max(text.count("\n"), 1), label="importing") as bar:
            seen = [0]

            def progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - seen[0])
                seen[0] = done

            result = campaigns.import_elected(session, runtime.clock, campaign_id, text,
                                              actor=ACTOR, token_form=token_form,
                                              progress=progress)
    except campaigns.CampaignImportInvalid as exc:
        for error in exc.extras["errors"]:
            field = f" [{error['field']}]" if error["field"] else ""
            click.echo(f"{csv_file.name}:{error['line']}:{field} {error['message']}", err=True)
        raise click.ClickException(exc.detail) from None
    click.echo(f"{result.lines} lines: {result.new_holders} new holder(s), "
               f"{result.re_elected} re-elected, {result.changed_mandate} changed mandate, "
               f"{result.outgoing} outgoing; {result.requests} request(s) submitted")


@campaign_group.command("prepare")
@click.argument("campaign_id", type=int)
@click.option("--identity-check", required=True,
              help="How the registration authority checked the holders' identity.")
@click.option("--batch", type=click.IntRange(1, 500), default=20, show_default=True,
              help="Requests per transaction.")
@click.option("--worker", type=click.IntRange(0), default=0, show_default=True,
              help="This process's share (0 to --workers - 1).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="How many processes share the work (run one command per share).")
@pass_runtime
def campaign_prepare(runtime: Runtime, campaign_id: int, identity_check: str, batch: int,
                     worker: int, workers: int) -> None:
    """Approve the campaign's requests and personalise their tokens (key on the token,
    certificate, sealed PIN), in batches. Run it again to resume."""
    wiring = current_wiring()
    personaliser = wiring.personaliser()
    if not isinstance(personaliser, BatchPersonaliser):
        raise click.ClickException("the configured personaliser cannot work in batches")
    with click.progressbar(length=1, label="preparing") as bar:
        seen = [0]

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - seen[0])
            seen[0] = done

        result = preparation.prepare_campaign(
            runtime.sessions, runtime.clock, campaign_id, personaliser=personaliser,
            sealer=wiring.sealer(), policy=wiring.policy, actor=ACTOR,
            identity_check=identity_check, batch_size=batch, worker=worker, workers=workers,
            progress=progress)
    click.echo(f"{len(result.personalised)} token(s) personalised ({result.approved} "
               f"request(s) approved) in {result.batches} batch(es); "
               f"{len(result.skipped)} done elsewhere")


@campaign_group.command("status")
@click.argument("campaign_id", type=int)
@click.option("--province", help="Only this province's seats.")
@click.option("--blocked", "blocked_only", is_flag=True, help="Only the blocked seats.")
@click.option("--json", "as_json", is_flag=True)
@pass_runtime
def campaign_status(runtime: Runtime, campaign_id: int, province: str | None,
                    blocked_only: bool, as_json: bool) -> None:
    """Per seat: outgoing certificate, incoming request, can the commune sign again."""
    with runtime.unit_of_work() as session:
        found = campaigns.report(session, runtime.clock, campaign_id, province_code=province)
        seats = found.blocked if blocked_only else found.seats
        if as_json:
            print_json({"campaign": found.campaign.name, "status": found.campaign.status,
                        "max_gap_days": found.max_gap_days,
                        "blocked": len(found.blocked), "seats": [s.as_dict() for s in seats]})
            return
        click.echo(f"{found.campaign.name}: {found.campaign.status}, installation "
                   f"{found.campaign.installation_date}; {len(found.seats)} seat(s), "
                   f"{len(found.blocked)} blocked; largest gap: "
                   f"{found.max_gap_days if found.max_gap_days is not None else '-'} day(s)")
        rows = [(s.commune_code, s.commune_fr, s.role, s.incoming_name_fr,
                 "re-elected" if s.re_elected else (s.request_status or ""),
                 s.outgoing_status or "", "yes" if s.can_sign else
                 f"no, since {s.blocked_since}", "" if s.gap_days is None else s.gap_days)
                for s in seats]
    print_table(["commune", "name", "role", "incoming", "request", "outgoing cert",
                 "can sign", "gap (days)"], rows)


@campaign_group.command("install")
@click.argument("campaign_id", type=int)
@click.option("--dry-run", is_flag=True, help="List what would be revoked; change nothing.")
@click.option("--activate", is_flag=True,
              help="Then activate the incoming holders' hosted tokens personalised "
                   "beforehand (PIN notices queued).")
@pass_runtime
def campaign_install(runtime: Runtime, campaign_id: int, dry_run: bool,
                     activate: bool) -> None:
    """Install the new councils: revoke the outgoing certificates in bulk
    (affiliationChanged), and with --activate activate the hosted tokens. Run it again to
    resume."""
    authority = None if dry_run else current_wiring().authority()
    with runtime.unit_of_work() as session, click.progressbar(length=1,
                                                             label="revoking") as bar:
        seen = [0]

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - seen[0])
            seen[0] = done

        revoke = None
        if authority is not None:
            revoke = mandate_change.lifecycle_revoker(session, runtime.clock, authority,
                                                      progress=progress)
        result = campaigns.install(session, runtime.clock, campaign_id, actor=ACTOR,
                                   revoke=revoke, dry_run=dry_run, activate=activate)
    if dry_run:
        click.echo(f"would revoke {len(result.to_revoke)} certificate(s) (affiliationChanged)"
                   f"; {result.already_revoked} already revoked")
        for serial in result.to_revoke:
            click.echo(serial)
        return
    click.echo(f"revoked {len(result.revoked)} certificate(s) (affiliationChanged); "
               f"{result.already_revoked} already revoked; "
               f"{len(result.activated)} token(s) activated; campaign installed")


@campaign_group.command("notify")
@click.argument("campaign_id", type=int)
@pass_runtime
def campaign_notify(runtime: Runtime, campaign_id: int) -> None:
    """Email each province's contact its list (blocked seats first), once a day."""
    with runtime.unit_of_work() as session:
        queued = campaigns.notify_contacts(session, runtime.clock, campaign_id, actor=ACTOR)
    click.echo(f"{queued} notice(s) queued")


@campaign_group.command("list")
@pass_runtime
def campaign_list(runtime: Runtime) -> None:
    with runtime.unit_of_work() as session:
        rows = [(c.id, c.name, c.installation_date.isoformat(), c.scope_kind,
                 ",".join(json.loads(c.scope_codes)), c.funding, c.status)
                for c in campaigns.list_campaigns(session)]
    print_table(["id", "name", "installation", "scope", "codes", "funding", "status"], rows)


COMMANDS = [campaign_group]
