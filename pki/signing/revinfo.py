"""Revocation data for verification beyond our CA's own.

Three sources, all optional:

- **fetched** over the network from the URLs the certificates name (CRL distribution points,
  OCSP responders, CA issuers), when the operator allows it: :class:`CappedFetcherBackend`
  gives pyHanko's fetchers a timeout per request, a cap on the size of each response and a
  cap on the number of requests, and shares one cache for the whole verification of a file;
- **the operator's directory** of CRLs and OCSP responses (:func:`read_directory`), read at
  each verification so that a file dropped there counts at once;
- **uploaded** with the PDF (:func:`parse_uploaded`).

A CRL or OCSP response only counts when its signature chains to a trust anchor, whatever its
source: pyHanko checks it like any other revocation data.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget
from pyhanko_certvalidator.fetchers.requests_fetchers.cert_fetch_client import (
    RequestsCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.requests_fetchers.crl_client import RequestsCRLFetcher
from pyhanko_certvalidator.fetchers.requests_fetchers.ocsp_client import RequestsOCSPFetcher

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


# --------------------------------------------------------------------------- fetching


class ResponseTooLarge(requests.RequestException):
    pass


@dataclass(frozen=True)
class _Body:
    """What pyHanko's fetchers read of a response."""

    content: bytes
    headers: Any


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

    def _send(self, call: Callable[[], requests.Response]) -> Awaitable[_Body]:
        from asyncio import to_thread

        limit = self.max_response_bytes

        def task() -> _Body:
            with call() as response:
                if response.status_code != 200:
                    raise requests.RequestException(f"status code {response.status_code}")
                return _Body(_read_capped(response, limit), response.headers)

        return to_thread(task)

    def _get(self, url: str, *, acceptable_content_types: Iterable[str]) -> Awaitable[_Body]:
        headers = {"Accept": ",".join(acceptable_content_types), "User-Agent": self.user_agent}
        return self._send(lambda: requests.get(url, timeout=self.per_request_timeout,
                                               headers=headers, stream=True))

    def _post(self, url: str, data: bytes, *, content_type: str,
              acceptable_content_types: Iterable[str]) -> Awaitable[_Body]:
        headers = {"Accept": ",".join(acceptable_content_types), "User-Agent": self.user_agent,
                   "Content-Type": content_type}
        return self._send(lambda: requests.post(url, data=data, headers=headers, stream=True,
                                                timeout=self.per_request_timeout))


# (Our _get/_post answer a _Body, not a requests.Response: the fetchers read only its
# ``content`` and ``headers``.)
class _CRLFetcher(_Capped, RequestsCRLFetcher):  # type: ignore[misc]
    pass


class _OCSPFetcher(_Capped, RequestsOCSPFetcher):  # type: ignore[misc]
    pass


class _CertFetcher(_Capped, RequestsCertificateFetcher):  # type: ignore[misc]
    pass


class CappedFetcherBackend(FetcherBackend):
    """pyHanko fetchers with our bounds. One set of fetchers (one cache, one request
    budget) for the backend's life: make one backend per verified file."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._fetchers: Fetchers | None = None

    def get_fetchers(self) -> Fetchers:
        if self._fetchers is None:
            policy = self.policy
            budget = FetchBudget(FetchLimits(max_requests=policy.max_requests,
                                             max_cert_requests=policy.max_requests))
            timeout = policy.timeout_seconds
            ocsp = _OCSPFetcher(per_request_timeout=timeout, budget=budget)
            crl = _CRLFetcher(per_request_timeout=timeout, budget=budget)
            cert = _CertFetcher(per_request_timeout=timeout, budget=budget)
            for fetcher in (ocsp, crl, cert):
                fetcher.max_response_bytes = policy.max_response_bytes
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


__all__ = ["CappedFetcherBackend", "FetchPolicy", "InvalidRevocationData", "ResponseTooLarge",
           "classify", "parse_uploaded", "read_directory"]
