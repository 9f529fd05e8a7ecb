"""How notifications leave the service: SMS (Twilio, console) and email (SMTP, console).

Each backend is behind a small protocol and chosen by configuration (``TAWQI_SMS_BACKEND``,
``TAWQI_EMAIL_BACKEND``). A backend either returns the provider's reference for the message,
or raises :class:`TransientSendError` (the provider or the network failed before accepting
it, or the service is misconfigured: retry later) or :class:`PermanentSendError` (this
message will never be accepted, e.g. a refused recipient: stop retrying).

Messages arrive here with their secret (PIN or code) in clear, because the holder must read
it; they also carry that secret separately so the console backends can mask it. No backend
logs a message body; the console backends log it with the secret masked.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient
from urllib3.exceptions import NewConnectionError

from core.config import Settings
from core.errors import ConfigurationError

log = logging.getLogger("tawqi.delivery.send")
console_log = logging.getLogger("tawqi.delivery.console")

MASK = "••••••"


def mask(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by a fixed mask."""
    return text.replace(secret, MASK) if secret else text


class TransientSendError(Exception):
    """Not sent; the same message may be sent again later."""


class PermanentSendError(Exception):
    """Not sent, and never will be: retrying cannot help."""


class AmbiguousSendError(TransientSendError):
    """The request may have reached the provider, which may have accepted the message (a
    timeout or a connection lost while waiting for its answer). Before sending again, ask the
    provider (:meth:`SmsBackend.find_sent`) whether it went."""


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    body: str
    reference: str  # ours, stable for the outbox row
    secret: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"OutgoingSms(to={self.to!r}, reference={self.reference!r})"


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str
    reference: str  # ours, stable for the outbox row; becomes the Message-ID
    secret: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"OutgoingEmail(to={self.to!r}, reference={self.reference!r})"


@runtime_checkable
class SmsBackend(Protocol):
    name: str

    def send(self, sms: OutgoingSms) -> str:
        """Hand the SMS to the provider; return its reference. Raises the errors above."""
        ...

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        """The provider's reference of an SMS with exactly this ``body`` that it accepted for
        ``to`` since ``since``, or None (also when the provider cannot tell). Raises
        :class:`TransientSendError` when the provider cannot be asked now."""
        ...


@runtime_checkable
class EmailBackend(Protocol):
    name: str

    def send(self, email: OutgoingEmail) -> str:
        """Hand the email to the provider; return its reference."""
        ...


class ConsoleInbox:
    """Messages the console backends 'sent', kept in this process for the demo's terminal
    (the holder reading their phone) and for tests. Bounded; never persisted."""

    def __init__(self, size: int = 200) -> None:
        self._items: deque[tuple[str, str, str]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, channel: str, to: str, body: str) -> None:
        with self._lock:
            self._items.append((channel, to, body))

    def for_recipient(self, to: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(channel, body) for channel, who, body in self._items if who == to]

    def take(self) -> list[tuple[str, str, str]]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items


class ConsoleSmsBackend:
    """Logs each SMS with its secret masked. With an ``inbox``, also keeps the full text in
    memory for the demo (never written anywhere)."""

    name = "console"

    def __init__(self, inbox: ConsoleInbox | None = None) -> None:
        self.inbox = inbox
        self._count = 0
        self._lock = threading.Lock()

    def send(self, sms: OutgoingSms) -> str:
        with self._lock:
            self._count += 1
            ref = f"console-sms-{self._count}"
        console_log.info("SMS to %s [%s]: %s", sms.to, sms.reference, mask(sms.body, sms.secret))
        if self.inbox is not None:
            self.inbox.add("sms", sms.to, sms.body)
        return ref

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        return None  # the console never fails after accepting


class ConsoleEmailBackend:
    name = "console"

    def __init__(self, inbox: ConsoleInbox | None = None) -> None:
        self.inbox = inbox

    def send(self, email: OutgoingEmail) -> str:
        console_log.info("email to %s [%s] %s\n%s", email.to, email.reference, email.subject,
                         mask(email.body, email.secret))
        if self.inbox is not None:
            self.inbox.add("email", email.to, email.body)
        return email.reference


class _RebasedHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sending to another origin than ``api.twilio.com``.

    The SDK builds absolute URLs from its domains' base URLs and hands them to its
    ``http_client`` (a documented extension point); this client swaps scheme and host for
    those of ``base_url`` and keeps the path, so the real SDK can talk to a local endpoint
    that speaks the same API (tests) or to a relay.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError("TAWQI_TWILIO_BASE_URL must be an http(s) URL")
        self._scheme, self._netloc = parts.scheme, parts.netloc
        self._prefix = parts.path.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        url = urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query,
                          parts.fragment))
        return super().request(method, url, *args, **kwargs)


class TwilioSmsBackend:
    """SMS through the Twilio Python SDK (Programmable Messaging, ``Messages.create``)."""

    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, from_: str, *, base_url: str = "",
                 timeout: float = 20.0) -> None:
        if not (account_sid and auth_token and from_):
            raise ConfigurationError("the Twilio backend needs TAWQI_TWILIO_ACCOUNT_SID, "
                                     "TAWQI_TWILIO_AUTH_TOKEN and TAWQI_TWILIO_FROM")
        http_client = (_RebasedHttpClient(base_url, timeout) if base_url
                       else TwilioHttpClient(timeout=timeout))
        # The SDK logs request lines and headers (never bodies nor Authorization) at INFO:
        # under our name, so operators can tune it with the rest of delivery's logs.
        http_client.logger = logging.getLogger("tawqi.delivery.twilio")
        self._client = TwilioClient(account_sid, auth_token, http_client=http_client)
        self._from = from_

    #: Messages to one number read back when looking for an ambiguous send.
    lookup_limit = 50

    def send(self, sms: OutgoingSms) -> str:
        try:
            message = self._client.messages.create(to=sms.to, from_=self._from, body=sms.body)
        except TwilioRestException as exc:
            # 400 is this message's fault (e.g. 21211 invalid 'To'); anything else is the
            # provider's or our configuration's: retry.
            detail = f"twilio {exc.status} (code {exc.code}): {mask(str(exc.msg), sms.secret)}"
            if exc.status == 400:
                raise PermanentSendError(detail) from exc
            raise TransientSendError(detail) from exc
        except (requests.RequestException, TwilioException, OSError) as exc:
            if _before_sending(exc):
                raise TransientSendError(f"twilio unreachable: {type(exc).__name__}") from exc
            raise AmbiguousSendError(f"twilio did not answer: {type(exc).__name__} "
                                     f"(the message may have been accepted)") from exc
        return str(message.sid)

    def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        """Ask Twilio's Messages list whether it accepted an SMS with exactly this ``body``
        for ``to`` since ``since``. A body is unique: a PIN or a code makes it so, and
        secret-free SMS carry the time of their event.

        Two reads: ``To`` with ``DateSent>=`` the day of ``since`` (messages already sent),
        then the newest messages to ``To`` that have no ``date_sent`` yet (accepted, still
        queued at Twilio: the date filter cannot see them)."""
        day = datetime(since.year, since.month, since.day)
        try:
            for message in self._client.messages.list(to=to, date_sent_after=day,
                                                      limit=self.lookup_limit):
                if message.body == body and message.status not in _FAILED:
                    return str(message.sid)
            for message in self._client.messages.list(to=to, limit=self.lookup_limit):
                if message.date_sent is None and message.body == body \
                        and message.status not in _FAILED:
                    return str(message.sid)
        except TwilioRestException as exc:
            raise TransientSendError(f"twilio lookup failed: {exc.status} "
                                     f"(code {exc.code})") from exc
        except (requests.RequestException, TwilioException, OSError) as exc:
            raise TransientSendError(f"twilio lookup unreachable: {type(exc).__name__}") \
                from exc
        return None


_FAILED = ("failed", "undelivered", "canceled")


def _before_sending(exc: BaseException) -> bool:
    """True when the request surely never reached the provider: the connection was refused
    or could not be opened in time. Anything else (a read timeout, a connection reset while
    waiting for the answer) is ambiguous."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError) or isinstance(exc.args[0] if exc.args
                                                                    else None,
                                                                    NewConnectionError)
    return False


class PlaintextRefused(TransientSendError):
    """A PIN or a code would travel over an unencrypted SMTP connection: refused (the message
    stays pending until the configuration is fixed)."""


class SmtpEmailBackend:
    """Email through an SMTP relay, one connection per message. ``Message-ID`` is derived
    from the outbox row, so a receiving system can tell a retried message from a new one.

    STARTTLS is on by default and the relay's certificate is verified (against the system's
    authorities, or ``ca_file``). With STARTTLS off, a message carrying a secret is refused
    unless ``allow_plaintext`` says the relay is local."""

    name = "smtp"

    def __init__(self, host: str, port: int, *, sender: str, user: str = "",
                 password: str = "", starttls: bool = True, allow_plaintext: bool = False,
                 ca_file: str = "", timeout: float = 20.0) -> None:
        if not host or not sender:
            raise ConfigurationError("the SMTP backend needs TAWQI_SMTP_HOST and "
                                     "TAWQI_SMTP_FROM")
        self.host, self.port, self.sender = host, port, sender
        self._user, self._password = user, password
        self._starttls, self._timeout = starttls, timeout
        self._allow_plaintext = allow_plaintext
        self._ca_file = ca_file or None

    def _message(self, email: OutgoingEmail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = email.to
        msg["Subject"] = email.subject
        msg["Date"] = formatdate(usegmt=True)
        domain = self.sender.rpartition("@")[2] or "tawqi.invalid"
        msg["Message-ID"] = f"<{email.reference}@{domain}>"
        msg["Content-Language"] = "fr, ar"
        msg.set_content(email.body, charset="utf-8")
        return msg

    def send(self, email: OutgoingEmail) -> str:
        if email.secret and not self._starttls and not self._allow_plaintext:
            raise PlaintextRefused("smtp: refusing to send a PIN or code over a plain "
                                   "connection (set TAWQI_SMTP_STARTTLS, or "
                                   "TAWQI_SMTP_ALLOW_PLAINTEXT for a local relay)")
        msg = self._message(email)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if self._starttls:
                    try:
                        context = ssl.create_default_context(cafile=self._ca_file)
                    except OSError as exc:
                        raise ConfigurationError("TAWQI_SMTP_CA_FILE cannot be read") from exc
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(400 <= code < 500 for code in codes):
                raise TransientSendError(f"smtp recipient deferred {codes}") from exc
            raise PermanentSendError(f"smtp recipient refused {codes}") from exc
        except smtplib.SMTPDataError as exc:
            if 500 <= exc.smtp_code < 600:
                raise PermanentSendError(f"smtp refused the message ({exc.smtp_code})") from exc
            raise TransientSendError(f"smtp deferred the message ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            # Sender refused, HELO, authentication: the relay or our configuration.
            raise TransientSendError(f"smtp error {exc.smtp_code}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise TransientSendError("smtp relay offers no STARTTLS") from exc
        except ssl.SSLError as exc:
            raise TransientSendError(f"smtp TLS failed: {exc.reason}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientSendError(f"smtp unreachable: {type(exc).__name__}") from exc
        return str(msg["Message-ID"])


def sms_backend(settings: Settings, inbox: ConsoleInbox | None = None) -> SmsBackend:
    if settings.sms_backend == "twilio":
        return TwilioSmsBackend(settings.twilio_account_sid, settings.twilio_auth_token,
                                settings.twilio_from, base_url=settings.twilio_base_url,
                                timeout=settings.delivery_timeout_seconds)
    return ConsoleSmsBackend(inbox)


def email_backend(settings: Settings, inbox: ConsoleInbox | None = None) -> EmailBackend:
    if settings.email_backend == "smtp":
        return SmtpEmailBackend(settings.smtp_host, settings.smtp_port,
                                sender=settings.smtp_from, user=settings.smtp_user,
                                password=settings.smtp_password,
                                starttls=settings.smtp_starttls,
                                allow_plaintext=settings.smtp_allow_plaintext,
                                ca_file=settings.smtp_ca_file,
                                timeout=settings.delivery_timeout_seconds)
    return ConsoleEmailBackend(inbox)
