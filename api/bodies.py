"""Request bodies without a Content-Length (``Transfer-Encoding: chunked``) under the limit.

Werkzeug bounds such a body to ``max_content_length`` but, read in one go
(``request.get_data()``), cuts it at the limit silently: an oversized chunked upload then
reaches the view truncated, and fails as a broken file (422) instead of a 413. Our request
class reads such bodies through :class:`BoundedStream`, which raises 413 as soon as one byte
more than the limit arrives, however the body is read.
"""

from __future__ import annotations

import io
from typing import IO, cast

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property


class BoundedStream(io.RawIOBase):
    """Reads ``raw`` up to ``limit`` bytes; one byte more raises 413."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        # Ask for at most one byte past the limit: enough to know it was passed.
        wanted = min(len(buffer), self.limit + 1 - self.read_so_far)
        if wanted <= 0:
            raise RequestEntityTooLarge()
        data = self.raw.read(wanted)
        if not data:
            return 0
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise RequestEntityTooLarge()
        buffer[:len(data)] = data
        return len(data)


class BoundedRequest(Request):
    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if (self.content_length is None and limit is not None and not self.shallow
                and "wsgi.input_terminated" in self.environ):
            return cast(IO[bytes], io.BufferedReader(
                BoundedStream(self.environ["wsgi.input"], limit)))
        return super().stream


__all__ = ["BoundedRequest", "BoundedStream"]
