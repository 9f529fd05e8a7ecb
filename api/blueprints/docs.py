"""``/openapi.json`` and ``/docs``: the API describing itself, for machines and people.

The docs page is rendered on the server from the same document (no JavaScript, no CDN):
operations by tag with who may call them, parameters, bodies and responses, the schemas, and
the catalogue of problem types.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import Response, current_app, render_template

from api import openapi, problems
from api.routing import ApiBlueprint, Call

bp = ApiBlueprint("docs", __name__, tag="Documentation",
                  description="This document and its human-readable rendering.")


def document() -> dict[str, Any]:
    cached: dict[str, Any] | None = current_app.extensions.get("tawqi.openapi")
    if cached is None:
        cached = openapi.build(current_app)
        current_app.extensions["tawqi.openapi"] = cached
    return cached


@bp.operation("GET", "/openapi.json", action=None, summary="The OpenAPI 3.1 document",
              produces={"application/json": {"type": "object"}})
def openapi_json(call: Call) -> Response:
    return Response(json.dumps(document(), ensure_ascii=False), mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items'))}"
    kind = schema.get("type", "any")
    return " | ".join(kind) if isinstance(kind, list) else str(kind)


@bp.operation("GET", "/docs", action=None, summary="Human-readable API documentation",
              produces={"text/html": {"type": "string"}})
def docs_page(call: Call) -> Response:
    doc = document()
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {})
            ok = [(code, r) for code, r in op["responses"].items()
                  if code.startswith("2")]
            by_tag.setdefault(op["tags"][0], []).append({
                "method": method.upper(), "path": path, "op": op,
                "body": ", ".join(f"{media}: {_schema_name(v.get('schema'))}"
                                  for media, v in body.items()),
                "ok": [(code, ", ".join(f"{media}: {_schema_name(v.get('schema'))}"
                                        for media, v in r.get("content", {}).items()))
                       for code, r in ok],
                "errors": [code for code in op["responses"] if code[0] in "45"],
            })
    nonce = secrets.token_urlsafe(16)
    html = render_template("docs.html", doc=doc, by_tag=sorted(by_tag.items()),
                           schemas=doc["components"]["schemas"],
                           problem_types=problems.catalog(), base=problems.PROBLEM_BASE,
                           nonce=nonce, schema_name=_schema_name,
                           dumps=lambda v: json.dumps(v, ensure_ascii=False, indent=1))
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; frame-ancestors 'none'; "
           "base-uri 'none'; form-action 'none'")
    return Response(html, mimetype="text/html",
                    headers={"Content-Security-Policy": csp})
