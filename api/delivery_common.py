"""What the modules of the delivery blueprint (:mod:`api.blueprints.delivery`) share: the
patterns of their schemas and the contact a caller acts as.

Not a blueprint: the app factory builds the blueprint and adds each module's operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from api.routing import Call
from delivery import (
    contacts,
    preparation,
)
from delivery.validation import (
    CIN_SCHEMA_PATTERN,
)

PROVINCE = r"^[0-9]{2}\.[0-9]{3}$"
COMMUNE = r"^[0-9]{2}\.[0-9]{3}\.[0-9]{2}\.[0-9]{2}$"
CIN = CIN_SCHEMA_PATTERN
PIN = r"^[0-9]{4,16}$"
HolderRole = Literal["president", "vice_president", "secretary_general", "official"]
Civility = Literal["mr", "mrs"]
RequestStatus = Literal["submitted", "approved", "personalised", "shipped", "delivered",
                        "handed_over", "active", "rejected", "cancelled", "superseded",
                        "replaced", "ended"]
TokenForm = Literal["device", "hosted"]
RequestKind = Literal["new", "renewal", "replacement"]
BatchStatus = Literal["preparing", "dispatched", "received"]
OutboxStatus = Literal["pending", "sending", "sent", "dead"]


def acting_contact_id(call: Call, province_code: str) -> int | None:
    """The designated contact the caller acts as (a contact), or None (anyone else); the
    rule is delivery's (:func:`delivery.contacts.acting_contact_id`), shared with the web."""
    return contacts.acting_contact_id(call.session, province_code,
                                      as_contact=call.user.role == "contact")


@dataclass(frozen=True)
class PreparationProgress:
    """A campaign's tokens: prepared (personalised or further) and still to prepare (its
    requests submitted or approved), from :mod:`delivery.preparation`'s own queries; shared
    by the API's answer and the web page's progress display."""

    prepared: int
    to_prepare: int

    @property
    def total(self) -> int:
        return self.prepared + self.to_prepare


def preparation_progress(session: Session, campaign_id: int) -> PreparationProgress:
    return PreparationProgress(len(preparation.personalised_serials(session, campaign_id)),
                               len(preparation.pending(session, campaign_id)))
