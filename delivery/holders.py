"""Holders: the people who sign (commune presidents, vice-presidents, officials).

One holder, one CIN. A holder belongs to a commune, or to a prefecture/province's
decentralised Interior services; that entity's quota pays for their certificates and its
province's contact hands over their token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import record
from core.clock import Clock, as_utc
from core.listing import Page, scalars_page
from delivery import contact_change
from delivery.contacts import require_active_contact
from delivery.envelopes import Sealer
from delivery.errors import HolderExists, HolderNotFound, InvalidHolder, TokenLayerUnavailable
from delivery.mandates import (
    cache_fields,
    latest_mandate,
    open_mandate,
    resolve_entity,
    set_professional_email,
)
from delivery.models import Holder, Mandate
from delivery.policy import DeliveryPolicy
from delivery.titles import CIVILITIES, COMMUNE_ONLY_ROLES, ROLES, parse_civility, title_for
from delivery.validation import (
    normalise_cin,
    normalise_email,
    normalise_phone,
    require_text,
)
from quotas.models import Commune, Province

# The roles (ROLES, COMMUNE_ONLY_ROLES) and their titles live in delivery.titles.
#: The languages a holder's messages may be in.
LANGS = ("fr", "ar")


@dataclass(frozen=True)
class HolderRegistration:
    """A holder's registration, validated and normalised on construction.

    Give ``commune_code`` for a commune's holder, or ``province_code`` alone for the
    provincial services' holder.
    """

    cin: str
    given_name_fr: str
    surname_fr: str
    given_name_ar: str
    surname_ar: str
    role: str
    mobile: str
    email: str
    commune_code: str | None = None
    province_code: str | None = None
    professional_email: str | None = None
    civility: str = "mr"
    #: When the first mandate began (default: the day of registration).
    mandate_started_on: date | None = None
    preferred_lang: str = "fr"

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("cin", normalise_cin(self.cin, InvalidHolder))
        for name in ("given_name_fr", "surname_fr", "given_name_ar", "surname_ar"):
            put(name, require_text(getattr(self, name), field=name, max_length=100,
                                   error=InvalidHolder))
        civility = parse_civility(self.civility)
        if civility is None:
            raise InvalidHolder(f"civility must be one of {', '.join(CIVILITIES)}",
                                field="civility")
        put("civility", civility)
        if self.role not in ROLES:
            raise InvalidHolder(f"role must be one of {', '.join(ROLES)}", field="role")
        put("mobile", normalise_phone(self.mobile, mobile=True, field="mobile",
                                      error=InvalidHolder))
        put("email", normalise_email(self.email, field="email", error=InvalidHolder))
        if self.professional_email:
            put("professional_email", normalise_email(self.professional_email,
                                                      field="professional_email",
                                                      error=InvalidHolder))
        else:
            put("professional_email", None)
        if self.preferred_lang not in LANGS:
            raise InvalidHolder("the language is fr or ar", field="preferred_lang")
        if bool(self.commune_code) == bool(self.province_code):
            raise InvalidHolder("give a commune code, or a province code for the provincial "
                                "services", field="commune_code")
        if self.province_code and self.role in COMMUNE_ONLY_ROLES:
            raise InvalidHolder(f"a {self.role} belongs to a commune", field="role")


@dataclass(frozen=True)
class HolderProfile:
    """What a certificate says about its holder (ETSI EN 319 412-2 natural person)."""

    holder_id: int
    cin: str
    given_name_fr: str
    surname_fr: str
    given_name_ar: str
    surname_ar: str
    title_fr: str
    title_ar: str
    organisation_fr: str
    organisation_ar: str
    entity: str
    province_code: str
    email: str

    @property
    def serial_number(self) -> str:
        """ETSI semantics identifier: national identity card of Morocco."""
        return f"IDCMA-{self.cin}"


def get_holder(session: Session, holder_id: int) -> Holder:
    holder = session.get(Holder, holder_id)
    if holder is None:
        raise HolderNotFound(f"no holder {holder_id}", holder_id=holder_id)
    return holder


def find_by_cin(session: Session, cin: str) -> Holder | None:
    return session.scalar(select(Holder).where(Holder.cin == normalise_cin(cin, InvalidHolder)))


def list_holders(session: Session, *, province_code: str | None = None,
                 commune_code: str | None = None, holder_id: int | None = None,
                 limit: int | None = None, offset: int = 0) -> Page[Holder]:
    """Holders matching every filter given, by province, commune and registration."""
    query = select(Holder).order_by(Holder.province_code, Holder.commune_code, Holder.id)
    if province_code:
        query = query.where(Holder.province_code == province_code)
    if commune_code:
        query = query.where(Holder.commune_code == commune_code)
    if holder_id is not None:
        query = query.where(Holder.id == holder_id)
    return scalars_page(session, query, limit=limit, offset=offset)


def register_holder(session: Session, clock: Clock, registration: HolderRegistration, *,
                    actor: str, contact_id: int | None = None,
                    campaign_id: int | None = None) -> Holder:
    """Register a holder. With ``contact_id``, the contact must be designated for the
    holder's province (a contact registers only the holders of their own province).
    ``campaign_id``: the election campaign whose import opens the first mandate."""
    entity = resolve_entity(session, commune_code=registration.commune_code,
                            province_code=registration.province_code, role=registration.role)
    province_code = entity.province_code
    if contact_id is not None:
        require_active_contact(session, contact_id, province_code)
    if session.scalar(select(Holder.id).where(Holder.cin == registration.cin)) is not None:
        raise HolderExists(f"a holder with CIN {registration.cin} is already registered",
                           cin=registration.cin)
    now = clock.now()
    holder = Holder(
        cin=registration.cin, given_name_fr=registration.given_name_fr,
        surname_fr=registration.surname_fr, given_name_ar=registration.given_name_ar,
        surname_ar=registration.surname_ar, civility=registration.civility,
        mobile=registration.mobile, email=registration.email,
        preferred_lang=registration.preferred_lang, notices_to_professional=False,
        registered_by_contact_id=contact_id, created_at=now, updated_at=now,
        # the mandate opened below is the truth; these columns repeat it
        **cache_fields(registration.role, entity, registration.professional_email))
    try:
        with session.begin_nested():
            session.add(holder)
    except IntegrityError as exc:  # a concurrent registration of the same CIN
        raise HolderExists(f"a holder with CIN {registration.cin} is already registered",
                           cin=registration.cin) from exc
    record(session, clock, actor=actor, action="delivery.holder.registered",
           object_type="holder", object_id=holder.id,
           summary={"cin": holder.cin, "entity": holder.entity, "role": holder.role,
                    "contact_id": contact_id})
    open_mandate(session, clock, holder, role=registration.role, entity=entity,
                 started_on=registration.mandate_started_on or as_utc(now).date(),
                 actor=actor, professional_email=registration.professional_email,
                 campaign_id=campaign_id)
    return holder


def set_preferences(session: Session, clock: Clock, holder_id: int, *, actor: str,
                    lang: str, notices_to_professional: bool) -> Holder:
    """The language of the holder's messages; whether notices without a secret (expiry,
    PIN reset notice) go to the professional address, when there is one."""
    holder = get_holder(session, holder_id)
    if lang not in LANGS:
        raise InvalidHolder("the language is fr or ar", field="preferred_lang")
    if notices_to_professional and not holder.professional_email:
        raise InvalidHolder("no professional address is recorded",
                            field="notices_to_professional")
    holder.preferred_lang = lang
    holder.notices_to_professional = notices_to_professional
    holder.updated_at = clock.now()
    session.flush()
    record(session, clock, actor=actor, action="delivery.holder.preferences",
           object_type="holder", object_id=holder.id,
           summary={"lang": lang, "notices_to_professional": notices_to_professional})
    return holder


def update_contact_details(session: Session, clock: Clock, holder_id: int, *, actor: str,
                           sealer: Sealer | None = None, policy: DeliveryPolicy | None = None,
                           mobile: str | None = None, email: str | None = None,
                           professional_email: str | None = None) -> Holder:
    """Change where a holder's notifications go (audited with the actor; values not in the
    audit). A new ``mobile`` or ``email`` is not applied: it waits for the holder to confirm
    it with a code sent to it, and the old phone and email are told (``contact_change``);
    that needs the ``sealer``. ``professional_email`` (the certificate's address, never a
    second factor) changes at once."""
    holder = get_holder(session, holder_id)
    policy = policy or DeliveryPolicy()
    changed: list[str] = []
    pending: list[str] = []
    wanted = {}
    if mobile is not None:
        wanted["sms"] = normalise_phone(mobile, mobile=True, field="mobile",
                                        error=InvalidHolder)
    if email is not None:
        wanted["email"] = normalise_email(email, field="email", error=InvalidHolder)
    if professional_email is not None:  # it belongs to the mandate in force
        set_professional_email(session, clock, holder, professional_email or None,
                               actor=actor)
        changed.append("professional_email")
    for channel, value in wanted.items():
        if sealer is None:
            raise TokenLayerUnavailable("a new mobile or email needs the envelope token to "
                                        "seal its confirmation code", reason="no-sealer")
        if contact_change.request_change(
                session, clock, sealer, holder, channel=channel, new_value=value, actor=actor,
                ttl_hours=policy.contact_confirm_ttl_hours,
                max_attempts=policy.otp_max_attempts) is not None:
            pending.append(contact_change.FIELDS[channel])
    if changed:
        holder.updated_at = clock.now()
        session.flush()
    if changed or pending:
        record(session, clock, actor=actor, action="delivery.holder.updated",
               object_type="holder", object_id=holder.id,
               summary={"changed": changed, "awaiting_confirmation": pending})
    return holder


def set_civility(session: Session, clock: Clock, holder_id: int, civility: str, *,
                 actor: str) -> Holder:
    """Correct a holder's civility (audited). Certificates already issued keep their title
    until they are renewed; new ones, stamps, notices and pages follow at once."""
    value = parse_civility(civility)
    if value is None:
        raise InvalidHolder(f"civility must be one of {', '.join(CIVILITIES)}",
                            field="civility")
    holder = get_holder(session, holder_id)
    if holder.civility != value:
        previous, holder.civility = holder.civility, value
        holder.updated_at = clock.now()
        session.flush()
        record(session, clock, actor=actor, action="delivery.holder.civility",
               object_type="holder", object_id=holder.id,
               summary={"from": previous, "to": value})
    return holder


def profile(session: Session, holder: Holder, mandate: Mandate | None = None) -> HolderProfile:
    """The holder as their certificate names them: title and organisation from ``mandate``
    (a request's), else from the holder's latest mandate."""
    place: Holder | Mandate = (mandate or latest_mandate(session, holder.id)
                               or holder)
    title_fr = title_for(place.role, holder.civility, "fr")
    title_ar = title_for(place.role, holder.civility, "ar")
    if place.commune_code:
        commune = session.get_one(Commune, place.commune_code)
        org_fr, org_ar = f"Commune {commune.name_fr}", f"جماعة {commune.name_ar}"
    else:
        province = session.get_one(Province, place.province_code)
        org_fr = f"Services déconcentrés du ministère de l'Intérieur — {province.name_fr}"
        org_ar = f"المصالح اللاممركزة لوزارة الداخلية — {province.name_ar}"
    return HolderProfile(holder.id, holder.cin, holder.given_name_fr, holder.surname_fr,
                         holder.given_name_ar, holder.surname_ar, title_fr, title_ar, org_fr,
                         org_ar, place.entity, place.province_code,
                         place.professional_email or holder.email)
