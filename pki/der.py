"""A guard against asn1crypto 1.5.1 mistaking some DER lengths for BER's indefinite length.

asn1crypto re-encodes a parsed value from scratch when its length is indefinite (BER's
single length octet ``0x80``), and tells so by the LAST octet of the value's header. A
definite length in the long form can end with that octet too: 384 bytes is ``82 01 80``,
640 bytes ``82 02 80``. Such a value, and every value inside it, is then re-encoded at
each dump, and ``Sequence.dump`` asks again on its way out: the work doubles at each level
of nesting (asn1crypto issue 249, open upstream).

It is no rare corner: about one value in 256 has such a length, and a time-stamp token
carries dozens. When the signature time-stamp attribute of a CMS signature got one, pyHanko
spent about a second packaging a 2.4 kB token instead of two milliseconds, and minutes when
the unlucky value sat deeper: the gunicorn worker "stuck at 98 % CPU" during a B-T
signature (issue 16).

:func:`install` wraps the ``dump`` of asn1crypto's five value families: before the
original runs, a header whose last octet is ``0x80`` but whose length is definite is
dropped, so asn1crypto writes it again from the contents (the same octets) instead of
re-encoding the whole value. A real indefinite length is left to asn1crypto as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asn1crypto import core

_INSTALLED = "_tawqi_definite_length_guard"


def indefinite(header: bytes) -> bool:
    """Whether the length of the value that ``header`` introduces is BER's indefinite form.

    ``header`` is a value's identifier and length octets, after those of its explicit
    tags if any (asn1crypto keeps them together): each pair is read in turn, and the
    answer is the last pair's length. A header that does not read as such pairs is not
    called indefinite."""
    position, size, last = 0, len(header), False
    while position < size:
        first = header[position]
        position += 1
        if first & 0x1F == 0x1F:  # a high tag number: base-128 octets, the last < 0x80
            while position < size and header[position] & 0x80:
                position += 1
            position += 1
        if position >= size:
            return False
        length = header[position]
        position += 1
        last = length == 0x80
        if length > 0x80:
            position += length & 0x7F
    return last and position == size


def _guarded(original: Callable[..., bytes]) -> Callable[..., bytes]:
    def dump(self: Any, force: bool = False) -> bytes:
        header = self._header
        if not force and header is not None and header[-1:] == b"\x80" \
                and not indefinite(header):
            self._header = None  # written again from the contents: the same octets
        return original(self, force)

    dump.__doc__ = original.__doc__
    dump.__wrapped__ = original  # type: ignore[attr-defined]
    return dump


def install() -> None:
    """Guard asn1crypto's ``dump`` methods, once per process."""
    if getattr(core, _INSTALLED, False):
        return
    for family in (core.Asn1Value, core.Choice, core.Primitive, core.Sequence,
                   core.SequenceOf):
        family.dump = _guarded(family.__dict__["dump"])  # type: ignore[method-assign]
    setattr(core, _INSTALLED, True)


install()
