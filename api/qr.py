"""QR codes as inline SVG (segno), for the TOTP enrolment page: an image with a title a
screen reader announces, drawn with attributes only (the pages' CSP allows no inline
style)."""

from __future__ import annotations

import io

import segno
from markupsafe import Markup, escape


def svg(data: str, *, title: str, scale: int = 4) -> Markup:
    """``data`` as a QR code (error correction M), an ``<svg role="img">`` element."""
    out = io.BytesIO()
    segno.make(data, error="m", micro=False).save(
        out, kind="svg", scale=scale, border=4, xmldecl=False, svgns=True, nl=False,
        title=str(escape(title)), svgclass="qr", dark="#000", light="#fff")
    text = out.getvalue().decode("utf-8")
    # segno's own markup, the only text in it being the title, escaped above
    labelled = text.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)
    return Markup(labelled)  # noqa: S704
