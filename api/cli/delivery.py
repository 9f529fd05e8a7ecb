"""``tawqi worker``, ``tawqi outbox`` and the delivery commands: contacts, holders, requests,
courier batches.

The commands parse, call a delivery service in one unit of work, and print. ``tawqi worker``
sends the outbox and runs the periodic jobs of ``api/jobs.py`` (several workers may run at
once; each job still runs once per period); ``--once`` drains the outbox and exits (the jobs
due: ``tawqi jobs tick``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from api.cli.common import current_wiring, pass_runtime, print_json, print_table
from api.jobs import start_export_follower, start_scheduler
from api.runtime import Runtime
from core.errors import ConfigurationError, InvalidInput
from delivery import (
    batches,
    contacts,
    holders,
    incidents,
    mandate_change,
    mandates,
    outbox,
    requests,
)
from delivery.envelopes import Sealer, provision_envelope_key
from delivery.models import KIND_RENEWAL, KIND_REPLACEMENT, TOKEN_FORMS
from delivery.personalisation import Personaliser, personalise_request
from delivery.policy import DeliveryPolicy
from delivery.titles import CIVILITIES, title_for

ACTOR = "cli"


def _required_sealer() -> Sealer:
    sealer = current_wiring().sealer_or_none()
    if sealer is None:
        raise ConfigurationError("TAWQI_ENVELOPE_TOKEN_PIN is not set: PINs and codes cannot "
                                 "be sealed or opened")
    return sealer


def _personaliser(runtime: Runtime) -> Personaliser:
    settings = runtime.settings
    if not settings.so_pin or not settings.service_pin:
        raise ConfigurationError("personalisation needs TAWQI_SO_PIN (to initialise tokens) "
                                 "and TAWQI_SERVICE_PIN (the issuing CA's token)")
    return current_wiring().personaliser()


def _policy(runtime: Runtime) -> DeliveryPolicy:
    return current_wiring().policy


def _configure_logging(level: str, fmt: str = "text") -> None:
    from core.logs import configure

    configure(level, fmt)


# ---------------------------------------------------------------------------- worker


@click.command("worker")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--batch-size", type=int, default=20, show_default=True)
@click.option("--idle", type=float, default=2.0, show_default=True,
              help="Seconds to wait when nothing is due.")
@pass_runtime
def worker(runtime: Runtime, once: bool, batch_size: int, idle: float) -> None:
    """Send the notification outbox (SMS, email) and run the periodic jobs."""
    _configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    runner = current_wiring().worker(batch_size=batch_size)
    if runner.sealer is None:
        logging.getLogger("tawqi.delivery.outbox").warning(
            "TAWQI_ENVELOPE_TOKEN_PIN is not set: messages carrying a PIN or code will wait")
    if once:
        report = runner.drain()
        click.echo(f"claimed {report.claimed}, sent {report.sent}, retrying {report.retried}, "
                   f"dead {report.dead}")
        return
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    start_scheduler(runtime, stop)  # CRL, OCSP, notices, purges, anchoring (api/jobs.py)
    start_export_follower(runtime, stop)  # OCSP changes into the export within a second
    click.echo(f"outbox worker {runner.worker_id} started "
               f"(sms: {runner.sms.name}, email: {runner.email.name})")
    report = runner.run_forever(stop, idle_seconds=idle)
    click.echo(f"stopped: sent {report.sent}, dead {report.dead}")


@click.group("outbox")
def outbox_group() -> None:
    """The notification outbox."""


@outbox_group.command("stats")
@pass_runtime
def outbox_stats(runtime: Runtime) -> None:
    """Messages per state and the oldest waiting one."""
    with runtime.unit_of_work() as session:
        found = outbox.stats(session)
        purposes = outbox.stats_by_purpose(session)
        alarm = outbox.alert(session, runtime.clock,
                             threshold_minutes=runtime.settings.outbox_alert_age_minutes)
    print_table(["pending", "sending", "sent", "dead", "oldest pending"],
                [[found.pending, found.sending, found.sent, found.dead,
                  found.oldest_pending_at]])
    print_table(["purpose", "waiting", "dead", "oldest waiting"],
                [[f.purpose, f.pending, f.dead, f.oldest_pending_at] for f in purposes
                 if f.pending or f.dead])
    if alarm.raised:
        click.echo(f"ALERT: oldest waiting {alarm.oldest_pending_minutes:.0f} min, "
                   f"{alarm.dead} dead ({alarm.dead_secret} carrying a PIN or code)")


@outbox_group.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "dead"]))
@click.option("--limit", type=int, default=50, show_default=True)
@pass_runtime
def outbox_list(runtime: Runtime, status: str | None, limit: int) -> None:
    """The latest messages (never their secrets: those are sealed, then destroyed)."""
    with runtime.unit_of_work() as session:
        rows = [(m.id, m.channel, m.template, m.recipient, m.status, m.attempts,
                 m.next_attempt_at, m.last_error[:60])
                for m in outbox.list_messages(session, status=status, limit=limit).items]
    print_table(["id", "channel", "template", "to", "status", "attempts", "next", "error"],
                rows)


@outbox_group.command("retry")
@click.argument("message_id", type=int)
@pass_runtime
def outbox_retry(runtime: Runtime, message_id: int) -> None:
    """Give a dead message a new series of attempts."""
    with runtime.unit_of_work() as session:
        message = outbox.retry_dead(session, runtime.clock, message_id, actor=ACTOR)
        click.echo(f"message {message.id} is {message.status}")


@outbox_group.command("retry-dead")
@click.option("--purpose", help="Only the dead messages of this template, e.g. pin.initial.")
@pass_runtime
def outbox_retry_dead(runtime: Runtime, purpose: str | None) -> None:
    """Give every dead message (of one purpose) a new series of attempts, e.g. after an
    outage longer than the retries."""
    with runtime.unit_of_work() as session:
        try:
            ids = outbox.retry_all_dead(session, runtime.clock, actor=ACTOR, purpose=purpose)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--purpose") from exc
    click.echo(f"{len(ids)} message(s) pending again")


@click.group("delivery")
def delivery_group() -> None:
    """Delivery set-up."""


@delivery_group.command("setup")
@pass_runtime
def delivery_setup(runtime: Runtime) -> None:
    """Create the envelope token (with TAWQI_SO_PIN) and its non-extractable AES key."""
    settings = runtime.settings
    if not settings.envelope_token_pin:
        raise ConfigurationError("set TAWQI_ENVELOPE_TOKEN_PIN first")
    provision_envelope_key(runtime.tokens(), token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)
    click.echo(f"envelope key {settings.envelope_key!r} ready on token "
               f"{settings.envelope_token!r}")


# ---------------------------------------------------------------------------- contacts


@click.group("contact")
def contact_group() -> None:
    """Designated contacts (one per prefecture/province)."""


@contact_group.command("designate")
@click.option("--province", required=True, help="Province code, e.g. 01.051.")
@click.option("--name", "full_name", required=True)
@click.option("--title", required=True)
@click.option("--phone", required=True)
@click.option("--address", "postal_address", required=True)
@click.option("--email", required=True)
@click.option("--decision", "decision_reference", required=True,
              help="Reference of the wali/governor's decision.")
@click.option("--decision-date", required=True, help="YYYY-MM-DD")
@click.option("--designated-by", required=True, help="Who signed the decision.")
@pass_runtime
def contact_designate(runtime: Runtime, province: str, full_name: str, title: str,
                      phone: str, postal_address: str, email: str, decision_reference: str,
                      decision_date: str, designated_by: str) -> None:
    """Designate (or replace) a province's contact."""
    try:
        when = date.fromisoformat(decision_date)
    except ValueError as exc:
        raise InvalidInput("--decision-date must be YYYY-MM-DD") from exc
    designation = contacts.ContactDesignation(
        province_code=province, full_name=full_name, title=title, phone=phone,
        postal_address=postal_address, email=email, decision_reference=decision_reference,
        decision_date=when, designated_by=designated_by)
    with runtime.unit_of_work() as session:
        contact = contacts.designate_contact(session, runtime.clock, designation, actor=ACTOR)
        click.echo(f"contact {contact.id} designated for {contact.province_code}")


@contact_group.command("list")
@click.option("--province")
@click.option("--all", "include_inactive", is_flag=True, help="Include replaced contacts.")
@pass_runtime
def contact_list(runtime: Runtime, province: str | None, include_inactive: bool) -> None:
    with runtime.unit_of_work() as session:
        rows = [(c.id, c.province_code, c.full_name, c.title, c.phone, c.email,
                 "yes" if c.active else "no", c.decision_reference)
                for c in contacts.list_contacts(session, province_code=province,
                                                include_inactive=include_inactive).items]
    print_table(["id", "province", "name", "title", "phone", "email", "active", "decision"],
                rows)


# ---------------------------------------------------------------------------- holders


@click.group("holder")
def holder_group() -> None:
    """Certificate holders."""


@holder_group.command("register")
@click.option("--cin", required=True)
@click.option("--given-name-fr", required=True)
@click.option("--surname-fr", required=True)
@click.option("--given-name-ar", required=True)
@click.option("--surname-ar", required=True)
@click.option("--role", type=click.Choice(list(holders.ROLES)), required=True)
@click.option("--commune", help="Commune code (a commune's holder).")
@click.option("--province", help="Province code (the provincial services' holder).")
@click.option("--mobile", required=True)
@click.option("--email", required=True)
@click.option("--professional-email")
@click.option("--civility", type=click.Choice(list(CIVILITIES)), default="mr",
              show_default=True, help="mr (Monsieur) or mrs (Madame): titles agree with it.")
@click.option("--contact", "contact_id", type=int,
              help="The registering contact (checked against the province).")
@pass_runtime
def holder_register(runtime: Runtime, cin: str, given_name_fr: str, surname_fr: str,
                    given_name_ar: str, surname_ar: str, role: str, commune: str | None,
                    province: str | None, mobile: str, email: str,
                    professional_email: str | None, civility: str,
                    contact_id: int | None) -> None:
    registration = holders.HolderRegistration(
        cin=cin, given_name_fr=given_name_fr, surname_fr=surname_fr,
        given_name_ar=given_name_ar, surname_ar=surname_ar, role=role, mobile=mobile,
        email=email, commune_code=commune, province_code=province,
        professional_email=professional_email, civility=civility)
    with runtime.unit_of_work() as session:
        holder = holders.register_holder(session, runtime.clock, registration, actor=ACTOR,
                                         contact_id=contact_id)
        click.echo(f"holder {holder.id} ({holder.cin}) registered for {holder.entity}")


@holder_group.command("set-civility")
@click.argument("holder_id", type=int)
@click.argument("civility", type=click.Choice(list(CIVILITIES)))
@pass_runtime
def holder_set_civility(runtime: Runtime, holder_id: int, civility: str) -> None:
    """Correct a holder's civility (mr|mrs); titles agree with it from now on."""
    with runtime.unit_of_work() as session:
        holder = holders.set_civility(session, runtime.clock, holder_id, civility, actor=ACTOR)
        click.echo(f"holder {holder.id} ({holder.cin}): {holder.civility}")


@holder_group.command("mandates")
@click.argument("holder_id", type=int)
@pass_runtime
def holder_mandates(runtime: Runtime, holder_id: int) -> None:
    """A holder's mandates, oldest first (the one in force has no end)."""
    with runtime.unit_of_work() as session:
        holder = holders.get_holder(session, holder_id)
        rows = [(m.id, m.role, title_for(m.role, holder.civility, "fr"), m.entity,
                 m.started_on.isoformat(), m.ended_on.isoformat() if m.ended_on else "",
                 m.end_reason) for m in mandates.history(session, holder_id)]
    print_table(["id", "role", "title", "entity", "from", "to", "why ended"], rows)


@holder_group.command("change-mandate")
@click.argument("holder_id", type=int)
@click.option("--role", type=click.Choice(list(holders.ROLES)), required=True)
@click.option("--commune", help="Commune code (a commune's mandate).")
@click.option("--province", help="Province code (the provincial services).")
@click.option("--from", "started_on", type=click.DateTime(formats=["%Y-%m-%d"]),
              required=True, help="The day the new mandate starts (the old one ends).")
@click.option("--reason", required=True, help="Why, e.g. 'elected president'.")
@click.option("--professional-email")
@click.option("--token-form", type=click.Choice(list(TOKEN_FORMS)),
              help="Submit a request for the new mandate (through its province's contact).")
@pass_runtime
def holder_change_mandate(runtime: Runtime, holder_id: int, role: str, commune: str | None,
                          province: str | None, started_on: datetime, reason: str,
                          professional_email: str | None, token_form: str | None) -> None:
    """End the mandate in force, open the new one, revoke the old mandate's certificates
    (affiliationChanged) and, with --token-form, request a certificate for the new one."""
    authority = current_wiring().authority()
    change = mandate_change.MandateChange(
        role=role, started_on=started_on.date(), commune_code=commune, province_code=province,
        professional_email=professional_email, reason=reason)
    with runtime.unit_of_work() as session:
        result = mandate_change.change_mandate(
            session, runtime.clock, holder_id, change, actor=ACTOR,
            revoke=mandate_change.lifecycle_revoker(session, runtime.clock, authority),
            token_form=token_form)
        click.echo(f"mandate {result.ended.id} ({result.ended.role}, {result.ended.entity}) "
                   f"ended; mandate {result.opened.id} ({result.opened.role}, "
                   f"{result.opened.entity}) from {result.opened.started_on}")
        for serial in result.revoked:
            click.echo(f"revoked {serial} (affiliationChanged)")
        for request_id in result.cancelled_requests:
            click.echo(f"cancelled request {request_id}")
        if result.request is not None:
            click.echo(f"request {result.request.id} submitted for the new mandate")


@holder_group.command("list")
@click.option("--province")
@click.option("--commune")
@pass_runtime
def holder_list(runtime: Runtime, province: str | None, commune: str | None) -> None:
    with runtime.unit_of_work() as session:
        rows = [(h.id, h.cin, f"{h.given_name_fr} {h.surname_fr}", h.role, h.entity, h.mobile,
                 h.email) for h in holders.list_holders(session, province_code=province,
                                                         commune_code=commune).items]
    print_table(["id", "cin", "name", "role", "entity", "mobile", "email"], rows)


# ---------------------------------------------------------------------------- requests


@click.group("request")
def request_group() -> None:
    """Certificate requests: submit, approve, personalise, activate."""


def _show(request: Any) -> None:
    click.echo(f"request {request.id}: {request.status} ({request.token_form}, "
               f"{request.entity}, {request.year})")


@request_group.command("submit")
@click.option("--contact", "contact_id", type=int, required=True)
@click.option("--holder", "holder_id", type=int, required=True)
@click.option("--form", "token_form", type=click.Choice(["device", "hosted"]),
              default="device", show_default=True)
@click.option("--year", type=int)
@pass_runtime
def request_submit(runtime: Runtime, contact_id: int, holder_id: int, token_form: str,
                   year: int | None) -> None:
    """Ask for a certificate (reserves one of the entity's quota)."""
    with runtime.unit_of_work() as session:
        _show(requests.submit_request(session, runtime.clock, contact_id=contact_id,
                                      holder_id=holder_id, token_form=token_form,
                                      actor=ACTOR, year=year))


def _decide(runtime: Runtime, decide: Callable[[Session], Any]) -> None:
    """approve, reject, cancel: one decision on a request in one unit of work, then the
    request as it now stands."""
    with runtime.unit_of_work() as session:
        _show(decide(session))


@request_group.command("approve")
@click.argument("request_id", type=int)
@click.option("--identity-check", required=True, help="How the identity was checked.")
@pass_runtime
def request_approve(runtime: Runtime, request_id: int, identity_check: str) -> None:
    _decide(runtime, lambda session: requests.approve_request(
        session, runtime.clock, request_id, actor=ACTOR, identity_check=identity_check))


@request_group.command("reject")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@pass_runtime
def request_reject(runtime: Runtime, request_id: int, reason: str) -> None:
    _decide(runtime, lambda session: requests.reject_request(
        session, runtime.clock, request_id, actor=ACTOR, reason=reason))


@request_group.command("cancel")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@pass_runtime
def request_cancel(runtime: Runtime, request_id: int, reason: str) -> None:
    _decide(runtime, lambda session: requests.cancel_request(
        session, runtime.clock, request_id, actor=ACTOR, reason=reason))


@request_group.command("personalise")
@click.argument("request_id", type=int)
@pass_runtime
def request_personalise(runtime: Runtime, request_id: int) -> None:
    """Initialise the token, generate the key on it, issue the certificate, seal the PIN."""
    personaliser = _personaliser(runtime)
    sealer = _required_sealer()
    with runtime.unit_of_work() as session:
        _show(personalise_request(session, runtime.clock, request_id,
                                  personaliser=personaliser, sealer=sealer, actor=ACTOR,
                                  policy=_policy(runtime)))


@request_group.command("activate")
@click.argument("request_id", type=int)
@pass_runtime
def request_activate(runtime: Runtime, request_id: int) -> None:
    """Activate (consumes the quota; a hosted token's PIN is sent now). A renewal or a
    replacement also revokes the old certificate (superseded): that needs the CA."""
    with runtime.unit_of_work() as session:
        kind = requests.get_request(session, request_id).kind
    personaliser = _personaliser(runtime) if kind in (KIND_RENEWAL, KIND_REPLACEMENT) \
        else None
    with runtime.unit_of_work() as session:
        def supersede(serial: str) -> None:
            assert personaliser is not None
            personaliser.supersede(session, runtime.clock, serial=serial, actor=ACTOR)
        _show(requests.activate_request(session, runtime.clock, request_id, actor=ACTOR,
                                        supersede=supersede if personaliser else None))


@request_group.command("renew")
@click.argument("request_id", type=int)
@pass_runtime
def request_renew(runtime: Runtime, request_id: int) -> None:
    """Ask for the renewal of an active credential (reserves one of the quota; then
    approve, personalise in place, activate)."""
    _decide(runtime, lambda session: requests.submit_renewal(session, runtime.clock,
                                                             request_id, actor=ACTOR))


@request_group.command("incident")
@click.argument("request_id", type=int)
@click.option("--kind", "incident", type=click.Choice(list(incidents.INCIDENTS)),
              required=True)
@click.option("--note", required=True, help="What happened (kept in the audit log).")
@pass_runtime
def request_incident(runtime: Runtime, request_id: int, incident: str, note: str) -> None:
    """The token of a credential (active, or personalised and not active yet) is lost,
    stolen or damaged: suspend the certificate (revoke keyCompromise if stolen) and submit
    a replacement request."""
    personaliser = _personaliser(runtime)
    _decide(runtime, lambda session: incidents.report_token_incident(
        session, runtime.clock, request_id, incident=incident, note=note, actor=ACTOR,
        personaliser=personaliser))


@request_group.command("cancel-personalised")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@pass_runtime
def request_cancel_personalised(runtime: Runtime, request_id: int, reason: str) -> None:
    """Cancel after personalisation: revoke the certificate, destroy the token's objects
    and the sealed PIN, release the quota reservation."""
    personaliser = _personaliser(runtime)
    _decide(runtime, lambda session: incidents.cancel_after_personalisation(
        session, runtime.clock, request_id, reason=reason, actor=ACTOR,
        personaliser=personaliser))


@request_group.command("show")
@click.argument("request_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_runtime
def request_show(runtime: Runtime, request_id: int, fmt: str) -> None:
    """A request and its timeline (who did what, when; lead times)."""
    with runtime.unit_of_work() as session:
        request = requests.get_request(session, request_id)
        timeline = requests.timeline(session, request_id)
        steps = [{"status": s.status, "at": s.at, "actor": s.actor, "note": s.note}
                 for s in timeline.steps]
        lead_times = {k: str(v) for k, v in timeline.durations.items()}
        data: dict[str, Any] = {
                "id": request.id, "status": request.status, "token_form": request.token_form,
                "entity": request.entity, "year": request.year,
                "token_label": request.token_label,
                "certificate_serial": request.certificate_serial,
                "batch_id": request.batch_id, "pin_sent_at": request.pin_sent_at,
                "allowed_steps": requests.allowed_steps(request),
                "steps": steps, "lead_times": lead_times}
    if fmt == "json":
        print_json(data)
        return
    _show(request)
    print_table(["step", "at", "by", "note"],
                [(s["status"], s["at"], s["actor"], s["note"]) for s in steps])
    for name, value in lead_times.items():
        click.echo(f"  {name}: {value}")


@request_group.command("list")
@click.option("--province")
@click.option("--status")
@pass_runtime
def request_list(runtime: Runtime, province: str | None, status: str | None) -> None:
    with runtime.unit_of_work() as session:
        rows = [(r.id, r.holder_id, r.entity, r.token_form, r.status, r.batch_id,
                 r.submitted_at) for r in requests.list_requests(
                     session, province_code=province, status=status).items]
    print_table(["id", "holder", "entity", "form", "status", "batch", "submitted"], rows)


# ---------------------------------------------------------------------------- batches


@click.group("batch")
def batch_group() -> None:
    """Amana courier batches and hand-overs."""


@batch_group.command("prepare")
@click.option("--province", required=True)
@pass_runtime
def batch_prepare(runtime: Runtime, province: str) -> None:
    with runtime.unit_of_work() as session:
        batch = batches.prepare_batch(session, runtime.clock, province, actor=ACTOR)
        count = len(batches.batch_requests(session, batch.id))
        click.echo(f"batch {batch.id} for {province}: {count} token(s), {batch.status}")


@batch_group.command("dispatch")
@click.argument("batch_id", type=int)
@click.option("--tracking", required=True, help="Amana tracking number (UPU S10).")
@pass_runtime
def batch_dispatch(runtime: Runtime, batch_id: int, tracking: str) -> None:
    with runtime.unit_of_work() as session:
        batch = batches.dispatch_batch(session, runtime.clock, batch_id,
                                       tracking_number=tracking, actor=ACTOR,
                                       policy=_policy(runtime))
        click.echo(f"batch {batch.id} dispatched, tracking {batch.tracking_number}")


@batch_group.command("receive")
@click.argument("batch_id", type=int)
@pass_runtime
def batch_receive(runtime: Runtime, batch_id: int) -> None:
    with runtime.unit_of_work() as session:
        batch = batches.receive_batch(session, runtime.clock, batch_id, actor=ACTOR)
        click.echo(f"batch {batch.id} received")


@batch_group.command("handover")
@click.argument("request_id", type=int)
@click.option("--to", "handed_to", required=True, help="Who received the token.")
@click.option("--ack", "acknowledgement", required=True,
              help="The holder's acknowledgement (e.g. signed receipt reference).")
@pass_runtime
def batch_handover(runtime: Runtime, request_id: int, handed_to: str,
                   acknowledgement: str) -> None:
    with runtime.unit_of_work() as session:
        _show(batches.record_handover(session, runtime.clock, request_id,
                                      handed_to=handed_to, acknowledgement=acknowledgement,
                                      actor=ACTOR, policy=_policy(runtime)))


@batch_group.command("list")
@click.option("--province")
@pass_runtime
def batch_list(runtime: Runtime, province: str | None) -> None:
    with runtime.unit_of_work() as session:
        found = batches.list_batches(session, province_code=province).items
        tokens = batches.request_ids_by_batch(session, [b.id for b in found])
        rows = [(b.id, b.province_code, b.status, b.tracking_number, b.prepared_at,
                 b.dispatched_at, b.received_at, len(tokens[b.id])) for b in found]
    print_table(["id", "province", "status", "tracking", "prepared", "dispatched",
                 "received", "tokens"], rows)


@batch_group.command("overdue")
@click.option("--province")
@pass_runtime
def batch_overdue(runtime: Runtime, province: str | None) -> None:
    """Tokens received by a contact and not handed over within TAWQI_HANDOVER_OVERDUE_DAYS."""
    with runtime.unit_of_work() as session:
        found = batches.overdue_handovers(
            session, runtime.clock, overdue_days=runtime.settings.handover_overdue_days,
            province_code=province).items
    print_table(["request", "holder", "cin", "province", "batch", "received", "days"],
                [(o.request_id, o.holder_name, o.cin, o.province_code, o.batch_id,
                  o.received_at, o.days_waiting) for o in found])


COMMANDS = [worker, outbox_group, delivery_group, contact_group, holder_group, request_group,
            batch_group]
