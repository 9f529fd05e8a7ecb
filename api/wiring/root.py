"""The composition root: one :class:`Wiring` per process builds every service and adapter.

The Flask app (:func:`api.wiring.init_app`), the web pages, the CLI, the demo and
``bench/`` all take their collaborators from here; nobody else builds a ``TokenSealer``,
loads the CA or assembles remote signing. Everything touching the token layer is built
lazily, on first use and once (an app starts, and serves quotas or the docs, without a
PKCS#11 module), each under a lock of its own (building one part never waits for another
part's build, so a request inside a transaction that needs the sealer is never stuck behind
the CA loading its keys).

Replacing a part (tests, a tool that already holds the keys) has one way:
``Wiring(runtime, overrides={...})`` or, once built, :meth:`Wiring.override` with the same
names (:data:`PARTS`). An overridden part is returned as given and never built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from api.runtime import Runtime
from core.clock import Clock
from core.config import Settings
from core.errors import Unavailable
from delivery.policy import DeliveryPolicy

if TYPE_CHECKING:
    from cryptography import x509

    from core.scheduler import Scheduler
    from delivery.backends import ConsoleInbox
    from delivery.envelopes import Sealer
    from delivery.outbox import OutboxWorker
    from delivery.personalisation import Personaliser
    from hsm import TokenLibrary
    from pki.authority import Authority
    from pki.ocsp import OcspResponder
    from pki.profiles import Profile
    from pki.signing.oauth import OAuthCodes
    from pki.signing.pades import PadesService, RevocationSource
    from pki.signing.service import RemoteSigning
    from pki.signing.verification import Verifier

T = TypeVar("T")

#: The parts :meth:`Wiring.override` may replace.
PARTS = ("policy", "sealer", "authority", "personaliser", "ocsp_responder", "remote", "pades",
         "verifier", "trust_roots", "revocation")


class ServiceUnavailable(Unavailable):
    """A collaborator needs configuration this server lacks (a PIN, an initialised CA)."""

    type = "service-unavailable"
    title = "Service not configured"


def read_authority(runtime: Runtime) -> Authority:
    """The one way the CA is loaded from its token (``TAWQI_SERVICE_PIN`` must be set):
    the PIN is checked on the token first, outside any database transaction (a wrong PIN is
    counted in the database, which SQLite cannot write while a transaction of ours holds its
    lock), then the keys are found in a short transaction of their own.

    :meth:`Wiring.authority` keeps the result for the process; the periodic jobs and the
    audit anchoring call this afresh each run (a job may renew the OCSP responder)."""
    from pki import ca
    from pki.profiles import Profile

    settings = runtime.settings
    pin = settings.service_pin
    runtime.tokens().check_pin(settings.ca_token_label, pin)
    with runtime.unit_of_work() as session:
        return ca.load_authority(session, runtime.tokens(), Profile.from_settings(settings),
                                 pin=pin)


class Wiring:
    """Builds, once each, what the domains need from the settings and the Runtime."""

    def __init__(self, runtime: Runtime, *, overrides: Mapping[str, Any] | None = None
                 ) -> None:
        self.runtime = runtime
        self.clock: Clock = runtime.clock
        self._parts: dict[str, Any] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._authority_loaded = False
        self._overridden: set[str] = set()
        self.override(**(overrides or {}))

    @classmethod
    def from_env(cls) -> Wiring:
        return cls(Runtime.from_env())

    # ----------------------------------------------------------------- the Runtime's parts

    @property
    def settings(self) -> Settings:
        return self.runtime.settings  # read each time: the demo fills in PINs as it goes

    def tokens(self) -> TokenLibrary:
        return self.runtime.tokens()

    def profile(self) -> Profile:
        from pki.profiles import Profile

        return Profile.from_settings(self.settings)

    # ----------------------------------------------------------------- overriding

    def override(self, **parts: Any) -> Wiring:
        """Replace parts by name (:data:`PARTS`); ``authority=None`` means "no CA here"."""
        for name in parts:
            if name not in PARTS:
                raise TypeError(f"unknown collaborator {name}")
        for name, value in parts.items():
            with self._lock(name):
                self._parts[name] = value
                self._overridden.add(name)
                if name == "authority":
                    self._authority_loaded = True
        return self

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _once(self, name: str, build: Callable[[], T]) -> T:
        found = self._parts.get(name)
        if found is not None:
            return cast(T, found)
        with self._lock(name):
            if name not in self._parts:
                self._parts[name] = build()
            return cast(T, self._parts[name])

    # ----------------------------------------------------------------- delivery

    @property
    def policy(self) -> DeliveryPolicy:
        return self._once("policy", lambda: DeliveryPolicy.from_settings(self.settings))

    def sealer_or_none(self) -> Sealer | None:
        """The envelope sealer, or None when ``TAWQI_ENVELOPE_TOKEN_PIN`` is not set."""
        with self._lock("sealer"):
            if "sealer" not in self._parts:
                if not self.settings.envelope_token_pin:
                    return None
                from delivery.envelopes import TokenSealer

                settings = self.settings
                self._parts["sealer"] = TokenSealer(
                    self.tokens(), settings.envelope_token, settings.envelope_token_pin,
                    settings.envelope_key)
            return cast("Sealer | None", self._parts["sealer"])

    def sealer(self) -> Sealer:
        found = self.sealer_or_none()
        if found is None:
            raise ServiceUnavailable("TAWQI_ENVELOPE_TOKEN_PIN is not set: PINs and codes "
                                     "cannot be sealed on this server")
        return found

    def personaliser(self) -> Personaliser:
        def build() -> Personaliser:
            from delivery.personalisation import TokenPersonaliser

            if not self.settings.so_pin:
                raise ServiceUnavailable("TAWQI_SO_PIN is not set: tokens cannot be "
                                         "initialised")
            return TokenPersonaliser(self.tokens(), so_pin=self.settings.so_pin,
                                     authority=self.authority(),
                                     key_type=self.settings.ca_key_type)

        return self._once("personaliser", build)

    def worker(self, *, batch_size: int = 20, inbox: ConsoleInbox | None = None
               ) -> OutboxWorker:
        """A new outbox worker as the settings describe it (backends, retries, the sealer;
        without ``TAWQI_ENVELOPE_TOKEN_PIN`` it sends what needs no sealed secret)."""
        from delivery.backends import email_backend, sms_backend
        from delivery.outbox import OutboxWorker
        from delivery.policy import RetryPolicy

        settings = self.settings
        return OutboxWorker(self.runtime.sessions, self.clock,
                            sms=sms_backend(settings, inbox), email=email_backend(settings, inbox),
                            sealer=self.sealer_or_none(),
                            retry=RetryPolicy.from_settings(settings), batch_size=batch_size)

    # ----------------------------------------------------------------- the CA

    def load_authority(self) -> Authority | None:
        """The issuing CA with its OCSP and TSA keys, loaded once; None without
        ``TAWQI_SERVICE_PIN``. The only place the CA is loaded: the PIN is checked on the
        token first, outside any database transaction (a wrong PIN is counted in the
        database, which SQLite cannot write while a transaction of ours holds its lock),
        then the keys are found in a short transaction of their own. A failure is not
        remembered: the next call tries again."""
        if self._authority_loaded and not self._authority_lost():
            return cast("Authority | None", self._parts["authority"])
        with self._lock("authority"):
            if self._authority_loaded and self._authority_lost():
                # What holds the old keys is built again around the new ones.
                for part in ("personaliser", "pades"):
                    if part not in self._overridden:
                        self._parts.pop(part, None)
                self._authority_loaded = False
            if not self._authority_loaded:
                self._parts["authority"] = self._read_authority()
                self._authority_loaded = True
            return cast("Authority | None", self._parts["authority"])

    def _authority_lost(self) -> bool:
        """Whether the loaded keys can no longer sign in this process: their token's login
        was lost (a token server that restarted). They are then loaded again. Only for the
        authority this wiring loaded itself, not one a test put in its place."""
        if "authority" in self._overridden or self._parts.get("authority") is None:
            return False
        return not self.tokens().logged_in(self.settings.ca_token_label)

    def _read_authority(self) -> Authority | None:
        if not self.settings.service_pin:
            return None
        return read_authority(self.runtime)

    def authority(self) -> Authority:
        """:meth:`load_authority`, or :class:`ServiceUnavailable`."""
        found = self.load_authority()
        if found is None:
            raise ServiceUnavailable("the CA keys are not loaded on this server")
        return found

    def ocsp_responder(self) -> OcspResponder:
        def build() -> OcspResponder:
            from pki.ocsp import OcspResponder

            return OcspResponder(self.runtime.sessions, self.clock,
                                 authority=self.load_authority)

        return self._once("ocsp_responder", build)

    # ----------------------------------------------------------------- signing

    def trust_roots(self) -> list[x509.Certificate]:
        """Read afresh for each service built (our roots, then the configured anchors)."""
        from api.wiring.adapters import trust_roots

        found = self._parts.get("trust_roots")
        return list(found) if found is not None else trust_roots(self.runtime)

    def revocation(self) -> RevocationSource:
        from api.wiring.adapters import SessionRevocation

        return self._once("revocation", lambda: SessionRevocation(self.runtime))

    def remote(self) -> RemoteSigning:
        def build() -> RemoteSigning:
            from api.wiring.adapters import DeliveryDirectory, OutboxCodeSender
            from pki.signing.service import RemoteSigning, RemoteSigningPolicy, issuer_chain

            return RemoteSigning(
                self.runtime.sessions, self.clock, self.tokens(),
                directory=DeliveryDirectory(self.settings.terms_version),
                codes=OutboxCodeSender(self.sealer), chain=issuer_chain,
                policy=RemoteSigningPolicy.from_settings(self.settings))

        return self._once("remote", build)

    def oauth(self) -> OAuthCodes:
        """OAuth 2.0 codes with PKCE over :meth:`remote` (the CSC ``credential`` scope)."""
        def build() -> OAuthCodes:
            from datetime import timedelta

            from pki.signing.oauth import OAuthCodes

            return OAuthCodes(self.runtime.sessions, self.clock, self.remote(),
                              code_ttl=timedelta(seconds=self.settings.oauth_code_ttl_seconds))

        return self._once("oauth", build)

    def pades(self) -> PadesService:
        def build() -> PadesService:
            from pki import tsa
            from pki.profiles import ARC_TSA
            from pki.signing.pades import LocalTimeStamper, PadesService
            from pki.signing.stamp import warm_fonts

            settings, clock = self.settings, self.clock
            signer = self.authority().tsa_signer
            policy_oid = self.profile().policy(ARC_TSA)
            stamper = None
            if signer is not None:
                tsa_signer = signer
                stamper = LocalTimeStamper(lambda der: tsa.timestamp(
                    tsa_signer, clock, der, policy_oid=policy_oid).der)
            warm_fonts(settings.stamp_font_dir)
            return PadesService(
                clock, trust_roots=self.trust_roots(), timestamper=stamper,
                revocation=self.revocation(), font_dir=settings.stamp_font_dir,
                max_bytes=settings.max_upload_mb * 1024 * 1024)

        return self._once("pades", build)

    def verifier(self) -> Verifier:
        def build() -> Verifier:
            from pki.signing.revinfo import FetchPolicy
            from pki.signing.verification import Verifier

            settings = self.settings
            policy = FetchPolicy(timeout_seconds=settings.verify_fetch_timeout_seconds,
                                 max_response_bytes=settings.verify_fetch_max_kb * 1024,
                                 max_requests=settings.verify_fetch_max_requests,
                                 allow_hosts=tuple(
                                     h.strip() for h in
                                     settings.verify_fetch_allow_hosts.split(",")
                                     if h.strip()))
            return Verifier(self.clock, trust_roots=self.trust_roots(),
                            revocation=self.revocation(),
                            allow_fetching=settings.verify_fetch_revocation,
                            fetch_policy=policy,
                            revocation_dir=settings.verify_revocation_dir or None,
                            max_bytes=settings.max_upload_mb * 1024 * 1024)

        return self._once("verifier", build)

    # ----------------------------------------------------------------- periodic jobs

    def scheduler(self, *, owner: str | None = None) -> Scheduler:
        """A scheduler over the registry of periodic jobs (:mod:`api.jobs`), for this
        process (``tawqi worker`` ticks one in a thread)."""
        from api.jobs import make_scheduler

        return make_scheduler(self.runtime, owner=owner)

    def close(self) -> None:
        self.runtime.close()


__all__ = ["PARTS", "ServiceUnavailable", "Wiring", "read_authority"]
