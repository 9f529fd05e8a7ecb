"""The domains' collaborators, built once per application from the settings.

Views ask for them here (``services(app)``) instead of building them: the delivery policy,
the sealer of PIN and code envelopes, the personaliser of tokens, the CA authority. Tests
replace any of them with :func:`install`. Everything touching the token layer is built
lazily, on first use, so an app starts (and serves quotas or the docs) without a PKCS#11
module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, after_this_request, current_app

from api.runtime import Runtime
from core.errors import Unavailable
from delivery.policy import DeliveryPolicy

if TYPE_CHECKING:
    from delivery.envelopes import Sealer
    from delivery.personalisation import Personaliser
    from hsm import TokenLibrary
    from pki.authority import Authority

KEY = "tawqi.services"


class ServiceUnavailable(Unavailable):
    """A collaborator needs configuration this server lacks (a PIN, an initialised CA)."""

    type = "service-unavailable"
    title = "Service not configured"


@dataclass
class Services:
    runtime: Runtime
    policy: DeliveryPolicy
    _sealer: Sealer | None = None
    _personaliser: Personaliser | None = None
    _authority: Callable[[], Authority | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self) -> TokenLibrary:
        return self.runtime.tokens()

    def sealer(self) -> Sealer:
        with self._lock:
            if self._sealer is None:
                from delivery.envelopes import TokenSealer

                settings = self.runtime.settings
                if not settings.envelope_token_pin:
                    raise ServiceUnavailable("TAWQI_ENVELOPE_TOKEN_PIN is not set: PINs and "
                                             "codes cannot be sealed on this server")
                self._sealer = TokenSealer(self.tokens(), settings.envelope_token,
                                           settings.envelope_token_pin, settings.envelope_key)
            return self._sealer

    def authority(self) -> Authority:
        if self._authority is not None:
            found = self._authority()
        else:
            from api.blueprints import pki_public

            found = pki_public.state().authority()
        if found is None:
            raise ServiceUnavailable("the CA keys are not loaded on this server")
        return found

    def personaliser(self) -> Personaliser:
        with self._lock:
            if self._personaliser is not None:
                return self._personaliser
        from delivery.personalisation import TokenPersonaliser

        settings = self.runtime.settings
        if not settings.so_pin:
            raise ServiceUnavailable("TAWQI_SO_PIN is not set: tokens cannot be initialised")
        return TokenPersonaliser(self.tokens(), so_pin=settings.so_pin,
                                 authority=self.authority(), key_type=settings.ca_key_type)


def build(rt: Runtime) -> Services:
    return Services(rt, DeliveryPolicy.from_settings(rt.settings))


def services(app: Flask | None = None) -> Services:
    found: Services = (app or current_app).extensions[KEY]
    return found


def install(app: Flask, **parts: Any) -> Services:
    """Replace collaborators (tests): ``sealer=``, ``personaliser=``, ``authority=`` (a
    callable), ``policy=``."""
    current = services(app)
    for name, value in parts.items():
        attr = name if name == "policy" else f"_{name}"
        if not hasattr(current, attr):
            raise TypeError(f"unknown collaborator {name}")
        setattr(current, attr, value)
    return current


def load_authority() -> None:
    """``prepare=`` hook of operations that sign with the CA: load its keys before the
    request's transaction opens, and anchor the audit log once the operation committed."""
    services().authority()
    after_this_request(_anchor_after_ca_operation)


def _anchor_after_ca_operation(response: Response) -> Response:
    """Runs after the request's unit of work committed (never on a failed operation)."""
    if response.status_code < 400:
        from api.audit_anchor import anchor_quietly

        wiring = services()
        anchor_quietly(wiring.runtime, authority=wiring.authority())
    return response
