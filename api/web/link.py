"""``/s/<id>``: the short URL a signature stamp's QR code carries. It redirects to the
signature's public status page, ``/web/s/<id>`` (:func:`api.web.verify.signature`)."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from werkzeug.wrappers import Response

bp = Blueprint("link", __name__)


@bp.get("/s/<public_id>")
def status_link(public_id: str) -> Response:
    return redirect(url_for("web.signature", public_id=public_id), 302)


__all__ = ["bp"]
