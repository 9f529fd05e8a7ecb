"""The knobs of delivery, as frozen values built once from Settings and passed to services."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from core.config import Settings
from core.errors import ConfigurationError

PIN_AT_HANDOVER = "handover"
PIN_AT_DISPATCH = "dispatch"


@dataclass(frozen=True)
class DeliveryPolicy:
    #: When a device token's PIN is sent: when the contact hands it over, or at dispatch.
    pin_send_at: str = PIN_AT_HANDOVER
    handover_overdue_days: int = 7
    otp_ttl_minutes: int = 10
    otp_max_attempts: int = 5
    pin_reset_max_per_day: int = 3
    terms_version: str = "2026-01"
    #: How long a holder's new mobile or email waits for its confirmation code.
    contact_confirm_ttl_hours: int = 72
    #: Length of the PINs the service sets (6 to 8 digits, hsm's policy).
    pin_length: int = 6

    def __post_init__(self) -> None:
        if self.pin_send_at not in (PIN_AT_HANDOVER, PIN_AT_DISPATCH):
            raise ConfigurationError("pin_send_at must be handover or dispatch")
        for name in ("handover_overdue_days", "otp_ttl_minutes", "otp_max_attempts",
                     "pin_reset_max_per_day", "contact_confirm_ttl_hours"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        if not 6 <= self.pin_length <= 8:
            raise ConfigurationError("pin_length must be 6 to 8")

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(pin_send_at=settings.pin_send_at,
                   handover_overdue_days=settings.handover_overdue_days,
                   otp_ttl_minutes=settings.otp_ttl_minutes,
                   otp_max_attempts=settings.otp_max_attempts,
                   pin_reset_max_per_day=settings.pin_reset_max_per_day,
                   terms_version=settings.terms_version,
                   contact_confirm_ttl_hours=settings.contact_confirm_ttl_hours)


@dataclass(frozen=True)
class RetryPolicy:
    """Outbox retries: attempt ``n`` failing waits ``base * 2**(n-1)`` seconds (capped, plus
    up to 20 % jitter so that workers do not retry in step) before the next attempt; after
    ``max_attempts`` the message is dead (kept, visible, retryable by an operator). A message
    carrying a PIN or a code is not limited in attempts: it is dead only once
    ``secret_retry_days`` have passed since it was queued (a long outage loses none)."""

    max_attempts: int = 8
    base_seconds: int = 30
    max_seconds: int = 3600
    lease_seconds: int = 300
    secret_retry_days: int = 7

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_seconds < 0 or self.max_seconds < 0 \
                or self.lease_seconds < 1 or self.secret_retry_days < 1:
            raise ConfigurationError("invalid outbox retry policy")

    def delay(self, attempts: int) -> timedelta:
        seconds = min(self.base_seconds * 2 ** min(max(attempts - 1, 0), 40), self.max_seconds)
        return timedelta(seconds=seconds * (1 + random.random() * 0.2))

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    @property
    def secret_retry(self) -> timedelta:
        return timedelta(days=self.secret_retry_days)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.outbox_max_attempts,
                   base_seconds=settings.outbox_backoff_seconds,
                   max_seconds=settings.outbox_backoff_max_seconds,
                   lease_seconds=settings.outbox_lease_seconds,
                   secret_retry_days=settings.outbox_secret_retry_days)
