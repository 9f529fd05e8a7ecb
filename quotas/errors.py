"""Errors of the quotas package (see core.errors for the model)."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class UnknownEntity(NotFound):
    type = "quota-unknown-entity"
    title = "Unknown commune or province"


class NotAQuotaEntity(InvalidInput):
    """Arrondissements share their city's quota; they have none of their own."""

    type = "quota-not-an-entity"
    title = "Not a quota entity"


class NoPolicy(NotFound):
    type = "quota-no-policy"
    title = "No quota policy applies"


class InvalidPolicy(InvalidInput):
    type = "quota-invalid-policy"
    title = "Invalid quota policy"


class QuotaExhausted(Conflict):
    type = "quota-exhausted"
    title = "Quota exhausted"


class ReservationNotFound(NotFound):
    type = "quota-reservation-not-found"
    title = "Reservation not found"


class ReservationClosed(Conflict):
    type = "quota-reservation-closed"
    title = "Reservation already consumed or released"


class InvalidPartnership(InvalidInput):
    type = "quota-invalid-partnership"
    title = "Invalid partnership"
