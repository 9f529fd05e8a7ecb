"""The OpenAPI 3.1 document, generated from the declared operations and their schemas.

Nothing here is written by hand per endpoint: paths come from the URL map, parameters and
bodies from the query and body dataclasses, responses from the response dataclasses, the
security requirement and the roles allowed from :mod:`api.policy`, and the error responses
from what the operation can refuse (every error is an RFC 9457 problem).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from api import policy
from api.routing import Operation, operations
from api.schema import SchemaRegistry, query_parameters

OPENAPI_VERSION = "3.1.0"
ID_MAX = 2_147_483_647

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem. `type` is stable per kind of error; extra members "
                   "carry machine-readable facts (e.g. `errors` for invalid fields, "
                   "`retry_after` for rate limits).",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"},
                                             "message": {"type": "string"}},
            "required": ["field", "message"]}},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

ERROR_TEXT = {
    400: "Malformed request (not JSON, bad header)",
    401: "No valid bearer token or API key",
    403: "The caller's role or scope does not allow this",
    404: "No such resource",
    409: "The current state refuses the change",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid parameters or body",
    423: "Locked",
    428: "Idempotency-Key header required",
    429: "Rate limited; see Retry-After",
    503: "A dependency is unavailable; retry later",
}

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        conv, name = match["conv"] or "string", match["name"]
        if conv == "id":
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": ID_MAX}
        elif conv == "int":
            schema = {"type": "integer", "minimum": 0, "maximum": ID_MAX}
        elif conv == "path":
            schema = {"type": "string", "minLength": 1}
        else:
            schema = {"type": "string", "pattern": "^[^/]+$"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PARAM.sub(replace, rule), params


def roles_allowed(action: str) -> dict[str, str]:
    return {role: reach.value for role, reach in policy.RULES[action].items()}


def _describe_access(op: Operation) -> str:
    if op.action is None:
        return "Public: no authentication."
    parts = []
    for role, reach in policy.RULES[op.action].items():
        parts.append(role if reach is policy.ANY else f"{role} ({reach.value})")
    return f"Action `{op.action}`. Allowed: " + ", ".join(parts) + "."


def _errors(op: Operation, has_path_params: bool) -> set[int]:
    codes = set(op.errors)
    if op.action is not None:
        codes |= {401, 403}
    if has_path_params:
        codes.add(404)
    if op.body is not None or op.consumes:
        codes |= {400, 413, 415, 422}
    if op.query is not None:
        codes.add(422)
    if op.idempotency != "none":
        codes |= {400, 422}
    if op.idempotency == "required":
        codes.add(428)
    if op.rate_limit is not None:
        codes.add(429)
    return codes


def _operation(op: Operation, params: list[dict[str, Any]], registry: SchemaRegistry
               ) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                           "tags": [op.tag]}
    description = "\n\n".join(x for x in (op.description, _describe_access(op)) if x)
    if op.rate_limit and op.action is None:
        description += ("\n\nFailed attempts are limited per address "
                        "(`TAWQI_RATE_LIMIT_AUTH`) and back off per user name "
                        "(`TAWQI_LOGIN_FREE_FAILURES`, `TAWQI_LOGIN_BACKOFF_MAX_SECONDS`).")
    elif op.rate_limit:
        what = "per credential or holder, " if op.rate_subject else ""
        description += (f"\n\nRate limited {what}per person "
                        f"(`TAWQI_RATE_LIMIT_{op.rate_limit.upper()}`) and per machine client "
                        "(`TAWQI_RATE_LIMIT_CLIENT`).")
    out["description"] = description
    if op.action is not None:
        out["security"] = [{"bearer": []}]
        out["x-tawqi-action"] = op.action
        out["x-tawqi-roles"] = roles_allowed(op.action)
    else:
        out["security"] = []
    parameters = list(params)
    if op.query is not None:
        parameters += query_parameters(op.query, registry)
    if op.idempotency != "none":
        parameters.append({
            "name": "Idempotency-Key", "in": "header",
            "required": op.idempotency == "required",
            "description": "A unique key per intended operation: a retry with the same key "
                           "and body gets the first response back instead of a second effect.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                       "pattern": "^[\\x21-\\x7e]+$"}})
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": registry.ref(op.body)}}}
    elif op.consumes:
        out["requestBody"] = {"required": True, "content": {
            media: {"schema": schema} for media, schema in op.consumes.items()}}
    responses: dict[str, Any] = {}
    if op.produces:
        responses[str(op.status)] = {"description": op.summary, "content": {
            media: {"schema": schema} for media, schema in op.produces.items()}}
    elif op.response is not None:
        responses[str(op.status)] = {"description": op.summary, "content": {
            "application/json": {"schema": registry.ref(op.response)}}}
    else:
        responses["204" if op.status == 200 else str(op.status)] = {"description": op.summary}
    for code in sorted(_errors(op, bool(params))):
        responses[str(code)] = {"$ref": f"#/components/responses/Problem{code}"}
    responses["default"] = {"$ref": "#/components/responses/Problem"}
    out["responses"] = responses
    if op.deprecated:
        out["deprecated"] = True
    return out


def build(app: Flask, *, title: str = "Tawqi API", version: str = "1") -> dict[str, Any]:
    registry = SchemaRegistry()
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for bp in app.blueprints.values():
        if getattr(bp, "tag", None):
            tags.setdefault(bp.tag, getattr(bp, "tag_description", ""))  # type: ignore[attr-defined]
    for op, rule in sorted(operations(app), key=lambda x: (x[1], x[0].method)):
        path, params = _path(rule)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, params, registry)
        tags.setdefault(op.tag, "")
    problem_responses: dict[str, Any] = {
        "Problem": {"description": "An error (RFC 9457 problem details)", "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}
    for code, text in ERROR_TEXT.items():
        problem_responses[f"Problem{code}"] = {"description": text, "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    schemas = dict(sorted(registry.components.items()))
    schemas["Problem"] = PROBLEM_SCHEMA
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": title, "version": version,
            "description": "Certificates and e-signatures for Morocco's permits platform. "
                           "Authenticate with `Authorization: Bearer <token>`: a token from "
                           "`POST /v1/auth/login` (people) or an API key (machine clients). "
                           "Errors are RFC 9457 problems; lists take `limit` and `offset`.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name, **({"description": text} if text else {})}
                 for name, text in sorted(tags.items())],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": problem_responses,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A session token (tws_…) from POST /v1/auth/login, or an API "
                               "key (twk_…) created by an administrator."}},
        },
    }
