"""The HTTP framework: problems, limits, headers, CORS, idempotency, metrics, health."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from api.app import create_app
from api.models import IdempotencyRecord
from api.problems import PROBLEM_BASE
from api.routing import ApiBlueprint, Call
from api.runtime import Runtime
from core.audit import AuditEvent
from core.clock import FrozenClock
from quotas.models import Partnership
from tests.api.conftest import Caller, provision_service_tokens

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_healthz_and_security_headers(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Access-Control-Allow-Origin" not in response.headers  # CORS off by default
    assert len(response.headers["X-Request-Id"]) >= 8


def test_http_errors_are_problems(client: FlaskClient, callers: dict[str, Caller]) -> None:
    assert_problem(client.get("/nowhere"), 404, "route-not-found")
    body = assert_problem(client.delete("/healthz"), 405, "method-not-allowed")
    assert "detail" in body
    assert "GET" in client.delete("/healthz").headers["Allow"]
    admin = callers["dgcl_admin"].headers
    assert_problem(client.post("/v1/api-keys", data="name=x", headers=admin,
                               content_type="application/x-www-form-urlencoded"),
                   415, "unsupported-media-type")
    assert_problem(client.post("/v1/api-keys", data="{not json", headers=admin,
                               content_type="application/json"), 400, "malformed-request")
    body = assert_problem(client.post("/v1/api-keys", json={"nom": 1}, headers=admin),
                          422, "validation-failed")
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert fields == {"nom": "is not a known field", "name": "is required"}
    assert_problem(client.get("/v1/regions?limit=0", headers=admin), 422, "validation-failed")
    assert_problem(client.get("/v1/regions?colour=red", headers=admin), 422,
                   "validation-failed")
    assert_problem(client.get("/v1/audit/verify?x=1", headers=admin), 422,
                   "validation-failed")
    assert_problem(client.get("/v1/users/0", headers=admin), 404, "route-not-found")
    assert_problem(client.get("/v1/users/99999999999", headers=admin), 404,
                   "route-not-found")
    assert_problem(client.get("/v1/users/4242", headers=admin), 404, "user-not-found")


def test_body_size_limit(client: FlaskClient, callers: dict[str, Caller]) -> None:
    admin = callers["dgcl_admin"].headers
    big = json.dumps({"name": "x" * (300 * 1024)})
    body = assert_problem(client.post("/v1/api-keys", data=big, headers=admin,
                                      content_type="application/json"),
                          413, "payload-too-large")
    assert str(256 * 1024) in body["detail"]


def test_authentication_problems(client: FlaskClient, callers: dict[str, Caller]) -> None:
    response = client.get("/v1/me")
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(client.get("/v1/me", headers={"Authorization": "Basic abc"}), 401,
                   "token-invalid")
    assert_problem(client.get("/v1/me", headers={"Authorization": "Bearer tws_nope"}), 401,
                   "token-invalid")
    assert_problem(client.get("/v1/me", headers={"Authorization": "Bearer twk_ab_cd"}), 401,
                   "token-invalid")
    body = assert_problem(client.get("/v1/audit/events", headers=callers["operator"].headers),
                          403, "not-permitted")
    assert body["action"] == "audit.read"


def test_internal_errors_say_nothing(app: Flask, api_runtime: Runtime) -> None:
    bp = ApiBlueprint("boom", __name__, url_prefix="/boom")

    @bp.operation("GET", "/", action=None, summary="fails")
    def explode(call: Call) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    app.register_blueprint(bp)
    response = app.test_client().get("/boom/")
    body = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_scope_not_checked_fails_closed(app: Flask, api_runtime: Runtime,
                                        callers: dict[str, Caller]) -> None:
    bp = ApiBlueprint("careless", __name__, url_prefix="/careless")

    @bp.operation("POST", "/", action="quotas.read", summary="forgets the scope")
    def careless(call: Call) -> None:
        call.audit("test.careless", "thing", 1)

    app.register_blueprint(bp)
    client = app.test_client()
    with api_runtime.unit_of_work() as session:
        before = session.scalar(select(func.count()).select_from(AuditEvent))
    assert_problem(client.post("/careless/", headers=callers["contact"].headers), 500,
                   "internal-error")
    # An unscoped role passes, since nothing needs checking.
    assert client.post("/careless/", headers=callers["operator"].headers).status_code == 204
    with api_runtime.unit_of_work() as session:
        after = session.scalar(select(func.count()).select_from(AuditEvent))
        actions = list(session.scalars(select(AuditEvent.actor).where(
            AuditEvent.action == "test.careless")))
    assert after == before + 1  # the contact's change was rolled back
    assert actions == ["user:operator"]


def test_cors_only_for_configured_origins(api_runtime: Runtime) -> None:
    api_runtime.settings = api_runtime.settings.replace(
        cors_origins="https://permis.example.ma")
    client = create_app(rt=api_runtime).test_client()
    allowed = client.get("/healthz", headers={"Origin": "https://permis.example.ma"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://permis.example.ma"
    assert "Origin" in allowed.headers["Vary"]
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options("/v1/me", headers={
        "Origin": "https://permis.example.ma", "Access-Control-Request-Method": "GET"})
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_idempotent_partnership(client: FlaskClient, callers: dict[str, Caller],
                                api_runtime: Runtime) -> None:
    admin = callers["dgcl_admin"].headers
    body = {"commune_code": "01.051.01.01", "year": 2026, "count": 2,
            "unit_price_mad": "850.00", "signed_on": "2026-02-01", "reference": "P-1"}
    headers = {**admin, "Idempotency-Key": "partnership-P-1"}
    first = client.post("/v1/quotas/partnerships", json=body, headers=headers)
    assert first.status_code == 201, first.get_json()
    again = client.post("/v1/quotas/partnerships", json=body, headers=headers)
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_problem(client.post("/v1/quotas/partnerships", json={**body, "count": 3},
                               headers=headers), 422, "idempotency-key-reused")
    assert_problem(client.post("/v1/quotas/partnerships", json=body,
                               headers={**admin, "Idempotency-Key": "bad key"}), 400,
                   "malformed-request")
    with api_runtime.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Partnership).where(
            Partnership.reference == "P-1")) == 1
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1
    quota = client.get("/v1/quotas/entities/01.051.01.01?year=2026", headers=admin)
    assert quota.get_json()["extra"] == 2
    # Without a key, a retry does it twice (the key is how a client asks for once).
    client.post("/v1/quotas/partnerships", json=body, headers=admin)
    quota = client.get("/v1/quotas/entities/01.051.01.01?year=2026", headers=admin)
    assert quota.get_json()["extra"] == 4


def test_metrics_per_app_registry(app: Flask, api_runtime: Runtime) -> None:
    client = app.test_client()
    client.get("/healthz")
    client.get("/healthz")
    client.get("/nowhere")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'tawqi_http_requests_total{endpoint="/healthz",method="GET",status="200"} 2.0' \
        in text
    assert 'endpoint="(unmatched)"' in text
    assert "tawqi_http_request_duration_seconds_bucket" in text
    # A second app has its own registry: no duplicate-timeseries error, fresh counts.
    other = create_app(rt=api_runtime).test_client()
    text2 = other.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/healthz"' not in text2


def test_readyz(app: Flask, api_runtime: Runtime, tmp_path: Path) -> None:
    provision_service_tokens(api_runtime)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert {c["name"]: c["ok"] for c in response.get_json()["checks"]} == \
        {"database": True, "pkcs11": True, "ca-token": True, "crl-ocsp": True, "outbox": True}
    # A day and a half later with no scheduled job run: the CRL is past its nextUpdate.
    assert isinstance(api_runtime.clock, FrozenClock)
    api_runtime.clock.advance(timedelta(hours=36))
    stale = assert_problem(client.get("/readyz"), 503, "not-ready")
    failing = {c["name"]: c["detail"] for c in stale["checks"] if not c["ok"]}
    assert list(failing) == ["crl-ocsp"] and "no current CRL" in failing["crl-ocsp"]
    api_runtime.clock.advance(timedelta(hours=-36))
    # A server whose PKCS#11 module is gone: the real token layer fails to load it.
    missing = tmp_path / "gone" / "libvendor-pkcs11.so"
    broken = Runtime(api_runtime.settings.replace(pkcs11_module=str(missing)),
                     clock=api_runtime.clock, engine=api_runtime.engine)
    broken.sessions = api_runtime.sessions
    response = create_app(rt=broken).test_client().get("/readyz")
    body = assert_problem(response, 503, "not-ready")
    assert [c["name"] for c in body["checks"] if not c["ok"]] == ["pkcs11", "ca-token"]
    assert "gone" not in response.get_data(as_text=True)  # no path, no internals
    assert [c["detail"] for c in body["checks"] if not c["ok"]] == \
        ["ModuleUnavailable: unavailable"] * 2


def test_docs_page_and_openapi(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/auth/login" in doc["paths"]
    login = doc["paths"]["/v1/auth/login"]["post"]
    assert login["security"] == []
    assert "429" in login["responses"]
    keys = doc["paths"]["/v1/api-keys"]["post"]
    assert keys["x-tawqi-roles"] == {"dgcl_admin": "any"}
    assert doc["components"]["schemas"]["LoginIn"]["properties"]["password"]["writeOnly"]
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/v1/quotas/entities/{entity}" in html
    assert "quota-exhausted" in html  # the problem catalogue
    assert "nonce-" in page.headers["Content-Security-Policy"]
    assert "http" not in html.split("<body>")[0].replace("http-equiv", "")  # no CDN


def test_openapi_document_is_valid(client: FlaskClient) -> None:
    import jsonschema_rs

    doc = client.get("/openapi.json").get_json()
    for name, schema in doc["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)
        assert name
    refs = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for ref in refs:
        _, section, kind, name = ref.split("/")
        assert name in doc[section][kind], ref
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))



def test_metrics_token(api_runtime: Runtime) -> None:
    token = "metrics-scrape-token-0123456789"
    rt = Runtime(api_runtime.settings.replace(metrics_token=token), clock=api_runtime.clock,
                 engine=api_runtime.engine)
    rt.sessions = api_runtime.sessions
    client = create_app(rt=rt).test_client()
    body = assert_problem(client.get("/metrics"), 401, "metrics-token")
    assert token not in json.dumps(body)
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200 and "tawqi_http_requests_total" in scraped.text


def test_json_log_lines_carry_the_request_id(app: Flask) -> None:
    import io
    import logging

    from api.app import _RequestIdFilter
    from core.logs import formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    handler.addFilter(_RequestIdFilter())
    logger = logging.getLogger("tawqi.test.jsonlog")
    logger.addHandler(handler)
    try:
        with app.test_request_context("/healthz"):
            from flask import g

            g.request_id = "abcdef0123456789"
            logger.warning("PIN notice queued for holder %s", 42)
        logger.warning("outside a request")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "abcdef0123456789"
    assert first["message"] == "PIN notice queued for holder 42"
    assert first["level"] == "WARNING" and first["logger"] == "tawqi.test.jsonlog"
    assert "request_id" not in second


def test_operations_gauges(app: Flask, api_runtime: Runtime) -> None:
    """CRL nextUpdate, certificates expiring soon, token lockouts (issue 15)."""
    from sqlalchemy import insert

    from delivery.models import PinAttempt

    provision_service_tokens(api_runtime)
    with api_runtime.unit_of_work() as session:
        session.execute(insert(PinAttempt).values(
            token_label="tawqi-locked-1", failures=api_runtime.settings.pin_max_attempts,
            updated_at=api_runtime.clock.now()))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "tawqi_crl_next_update_timestamp_seconds{authority=" in text
    assert 'tawqi_certificates_expiring{days="30"}' in text
    assert "tawqi_token_lockouts 1.0" in text


def test_the_app_factory_assembles_the_delivery_blueprint(app: Flask,
                                                         api_runtime: Runtime) -> None:
    """Each resource module declares its operations on its own ``Routes``; importing one
    registers nothing, and every app gets a blueprint of its own with all of them, in the
    order of ``RESOURCES``."""
    import importlib

    import api.blueprints.delivery as package

    modules = [importlib.import_module(f"{package.__name__}.{name}")
               for name in package.RESOURCES]
    declared = [name for m in modules for name in m.routes.endpoints]
    assert not hasattr(package, "bp") and len(declared) == len(set(declared)) > 30
    bp = app.blueprints["delivery"]
    assert isinstance(bp, ApiBlueprint)
    assert [op.endpoint for op in bp.operations] == declared
    other = create_app(rt=api_runtime).blueprints["delivery"]
    assert other is not bp and [op.endpoint for op in other.operations] == declared
    assert app.url_map.bind("localhost").match("/v1/requests/7/renew", method="POST") == \
        ("delivery.renew", {"request_id": 7})
