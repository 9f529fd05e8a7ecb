"""Which notifications each delivery event writes to the outbox (in the caller's transaction).

Dedupe keys name the event, so a step retried after a failure never queues a second copy.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from core.clock import Clock
from delivery.mandates import current_mandate
from delivery.models import DEVICE, CertificateRequest, Contact, CourierBatch, Holder, Mandate
from delivery.outbox import Notification, enqueue
from quotas.models import Commune, Province

_FORMS = {DEVICE: ("jeton USB", "جهاز توقيع USB"),
          "hosted": ("clé hébergée par le service", "مفتاح مستضاف لدى المزود")}


def _lang(holder: Holder) -> str:
    return holder.preferred_lang if holder.preferred_lang in ("fr", "ar") else "fr"


def notice_email(holder: Holder) -> str:
    """Where a notice without a secret goes: the professional address when the holder
    asked for it (PINs and codes only ever go to the confirmed personal address)."""
    if holder.notices_to_professional and holder.professional_email:
        return holder.professional_email
    return holder.email


def _names(session: Session, holder: Holder) -> dict[str, str]:
    """The holder's names, civility and the role of the mandate in force: the texts address
    them "Madame" / "السيدة ... المحترمة" and name their title (delivery.titles)."""
    mandate = current_mandate(session, holder.id)
    return {"name_fr": f"{holder.given_name_fr} {holder.surname_fr}",
            "name_ar": f"{holder.given_name_ar} {holder.surname_ar}",
            "civility": holder.civility,
            "role": mandate.role if mandate is not None else holder.role}


def _entity(session: Session, holder: Holder) -> dict[str, str]:
    if holder.commune_code:
        commune = session.get_one(Commune, holder.commune_code)
        return {"entity_fr": f"commune {commune.name_fr}",
                "entity_ar": f"جماعة {commune.name_ar}"}
    province = session.get_one(Province, holder.province_code)
    return {"entity_fr": f"services de {province.name_fr}",
            "entity_ar": f"مصالح {province.name_ar}"}


def enqueue_initial_pin(session: Session, clock: Clock, request: CertificateRequest,
                        holder: Holder) -> None:
    """The PIN set at personalisation, to the holder's phone and email (both languages)."""
    if request.pin_envelope_id is None:
        raise ValueError(f"request {request.id} has no PIN envelope")
    form_fr, form_ar = _FORMS[request.token_form]
    mandate = session.get(Mandate, request.mandate_id)
    names = {**_names(session, holder), **({"role": mandate.role} if mandate is not None else {})}
    params = {**names, **_entity(session, holder), "form_fr": form_fr,
              "form_ar": form_ar, "form": request.token_form, "lang": _lang(holder)}
    for channel, recipient in (("sms", holder.mobile), ("email", holder.email)):
        enqueue(session, clock, Notification(
            channel=channel, recipient=recipient, template="pin.initial",
            dedupe_key=f"pin.initial:{request.id}:{channel}", params=params,
            envelope_id=request.pin_envelope_id, holder_id=holder.id, request_id=request.id))


def enqueue_reset_code(session: Session, clock: Clock, *, challenge_id: str, holder: Holder,
                       envelope_id: str, ttl_minutes: int) -> None:
    enqueue(session, clock, Notification(
        channel="sms", recipient=holder.mobile, template="reset.code",
        dedupe_key=f"reset.code:{challenge_id}",
        params={"ttl_minutes": ttl_minutes, "lang": _lang(holder)},
        envelope_id=envelope_id, holder_id=holder.id))


def enqueue_signin_code(session: Session, clock: Clock, *, challenge_id: str,
                        holder: Holder, envelope_id: str, ttl_minutes: int) -> None:
    enqueue(session, clock, Notification(
        channel="sms", recipient=holder.mobile, template="signin.code",
        dedupe_key=f"signin.code:{challenge_id}",
        params={"ttl_minutes": ttl_minutes, "lang": _lang(holder)},
        envelope_id=envelope_id, holder_id=holder.id))


def enqueue_reset_pin(session: Session, clock: Clock, *, challenge_id: str, holder: Holder,
                      request_id: int, envelope_id: str, at: datetime) -> None:
    """The new PIN by SMS only; the email address gets a notice without it."""
    enqueue(session, clock, Notification(
        channel="sms", recipient=holder.mobile, template="pin.reset",
        dedupe_key=f"pin.reset:{challenge_id}", params={"lang": _lang(holder)},
        envelope_id=envelope_id,
        holder_id=holder.id, request_id=request_id))
    enqueue(session, clock, Notification(
        channel="email", recipient=notice_email(holder), template="pin.reset_notice",
        dedupe_key=f"pin.reset_notice:{challenge_id}",
        params={**_names(session, holder), "at": at.strftime("%Y-%m-%d %H:%M"),
                "phone_tail": holder.mobile[-4:]},
        holder_id=holder.id, request_id=request_id))


def enqueue_batch_dispatched(session: Session, clock: Clock, batch: CourierBatch,
                             contact: Contact, count: int) -> None:
    province = session.get_one(Province, batch.province_code)
    enqueue(session, clock, Notification(
        channel="email", recipient=contact.email, template="batch.dispatched",
        dedupe_key=f"batch.dispatched:{batch.id}",
        params={"contact_name": contact.full_name, "count": count,
                "province_fr": province.name_fr, "province_ar": province.name_ar,
                "tracking_number": batch.tracking_number or ""}))


_WHAT = {"sms": ("numéro de mobile", "رقم الهاتف"),
         "email": ("adresse électronique", "البريد الإلكتروني")}


def enqueue_contact_changed(session: Session, clock: Clock, *, holder: Holder, change_id: str,
                            channel: str, new_hint: str, by: str, at: datetime) -> None:
    """Tell the OLD mobile and the OLD email that a contact detail is being changed (no
    secret; the event's time makes each SMS body unique for the provider lookup)."""
    what_fr, what_ar = _WHAT[channel]
    # "*" rather than "•": a text in the GSM alphabet takes half the segments
    params = {**_names(session, holder), "what_fr": what_fr, "what_ar": what_ar,
              "new_hint": new_hint.replace("•", "*"),
              "by": by, "at": at.strftime("%Y-%m-%d %H:%M:%S"), "lang": _lang(holder)}
    for old_channel, recipient in (("sms", holder.mobile), ("email", holder.email)):
        enqueue(session, clock, Notification(
            channel=old_channel, recipient=recipient, template="contact.changed",
            dedupe_key=f"contact.changed:{change_id}:{old_channel}", params=params,
            holder_id=holder.id))


def enqueue_contact_code(session: Session, clock: Clock, *, holder: Holder, change_id: str,
                         channel: str, recipient: str, envelope_id: str,
                         ttl_hours: int) -> None:
    """The confirmation code, to the NEW mobile or address only."""
    enqueue(session, clock, Notification(
        channel=channel, recipient=recipient, template="contact.code",
        dedupe_key=f"contact.code:{change_id}",
        params={**_names(session, holder), "ttl_hours": ttl_hours, "lang": _lang(holder)},
        envelope_id=envelope_id, holder_id=holder.id))


def enqueue_expiry_warning(session: Session, clock: Clock, *, holder: Holder,
                           contact: Contact | None, serial: str, threshold_days: int,
                           not_after: datetime, days_left: int) -> int:
    """The warning that ``serial`` expires, to the holder (SMS and email) and to the
    province's contact (email). Returns how many messages were queued."""
    params = {**_names(session, holder), **_entity(session, holder),
              "not_after": not_after.strftime("%Y-%m-%d"), "days": days_left,
              "lang": _lang(holder)}
    key = f"expiry:{serial}:{threshold_days}"
    queued = 0
    for channel, recipient in (("sms", holder.mobile), ("email", notice_email(holder))):
        enqueue(session, clock, Notification(
            channel=channel, recipient=recipient, template="expiry.holder",
            dedupe_key=f"{key}:holder:{channel}", params=params, holder_id=holder.id))
        queued += 1
    if contact is not None:
        enqueue(session, clock, Notification(
            channel="email", recipient=contact.email, template="expiry.contact",
            dedupe_key=f"{key}:contact",
            params={"contact_name": contact.full_name, "holder_fr": params["name_fr"],
                    "holder_ar": params["name_ar"], "civility": params["civility"],
                    "role": params["role"], "entity_fr": params["entity_fr"],
                    "entity_ar": params["entity_ar"], "not_after": params["not_after"],
                    "days": days_left}))
        queued += 1
    return queued


def enqueue_handover_reminder(session: Session, clock: Clock, *, contact: Contact,
                              province: Province, lines: list[str], overdue_days: int,
                              day: str) -> None:
    """One email a day to a contact listing the tokens waiting to be handed over."""
    enqueue(session, clock, Notification(
        channel="email", recipient=contact.email, template="handover.reminder",
        dedupe_key=f"handover.reminder:{contact.id}:{day}",
        params={"contact_name": contact.full_name, "count": len(lines),
                "province_fr": province.name_fr, "province_ar": province.name_ar,
                "days": overdue_days, "items": "\n".join(lines)}))
