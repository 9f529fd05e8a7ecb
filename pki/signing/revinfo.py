"""Revocation data for verification beyond our CA's own.

Three sources, all optional:

- **fetched** over the network from the URLs the certificates name (CRL distribution points,
  OCSP responders, CA issuers), when the operator allows it: :class:`CappedFetcherBackend`
  gives pyHanko's fetchers a timeout per request, a cap on the size of each response and a
  cap on the number of requests, and shares one cache for the whole verification of a file.
  It reaches only public addresses over http(s) (:func:`check_url`, and again on the socket
  it connects, so a DNS answer that changes in between does not get through); redirects are
  not followed; the operator's allow-list (``FetchPolicy.allow_hosts``) opens named hosts or
  networks. Local data first: pyHanko fetches CRLs only when those it holds do not
  settle a certificate, but asks the OCSP responder of every certificate that names one;
  our OCSP fetcher answers from what the file, the operator and the caller supplied
  (:meth:`CappedFetcherBackend.know`) when it covers the certificate: a current OCSP
  response for it, or a current CRL of its issuer (then the CRL check decides, and fetches
  CRLs itself if that one does not do);
- **the operator's directory** of CRLs and OCSP responses (:func:`read_directory`), read at
  each verification so that a file dropped there counts at once;
- **uploaded** with the PDF (:func:`parse_uploaded`).

A CRL or OCSP response only counts when its signature chains to a trust anchor, whatever its
source: pyHanko checks it like any other revocation data.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import urllib3
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from pyhanko_certvalidator.errors import OCSPFetchError
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget
from pyhanko_certvalidator.fetchers.requests_fetchers.cert_fetch_client import (
    RequestsCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.requests_fetchers.crl_client import RequestsCRLFetcher
from pyhanko_certvalidator.fetchers.requests_fetchers.ocsp_client import RequestsOCSPFetcher
from requests.adapters import HTTPAdapter

from core.errors import InvalidInput
from pki.signing.pades import RevocationData

log = logging.getLogger(__name__)

Kind = Literal["crl", "ocsp"]
_CHUNK = 64 * 1024


class InvalidRevocationData(InvalidInput):
    """An uploaded file is neither a CRL nor an OCSP response."""

    type = "pki-invalid-revocation-data"
    title = "Invalid revocation data"


@dataclass(frozen=True)
class FetchPolicy:
    """Bounds on fetching for one verification."""

    timeout_seconds: float = 10.0
    max_response_bytes: int = 10 * 1024 * 1024
    max_requests: int = 50
    # Host names, addresses and networks (CIDR) fetching may reach although they are not
    # public (loopback, private, link-local, reserved...).
    allow_hosts: tuple[str, ...] = ()


# --------------------------------------------------------------------------- fetching


class ResponseTooLarge(requests.RequestException):
    pass


@dataclass(frozen=True)
class _Body:
    """What pyHanko's fetchers read of a response."""

    content: bytes
    headers: Any


class FetchRefused(requests.RequestException):
    """A URL fetching may not reach: not http(s), or a host that is not public and not
    allowed."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HostGuard:
    """Which hosts fetching may reach: public addresses, and what the allow-list names."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allowed: Iterable[str]) -> HostGuard:
        names: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip() for e in allowed):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def named(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def check_address(self, host: str, address: str) -> None:
        """Refuses ``address`` (what ``host`` resolved to) unless it is public or allowed."""
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.networks):
            return
        if not ip.is_global or ip.is_multicast:
            raise FetchRefused(f"{host} is {ip}, not a public address (see "
                               "TAWQI_VERIFY_FETCH_ALLOW_HOSTS)")

    def check_url(self, url: str) -> None:
        """Refuses a URL that is not http(s), or whose host resolves to an address that is
        neither public nor allowed (every address it resolves to counts)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchRefused(f"{url}: only http and https are fetched")
        host = parts.hostname
        if not host:
            raise FetchRefused(f"{url}: no host")
        if self.named(host):
            return
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, ValueError) as exc:
            raise FetchRefused(f"{url}: {exc}") from exc
        for *_rest, sockaddr in found:
            self.check_address(host, str(sockaddr[0]))


def _guarded_session(guard: HostGuard) -> requests.Session:
    """A session whose connections check, once connected and before a byte is sent, that
    the peer is an address ``guard`` lets through (the name was checked before; this catches
    a DNS answer that changed since). No proxies from the environment, no redirects."""

    def checked(sock: socket.socket, host: str) -> socket.socket:
        if not guard.named(host):
            try:
                guard.check_address(host, str(sock.getpeername()[0]))
            except FetchRefused:
                sock.close()
                raise
        return sock

    class Connection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn(), self.host)

    class SecureConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return checked(super()._new_conn(), self.host)

    class Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(urllib3.HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SecurePool}

    session = requests.Session()
    session.trust_env = False
    session.max_redirects = 0
    for prefix in ("http://", "https://"):
        session.mount(prefix, Adapter())
    return session


def _read_capped(response: requests.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"{response.url}: {declared} bytes, more than {limit}")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"{response.url}: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _Capped:
    """Replaces the requests fetchers' GET and POST with bounded, streamed ones."""

    per_request_timeout: float
    user_agent: str
    max_response_bytes: int
    guard: HostGuard

    def _send(self, url: str, call: Callable[[requests.Session], requests.Response]
              ) -> Awaitable[_Body]:
        from asyncio import to_thread

        limit = self.max_response_bytes
        guard = self.guard

        def task() -> _Body:
            guard.check_url(url)
            with _guarded_session(guard) as session, call(session) as response:
                if response.status_code != 200:
                    raise requests.RequestException(f"status code {response.status_code}")
                return _Body(_read_capped(response, limit), response.headers)

        return to_thread(task)

    def _get(self, url: str, *, acceptable_content_types: Iterable[str]) -> Awaitable[_Body]:
        headers = {"Accept": ",".join(acceptable_content_types), "User-Agent": self.user_agent}
        return self._send(url, lambda s: s.get(url, timeout=self.per_request_timeout,
                                               headers=headers, stream=True,
                                               allow_redirects=False))

    def _post(self, url: str, data: bytes, *, content_type: str,
              acceptable_content_types: Iterable[str]) -> Awaitable[_Body]:
        headers = {"Accept": ",".join(acceptable_content_types), "User-Agent": self.user_agent,
                   "Content-Type": content_type}
        return self._send(url, lambda s: s.post(url, data=data, headers=headers, stream=True,
                                                timeout=self.per_request_timeout,
                                                allow_redirects=False))


# (Our _get/_post answer a _Body, not a requests.Response: the fetchers read only its
# ``content`` and ``headers``.)
class _CRLFetcher(_Capped, RequestsCRLFetcher):  # type: ignore[misc]
    pass


class _Local:
    """What was supplied locally (the file's, the operator's, the caller's data), indexed for
    the OCSP fetcher: current OCSP responses by certificate id, issuers of current CRLs."""

    def __init__(self) -> None:
        self.ocsp: dict[tuple[str, bytes, int], asn1_ocsp.OCSPResponse] = {}
        self.crl_issuers: set[str] = set()

    def add(self, data: RevocationData, at: datetime) -> None:
        for der in data.ocsps:
            try:
                response = asn1_ocsp.OCSPResponse.load(der)
                basic = response["response_bytes"]["response"].parsed
                for single in basic["tbs_response_data"]["responses"]:
                    next_update = single["next_update"].native
                    if next_update is not None and next_update < at:
                        continue
                    cert_id = single["cert_id"]
                    self.ocsp[(cert_id["hash_algorithm"]["algorithm"].native,
                               cert_id["issuer_key_hash"].native,
                               cert_id["serial_number"].native)] = response
            except (ValueError, TypeError, KeyError):
                continue
        for der in data.crls:
            try:
                crl = asn1_crl.CertificateList.load(der)
                next_update = crl["tbs_cert_list"]["next_update"].native
                if next_update is not None and next_update >= at:
                    self.crl_issuers.add(crl.issuer.sha256.hex())
            except (ValueError, TypeError, KeyError):
                continue

    def ocsp_for(self, cert: Any, authority: Any) -> asn1_ocsp.OCSPResponse | None:
        serial = getattr(cert, "serial_number", None)
        for (algorithm, key_hash, number), response in self.ocsp.items():
            if number != serial:
                continue
            try:
                if getattr(authority.public_key, algorithm) == key_hash:
                    return response
            except (AttributeError, ValueError):
                continue
        return None

    def crl_covers(self, cert: Any) -> bool:
        issuer = getattr(cert, "issuer", None)
        return issuer is not None and issuer.sha256.hex() in self.crl_issuers


class _OCSPFetcher(_Capped, RequestsOCSPFetcher):  # type: ignore[misc]
    local: _Local

    async def fetch(self, cert: Any, authority: Any) -> asn1_ocsp.OCSPResponse:
        found = self.local.ocsp_for(cert, authority)
        if found is not None:
            return found
        if self.local.crl_covers(cert):
            raise OCSPFetchError("not fetched: a current CRL of the issuer is at hand")
        response: asn1_ocsp.OCSPResponse = await super().fetch(cert, authority)
        return response


class _CertFetcher(_Capped, RequestsCertificateFetcher):  # type: ignore[misc]
    pass


class CappedFetcherBackend(FetcherBackend):
    """pyHanko fetchers with our bounds. One set of fetchers (one cache, one request
    budget) for the backend's life: make one backend per verified file."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._fetchers: Fetchers | None = None
        self._local = _Local()

    def know(self, data: RevocationData, at: datetime) -> None:
        """Revocation data held without fetching (the file's, the operator's, the
        caller's): an OCSP request it makes needless is not sent (see the module)."""
        self._local.add(data, at)

    def get_fetchers(self) -> Fetchers:
        if self._fetchers is None:
            policy = self.policy
            budget = FetchBudget(FetchLimits(max_requests=policy.max_requests,
                                             max_cert_requests=policy.max_requests))
            timeout = policy.timeout_seconds
            ocsp = _OCSPFetcher(per_request_timeout=timeout, budget=budget)
            ocsp.local = self._local
            crl = _CRLFetcher(per_request_timeout=timeout, budget=budget)
            cert = _CertFetcher(per_request_timeout=timeout, budget=budget)
            guard = HostGuard.of(policy.allow_hosts)
            for fetcher in (ocsp, crl, cert):
                fetcher.max_response_bytes = policy.max_response_bytes
                fetcher.guard = guard
            self._fetchers = Fetchers(ocsp_fetcher=ocsp, crl_fetcher=crl, cert_fetcher=cert)
        return self._fetchers

    def fetched(self) -> RevocationData:
        """The CRLs and OCSP responses fetched so far."""
        if self._fetchers is None:
            return RevocationData()
        ocsps = tuple(r.dump() for r in self._fetchers.ocsp_fetcher.fetched_responses())
        crls = tuple(c.dump() for c in self._fetchers.crl_fetcher.fetched_crls())
        return RevocationData(ocsps, crls) + RevocationData()

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- files


def classify(data: bytes) -> tuple[Kind, bytes] | None:
    """``("crl" | "ocsp", DER)`` for a CRL (DER or PEM) or an OCSP response (DER), else
    None."""
    der = data
    if pem.detect(data):
        try:
            _type, _headers, der = pem.unarmor(data)
        except ValueError:
            return None
    for kind, loader in (("crl", asn1_crl.CertificateList), ("ocsp", asn1_ocsp.OCSPResponse)):
        try:
            parsed = loader.load(der, strict=True)
            parsed.native  # noqa: B018 - parse it all now
        except (ValueError, TypeError, KeyError):
            continue
        if kind == "ocsp" and parsed["response_status"].native != "successful":
            return None
        return kind, der  # type: ignore[return-value]
    return None


def _collect(items: Iterable[tuple[Kind, bytes]]) -> RevocationData:
    ocsps = tuple(der for kind, der in items if kind == "ocsp")
    crls = tuple(der for kind, der in items if kind == "crl")
    return RevocationData(ocsps, crls) + RevocationData()


def parse_uploaded(files: Iterable[tuple[str, bytes]], *, max_files: int = 20
                   ) -> RevocationData:
    """Revocation data the caller sent with the PDF: ``(name, bytes)`` pairs, each a CRL or
    an OCSP response. Anything else is refused, naming the file."""
    found: list[tuple[Kind, bytes]] = []
    for index, (name, data) in enumerate(files):
        if index >= max_files:
            raise InvalidRevocationData(f"at most {max_files} revocation files",
                                        field="revocation", limit=max_files)
        kind = classify(data)
        if kind is None:
            raise InvalidRevocationData(f"{name or f'file {index + 1}'} is neither a CRL nor "
                                        "a successful OCSP response", field="revocation")
        found.append(kind)
    return _collect(found)


def read_directory(path: Path | str | None, *, max_file_bytes: int = 20 * 1024 * 1024
                   ) -> RevocationData:
    """The CRLs and OCSP responses in the operator's directory (not recursive). Files that
    are neither, or too large, are skipped with a warning."""
    if not path:
        return RevocationData()
    folder = Path(path)
    if not folder.is_dir():
        log.warning("revocation directory %s does not exist", folder)
        return RevocationData()
    found: list[tuple[Kind, bytes]] = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        try:
            if entry.stat().st_size > max_file_bytes:
                log.warning("revocation file %s is larger than %d bytes: skipped", entry,
                            max_file_bytes)
                continue
            kind = classify(entry.read_bytes())
        except OSError as exc:
            log.warning("revocation file %s unreadable: %s", entry, exc)
            continue
        if kind is None:
            log.warning("revocation file %s is neither a CRL nor an OCSP response", entry)
            continue
        found.append(kind)
    return _collect(found)


__all__ = ["CappedFetcherBackend", "FetchPolicy", "FetchRefused", "HostGuard",
           "InvalidRevocationData", "ResponseTooLarge", "classify", "parse_uploaded",
           "read_directory"]
