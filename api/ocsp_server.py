"""A lean HTTP/1.1 front for the OCSP responder: asyncio, keep-alive, nothing else.

``tawqi ocsp serve`` runs it. It answers exactly what the ``/ocsp`` routes of the Flask
application answer (same :class:`pki.ocsp.OcspResponder`: pre-signed responses from memory,
synchronised with the database), without Flask's per-request machinery: the point of
pre-signed OCSP is that an answer costs a dictionary lookup and a socket write. Anything
else than ``GET /ocsp/<base64>`` and ``POST /ocsp`` gets a 404; request heads are capped at
8 KiB and bodies at :data:`MAX_BODY`; a connection idle for ``idle_seconds`` is closed.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

from core.clock import as_utc
from pki.ocsp import MALFORMED, OcspAnswer, OcspResponder

MAX_HEAD = 8192
MAX_BODY = 8192
_CRLF2 = b"\r\n\r\n"


class _Heads:
    """Response heads, rebuilt at most once per second per answer (max-age and Date move)."""

    def __init__(self, responder: OcspResponder) -> None:
        self._responder = responder
        self._second = -1
        self._date = b""
        self._cache: dict[int, bytes] = {}

    def head(self, answer: OcspAnswer, *, post: bool, keep_alive: bool) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._date = formatdate(second, usegmt=True).encode("ascii")
            self._cache = {}
        key = (id(answer) << 2) | (post << 1) | keep_alive
        found = self._cache.get(key)
        if found is not None:
            return found
        headers = answer.headers(as_utc(self._responder.clock.now()))
        if post and answer.signed:
            headers["Cache-Control"] = "no-cache"
        lines = [b"HTTP/1.1 200 OK", b"Date: " + self._date,
                 b"Content-Length: " + str(len(answer.der)).encode("ascii")]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
        if not keep_alive:
            lines.append(b"Connection: close")
        head = b"\r\n".join(lines) + _CRLF2
        if len(self._cache) < 100_000:
            self._cache[key] = head
        return head


_NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
_TOO_LARGE = (b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n"
              b"Connection: close\r\n\r\n")


class OcspProtocol(asyncio.Protocol):
    def __init__(self, responder: OcspResponder, heads: _Heads, idle_seconds: float) -> None:
        self._responder = responder
        self._heads = heads
        self._idle = idle_seconds
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._idle, self._close)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        transport = self._transport
        while transport is not None:
            end = self._buffer.find(_CRLF2)
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    transport.write(_TOO_LARGE)
                    transport.close()
                break
            head = self._buffer[:end]
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            parts = request_line.split(b" ")
            if len(parts) != 3:
                transport.write(_NOT_FOUND)
                transport.close()
                return
            method, target, version = parts
            lowered = head[line_end:].lower() if line_end >= 0 else b""
            length = 0
            if method == b"POST":
                marker = lowered.find(b"\r\ncontent-length:")
                if marker >= 0:
                    stop = lowered.find(b"\r\n", marker + 2)
                    value = lowered[marker + 17: stop if stop >= 0 else None].strip()
                    length = int(value) if value.isdigit() else -1
                if length < 0 or length > MAX_BODY:
                    transport.write(_TOO_LARGE)
                    transport.close()
                    return
            if len(self._buffer) < end + 4 + length:
                break  # wait for the body
            body = self._buffer[end + 4: end + 4 + length]
            self._buffer = self._buffer[end + 4 + length:]
            keep_alive = (b"\r\nconnection: close" not in lowered) and \
                (version == b"HTTP/1.1" or b"\r\nconnection: keep-alive" in lowered)
            if method == b"GET" and target.startswith(b"/ocsp/"):
                if len(target) > MAX_HEAD:
                    answer = OcspAnswer(MALFORMED)
                else:
                    answer = self._responder.respond_get(target[6:].decode("latin-1"))
                post = False
            elif method == b"POST" and target in (b"/ocsp", b"/ocsp/"):
                answer = self._responder.respond(body)
                post = True
            else:
                transport.write(_NOT_FOUND)
                transport.close()
                return
            transport.write(self._heads.head(answer, post=post, keep_alive=keep_alive)
                            + answer.der)
            if not keep_alive:
                transport.close()
                return
        self._arm()


async def serve(responder: OcspResponder, host: str, port: int, *,
                idle_seconds: float = 15.0, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled."""
    loop = asyncio.get_running_loop()
    heads = _Heads(responder)
    responder.sync(full=True)
    server = await loop.create_server(lambda: OcspProtocol(responder, heads, idle_seconds),
                                      host, port, reuse_address=True, backlog=1024)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def run(responder: OcspResponder, host: str, port: int) -> None:
    asyncio.run(serve(responder, host, port))
