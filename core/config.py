"""Typed settings, read once from ``TAWQI_*`` environment variables.

Each field below is one variable: ``database_url`` is ``TAWQI_DATABASE_URL``. Unknown
``TAWQI_`` variables are refused at start-up, so a typo never silently falls back to a
default. Secrets (SO PIN, provider tokens) may also come from a file named by the variable
with a ``_FILE`` suffix; they are kept out of ``repr`` so they never reach a log.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from core.errors import ConfigurationError

PREFIX = "TAWQI_"
# Variables read by the test-suite or tooling, not by the service.
_IGNORED_PREFIX = "TAWQI_TEST_"


def _default_softhsm_module() -> str:
    for candidate in (
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ):
        if Path(candidate).exists():
            return candidate
    return "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class Settings:
    # Where the service keeps its local state (SQLite file, SoftHSM tokens, demo output).
    var_dir: Path = Path("var")
    # SQLAlchemy URL; empty means a SQLite file under var_dir.
    database_url: str = ""
    # Public base URL written into certificates (AIA, CDP) and links.
    public_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    # Log lines as "text" or "json" (one object per line, with the request id).
    log_format: str = "text"
    # Signs browser sessions; empty means a random key per process (fine for one process).
    secret_key: str = field(default="", repr=False)

    # Token layer
    pkcs11_module: str = field(default_factory=_default_softhsm_module)
    # SO PIN used to initialise and reset tokens. Only from the environment or a file.
    so_pin: str = field(default="", repr=False)
    pin_max_attempts: int = 5
    #: Connections a process signs a large batch through, in parallel, when it reaches the
    #: tokens through the token server (1: its own session only; hsm/library.py).
    signing_lanes: int = 2
    # How processes reach the tokens: "auto" (SoftHSM2 through one token server under
    # var_dir/hsm, started on demand; any other module loaded directly), "off" (load the
    # module in this process: single-process tools and tests), or the socket path (or
    # P11_KIT_SERVER_ADDRESS-style "unix:path=...") of a server started elsewhere.
    pkcs11_server: str = "auto"

    # Certificate authority
    ca_org: str = "Tawqi"
    ca_country: str = "MA"
    ca_key_type: str = "EC-P256"
    # OID arc of our certificate policies; sub-arcs .1 (holders), .2 (OCSP), .3 (TSA). No
    # default: a real CA names its own arc (`tawqi ca init` refuses to run without it).
    policy_oid: str = ""
    root_validity_days: int = 7300
    issuing_validity_days: int = 3650
    holder_validity_days: int = 1095
    ocsp_validity_days: int = 30
    crl_validity_hours: int = 24
    ocsp_response_validity_hours: int = 24
    tsa_validity_days: int = 1825
    # The root signs its CRL only when brought online (`tawqi crl publish --root`).
    root_crl_validity_days: int = 365
    # Token labels: the root's own token (offline in production) and the service token that
    # holds the issuing CA, OCSP responder and TSA keys.
    root_token_label: str = "tawqi-root"
    ca_token_label: str = "tawqi-ca"
    # User PIN of the service token (issuing CA, OCSP, TSA). Only from the environment or a
    # file (TAWQI_SERVICE_PIN_FILE). Without it the service serves pre-signed OCSP answers
    # only: no live OCSP signing, no time-stamps, no issuance.
    service_pin: str = field(default="", repr=False)
    # User PIN of the root token; needed only by `tawqi ca init` and `tawqi crl publish
    # --root`. Empty means the service PIN.
    root_pin: str = field(default="", repr=False)
    # How often an OCSP responder process re-reads changed pre-signed responses (seconds).
    ocsp_sync_seconds: int = 1
    # Audit anchoring: the append-only directory receiving the time-stamped checkpoints of
    # the audit chain (empty: <var_dir>/audit-anchors), and how often `tawqi worker` anchors.
    audit_anchor_dir: str = ""
    audit_anchor_seconds: int = 3600

    # Periodic jobs run by `tawqi worker` (api/jobs.py), each once per period however many
    # workers run: how often a worker looks for due jobs, how long a job's lease lasts (the
    # job of a worker that died runs again after it), how soon a failed job is retried.
    job_tick_seconds: int = 60
    job_lease_seconds: int = 900
    job_retry_seconds: int = 300
    # Each job's period. The CRL and OCSP jobs re-sign what is past half its validity, so
    # their periods must stay below half of the CRL's and the OCSP answers' validity.
    job_crl_republish_seconds: int = 900
    job_ocsp_resign_seconds: int = 900
    # When set, `ocsp-resign` also rewrites the static export (`tawqi ocsp export`) there on
    # every run, so nginx or a CDN serving it never serves an expired or outdated answer.
    ocsp_export_dir: str = ""
    job_expiry_warnings_seconds: int = 3600
    job_handover_reminders_seconds: int = 86400
    job_envelope_purge_seconds: int = 86400
    job_campaign_notices_seconds: int = 86400
    # Housekeeping of the API's tables: idempotency records past TAWQI_IDEMPOTENCY_TTL_HOURS,
    # rate-limit counters older than TAWQI_RATE_COUNTER_RETENTION_HOURS (at least a day and
    # the longest rate window, so no live count is forgotten).
    job_idempotency_purge_seconds: int = 3600
    job_rate_counter_purge_seconds: int = 3600
    rate_counter_retention_hours: int = 48
    # Expiry warnings to the holder and the contact: days before notAfter, comma-separated.
    expiry_warning_days: str = "60,30,7"
    # A PIN or code envelope whose every message is dead is erased after this many days.
    envelope_retention_days: int = 30

    # Delivery
    sms_backend: str = "console"
    email_backend: str = "console"
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_from: str = ""
    # Override of Twilio's API base URL (tests point the real SDK at a local endpoint).
    twilio_base_url: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = "tawqi@localhost"
    # STARTTLS on by default; a PIN or code never goes over a plain connection unless
    # smtp_allow_plaintext says the relay is local. smtp_ca_file: extra trust for the relay.
    smtp_starttls: bool = True
    smtp_allow_plaintext: bool = False
    smtp_ca_file: str = ""
    # When a device token's PIN is sent: at "handover" (default) or at "dispatch".
    pin_send_at: str = "handover"
    handover_overdue_days: int = 7
    outbox_max_attempts: int = 8
    # Outbox retries: exponential backoff from this many seconds, capped; a worker's claim on
    # a message lapses after the lease (a crashed worker's messages are retried).
    outbox_backoff_seconds: int = 30
    outbox_backoff_max_seconds: int = 3600
    outbox_lease_seconds: int = 300
    # PIN and code notices are never parked after outbox_max_attempts: they keep retrying
    # (backoff capped at outbox_backoff_max_seconds) for this many days after being queued.
    outbox_secret_retry_days: int = 7
    # The operator page and metrics alert when a pending message is older than this.
    outbox_alert_age_minutes: int = 30
    # A holder's new mobile or email waits for the code sent to it this long.
    contact_confirm_ttl_hours: int = 72
    # Timeout of one call to the SMS or email provider.
    delivery_timeout_seconds: int = 20
    # The service token whose non-extractable AES key seals PINs and one-time codes while they
    # wait to be sent (label, user PIN, key label). The PIN only from the environment or a file.
    envelope_token: str = "tawqi-delivery"
    envelope_token_pin: str = field(default="", repr=False)
    envelope_key: str = "secret-envelope-v1"
    # PIN reset: one-time code lifetime and attempts, and resets a holder may ask per day.
    otp_ttl_minutes: int = 10
    otp_max_attempts: int = 5
    pin_reset_max_per_day: int = 3
    # Version of the terms of use a holder accepts before the first signature.
    terms_version: str = "2026-01"

    # Remote signing (CSC-style API) and verification
    # Lifetime of a signature activation datum (SAD) and of a signing one-time code.
    sad_ttl_seconds: int = 300
    signing_otp_ttl_minutes: int = 5
    # Lifetime of an OAuth 2.0 authorisation code (/oauth2/authorize -> /oauth2/token).
    oauth_code_ttl_seconds: int = 60
    # Most hashes one signatures/signHash call (and one SAD) may carry.
    sign_hash_max_batch: int = 1000
    # PAdES level of the document endpoint when a request names none (B-B, B-T, B-LT,
    # B-LTA).
    pades_default_level: str = "B-LT"
    # Directory holding Amiri-Regular.ttf and Amiri-Bold.ttf (Debian: fonts-hosny-amiri).
    stamp_font_dir: Path = Path("/usr/share/fonts/opentype/fonts-hosny-amiri")
    # Verification: a PEM file of further trust anchors (besides our root), and whether to
    # fetch CRLs and OCSP answers of foreign certificates over the network.
    # Roots only: an intermediate given there becomes an anchor itself.
    verify_trust_anchors: str = ""
    verify_fetch_revocation: bool = False
    # Bounds on that fetching: seconds per request, KiB per response, requests per file.
    verify_fetch_timeout_seconds: int = 10
    verify_fetch_max_kb: int = 10240
    verify_fetch_max_requests: int = 50
    # Comma-separated host names, addresses and networks (CIDR) that fetching may reach
    # although they are not public; anything else loopback, private, link-local, multicast
    # or reserved is refused.
    verify_fetch_allow_hosts: str = ""
    # A directory of CRLs and OCSP responses (DER or PEM) the operator supplies, read at
    # each verification.
    verify_revocation_dir: str = ""

    # HTTP
    max_upload_mb: int = 20
    # Largest JSON request body, in KiB (uploads use max_upload_mb).
    max_json_kb: int = 256
    # Lifetime of a bearer token issued by POST /auth/login.
    session_ttl_minutes: int = 480
    # Comma-separated origins allowed by CORS; empty (the default) turns CORS off.
    cors_origins: str = ""
    # Bearer token that GET /metrics requires (from a file: TAWQI_METRICS_TOKEN_FILE); empty
    # leaves /metrics open (keep it off the public side: nginx denies it there).
    metrics_token: str = field(default="", repr=False)
    # Reverse proxies in front of the service whose X-Forwarded-* headers are trusted.
    trusted_proxies: int = 0
    # Rate limits, "<count>/<seconds>": failed logins per client address (and password
    # changes per user); PIN and one-time-code operations per credential or holder and per
    # person; every rate-limited call of one machine client (API key) together.
    rate_limit_auth: str = "10/300"
    rate_limit_pin: str = "5/300"
    rate_limit_otp: str = "5/300"
    rate_limit_client: str = "600/60"
    # The public verification page (/web/verify): PDFs checked per client address.
    rate_limit_verify: str = "20/300"
    # Failed logins of one user name before it backs off (1, 2, 4... seconds after each
    # further failure, at most login_backoff_max_seconds), for the addresses that failed.
    login_free_failures: int = 5
    login_backoff_max_seconds: int = 900
    # Roles whose web sign-in needs a TOTP second factor (comma-separated); such a user
    # without one is sent to the enrolment page until they have one. Empty: nobody.
    totp_required_roles: str = "operator,dgcl_admin"
    # How long an Idempotency-Key is remembered.
    idempotency_ttl_hours: int = 24
    # argon2id cost of user passwords (defaults: RFC 9106's second recommended option).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'tawqi.db').resolve()}"

    @property
    def effective_audit_anchor_dir(self) -> Path:
        return Path(self.audit_anchor_dir) if self.audit_anchor_dir else \
            self.var_dir / "audit-anchors"

    @property
    def expiry_warning_thresholds(self) -> tuple[int, ...]:
        """TAWQI_EXPIRY_WARNING_DAYS as numbers, largest first."""
        try:
            days = {int(part) for part in self.expiry_warning_days.split(",") if part.strip()}
        except ValueError as exc:
            raise ConfigurationError("TAWQI_EXPIRY_WARNING_DAYS must be comma-separated "
                                     "numbers of days, e.g. 60,30,7") from exc
        if not days or min(days) < 1:
            raise ConfigurationError("TAWQI_EXPIRY_WARNING_DAYS needs days of at least 1")
        return tuple(sorted(days, reverse=True))

    def validate(self) -> None:
        if self.audit_anchor_seconds < 1:
            raise ConfigurationError("TAWQI_AUDIT_ANCHOR_SECONDS must be at least 1")
        periods = {name: getattr(self, name) for name in (
            "job_tick_seconds", "job_lease_seconds", "job_retry_seconds",
            "job_crl_republish_seconds", "job_ocsp_resign_seconds",
            "job_expiry_warnings_seconds", "job_handover_reminders_seconds",
            "job_envelope_purge_seconds", "job_campaign_notices_seconds",
            "job_idempotency_purge_seconds", "job_rate_counter_purge_seconds",
            "rate_counter_retention_hours", "envelope_retention_days")}
        for name, value in periods.items():
            if value < 1:
                raise ConfigurationError(f"TAWQI_{name.upper()} must be at least 1")
        if self.job_crl_republish_seconds * 2 >= self.crl_validity_hours * 3600:
            raise ConfigurationError("TAWQI_JOB_CRL_REPUBLISH_SECONDS must be below half of "
                                     "TAWQI_CRL_VALIDITY_HOURS, or a CRL could expire")
        if self.job_ocsp_resign_seconds * 2 >= self.ocsp_response_validity_hours * 3600:
            raise ConfigurationError("TAWQI_JOB_OCSP_RESIGN_SECONDS must be below half of "
                                     "TAWQI_OCSP_RESPONSE_VALIDITY_HOURS, or answers could "
                                     "expire")
        self.expiry_warning_thresholds  # noqa: B018 (raises when malformed)
        if self.log_format not in {"text", "json"}:
            raise ConfigurationError("TAWQI_LOG_FORMAT must be text or json")
        if self.sms_backend not in {"console", "twilio"}:
            raise ConfigurationError("TAWQI_SMS_BACKEND must be console or twilio")
        if self.email_backend not in {"console", "smtp"}:
            raise ConfigurationError("TAWQI_EMAIL_BACKEND must be console or smtp")
        if self.pin_send_at not in {"handover", "dispatch"}:
            raise ConfigurationError("TAWQI_PIN_SEND_AT must be handover or dispatch")
        if self.pades_default_level not in {"B-B", "B-T", "B-LT", "B-LTA"}:
            raise ConfigurationError("TAWQI_PADES_DEFAULT_LEVEL must be B-B, B-T, B-LT or "
                                     "B-LTA")
        if not 1 <= self.oauth_code_ttl_seconds <= 600:
            raise ConfigurationError("TAWQI_OAUTH_CODE_TTL_SECONDS must be 1 to 600")
        if self.sad_ttl_seconds < 1 or self.sign_hash_max_batch < 1:
            raise ConfigurationError("TAWQI_SAD_TTL_SECONDS and TAWQI_SIGN_HASH_MAX_BATCH "
                                     "must be at least 1")
        if not self.pkcs11_server:
            raise ConfigurationError("TAWQI_PKCS11_SERVER must be auto, off or a socket path")
        if self.pin_max_attempts < 1:
            raise ConfigurationError("TAWQI_PIN_MAX_ATTEMPTS must be at least 1")
        if not 1 <= self.signing_lanes <= 8:
            raise ConfigurationError("TAWQI_SIGNING_LANES must be 1 to 8")
        if self.ca_country != self.ca_country.upper() or len(self.ca_country) != 2:
            raise ConfigurationError("TAWQI_CA_COUNTRY must be a two-letter country code")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build and validate settings from ``environ`` (default: ``os.environ``)."""
        env = dict(os.environ if environ is None else environ)
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(PREFIX) or key.startswith(_IGNORED_PREFIX):
                continue
            name = key[len(PREFIX):].lower()
            if name.endswith("_file") and name[: -len("_file")] in known:
                name = name[: -len("_file")]
                try:
                    raw = Path(raw).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigurationError(f"{key}: cannot read the secret file") from exc
            if name not in known:
                raise ConfigurationError(f"unknown setting {key}")
            values[name] = _convert(key, raw, hints[name])
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(key: str, raw: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is Path:
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ConfigurationError(f"{key}: {raw!r} is not a valid {kind.__name__}") from exc
