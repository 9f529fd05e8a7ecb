"""Mandates: which role a holder holds, in which entity, from when until when.

A person (one CIN, one :class:`~delivery.models.Holder`) holds mandates over time; a
certificate request belongs to one, and the certificate's title and organisation come from
it. This module keeps the rows; :mod:`delivery.mandate_change` moves a holder from one
mandate to the next (revoking the old mandate's certificates).

The mandates are the one source of truth for a holder's role, entity and professional
address. The holder's ``role``, ``entity_kind``, ``commune_code``, ``province_code`` and
``professional_email`` columns are a denormalised cache of the holder's *latest* mandate
(the one in force, else the last ended), kept so that lists, scopes and reports stay one
join shorter. Only this module writes them (:func:`cache_fields` when the holder row is
created, :func:`open_mandate` and :func:`set_professional_email` after);
:func:`cache_disagreements` finds any holder whose cache differs from its mandates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.audit import record
from core.clock import Clock
from delivery.errors import InvalidHolder, NoMandateInForce
from delivery.models import Holder, Mandate
from delivery.titles import COMMUNE_ONLY_ROLES, ROLES
from delivery.validation import normalise_email
from quotas.models import ENTITY_COMMUNE, ENTITY_SERVICES, Commune, Province


@dataclass(frozen=True)
class Entity:
    """Where a mandate is held: a commune, or a province's Interior services."""

    kind: str
    commune_code: str | None
    province_code: str


def resolve_entity(session: Session, *, commune_code: str | None,
                   province_code: str | None, role: str) -> Entity:
    """Check a role in a commune (``commune_code``) or in a province's services
    (``province_code`` alone) and say which province it belongs to."""
    if role not in ROLES:
        raise InvalidHolder(f"role must be one of {', '.join(ROLES)}", field="role")
    if bool(commune_code) == bool(province_code):
        raise InvalidHolder("give a commune code, or a province code for the provincial "
                            "services", field="commune_code")
    if commune_code:
        commune = session.get(Commune, commune_code)
        if commune is None:
            raise InvalidHolder(f"no commune {commune_code}", field="commune_code")
        if commune.kind == "arrondissement":
            raise InvalidHolder(f"{commune.name_fr} is an arrondissement: register the "
                                "holder with its city's commune", field="commune_code")
        return Entity(ENTITY_COMMUNE, commune_code, commune.province_code)
    if role in COMMUNE_ONLY_ROLES:
        raise InvalidHolder(f"a {role} belongs to a commune", field="role")
    if session.get(Province, str(province_code)) is None:
        raise InvalidHolder(f"no prefecture/province {province_code}", field="province_code")
    return Entity(ENTITY_SERVICES, None, str(province_code))


#: The holder's columns that repeat their latest mandate's.
CACHED = ("role", "entity_kind", "commune_code", "province_code", "professional_email")


def cache_fields(role: str, entity: Entity, professional_email: str | None
                 ) -> dict[str, Any]:
    """The holder's cached columns for a mandate of ``role`` in ``entity`` (for the holder
    row's creation, just before its first mandate opens)."""
    return {"role": role, "entity_kind": entity.kind, "commune_code": entity.commune_code,
            "province_code": entity.province_code, "professional_email": professional_email}


def latest_mandate(session: Session, holder_id: int) -> Mandate | None:
    """The mandate in force, else the last one ended (the one the holder's cache repeats)."""
    return session.scalar(select(Mandate).where(Mandate.holder_id == holder_id)
                          .order_by(Mandate.ended_on.is_(None).desc(),
                                    Mandate.started_on.desc(), Mandate.id.desc()).limit(1))


def cache_disagreements(session: Session, holder_ids: list[int] | None = None
                        ) -> list[tuple[int, str]]:
    """(holder id, column) for every cached column that differs from the holder's latest
    mandate, and (holder id, "mandate") for a holder without any mandate. Empty when the
    cache is right (a test and ``tawqi`` checks rely on it)."""
    later = aliased(Mandate)
    newer = select(later.id).where(
        later.holder_id == Mandate.holder_id, later.id != Mandate.id,
        (later.ended_on.is_(None) & Mandate.ended_on.is_not(None))
        | ((later.ended_on.is_(None) == Mandate.ended_on.is_(None))
           & ((later.started_on > Mandate.started_on)
              | ((later.started_on == Mandate.started_on) & (later.id > Mandate.id)))))
    query = (select(Holder, Mandate).outerjoin(Mandate, (Mandate.holder_id == Holder.id)
                                               & ~newer.exists())
             .order_by(Holder.id))
    if holder_ids is not None:
        query = query.where(Holder.id.in_(holder_ids))
    found: list[tuple[int, str]] = []
    for holder, mandate in session.execute(query).all():
        if mandate is None:
            found.append((holder.id, "mandate"))
            continue
        found.extend((holder.id, name) for name in CACHED
                     if getattr(holder, name) != getattr(mandate, name))
    return found


def current_mandate(session: Session, holder_id: int) -> Mandate | None:
    """The holder's mandate in force, if any."""
    return session.scalar(select(Mandate).where(Mandate.holder_id == holder_id,
                                                Mandate.ended_on.is_(None)))


def require_current_mandate(session: Session, holder: Holder) -> Mandate:
    mandate = current_mandate(session, holder.id)
    if mandate is None:
        raise NoMandateInForce(f"holder {holder.cin} has no mandate in force",
                               holder_id=holder.id)
    return mandate


def history(session: Session, holder_id: int) -> list[Mandate]:
    """Every mandate of the holder, oldest first."""
    return list(session.scalars(select(Mandate).where(Mandate.holder_id == holder_id)
                                .order_by(Mandate.started_on, Mandate.id)))


def get_mandate(session: Session, mandate_id: int) -> Mandate:
    return session.get_one(Mandate, mandate_id)


def open_mandate(session: Session, clock: Clock, holder: Holder, *, role: str,
                 entity: Entity, started_on: date, actor: str,
                 professional_email: str | None = None,
                 campaign_id: int | None = None, follows: Mandate | None = None) -> Mandate:
    """Open a mandate for a holder who has none in force, and make the holder's role and
    entity columns repeat it. ``follows``: the mandate it succeeds (its ``successor_id``
    is set). Audited, in the caller's transaction."""
    email = (normalise_email(professional_email, field="professional_email",
                             error=InvalidHolder) if professional_email else None)
    mandate = Mandate(holder_id=holder.id, role=role, entity_kind=entity.kind,
                      commune_code=entity.commune_code, province_code=entity.province_code,
                      professional_email=email, started_on=started_on, end_reason="",
                      campaign_id=campaign_id, created_at=clock.now(), created_by=actor)
    session.add(mandate)
    session.flush()
    if follows is not None:
        follows.successor_id = mandate.id
    for name, value in cache_fields(role, entity, email).items():
        setattr(holder, name, value)
    holder.updated_at = clock.now()
    session.flush()
    record(session, clock, actor=actor, action="delivery.mandate.opened",
           object_type="holder", object_id=holder.id,
           summary={"mandate_id": mandate.id, "role": role, "entity": mandate.entity,
                    "started_on": started_on.isoformat(), "campaign_id": campaign_id,
                    **({"follows_mandate_id": follows.id} if follows is not None else {})})
    return mandate


def set_professional_email(session: Session, clock: Clock, holder: Holder,
                           email: str | None, *, actor: str) -> Mandate:
    """Record the address the provider created for the holder's mandate in force (None
    removes it); the holder's cache follows. Not audited here: the caller's change is."""
    mandate = require_current_mandate(session, holder)
    value = (normalise_email(email, field="professional_email", error=InvalidHolder)
             if email else None)
    mandate.professional_email = value
    holder.professional_email = value
    if not value:
        holder.notices_to_professional = False
    holder.updated_at = clock.now()
    session.flush()
    return mandate


def close_mandate(session: Session, clock: Clock, mandate: Mandate, *, ended_on: date,
                  reason: str, actor: str, successor: Mandate | None = None) -> Mandate:
    """End a mandate (the certificates are the caller's business). Audited."""
    if mandate.ended_on is not None:
        return mandate
    mandate.ended_on = ended_on
    mandate.end_reason = reason[:200]
    mandate.ended_at = clock.now()
    mandate.ended_by = actor
    mandate.successor_id = successor.id if successor is not None else None
    session.flush()
    record(session, clock, actor=actor, action="delivery.mandate.ended",
           object_type="holder", object_id=mandate.holder_id,
           summary={"mandate_id": mandate.id, "role": mandate.role, "entity": mandate.entity,
                    "ended_on": ended_on.isoformat(), "reason": reason[:200]})
    return mandate
