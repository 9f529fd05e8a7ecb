"""64 requests at once with one Idempotency-Key (issue 10 point 7): one does the work, the
others wait for it and replay its response; none gets a 409.

The app runs over a database of its own whose transactions really commit (the rolled-back
test connection of ``api_runtime`` cannot be shared by threads), dropped afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from api.app import create_app
from api.runtime import Runtime
from api.wiring.flaskapp import runtime
from core.clock import FrozenClock
from core.db import make_engine
from delivery.models import Holder
from hsm import TokenLibrary
from tests.api.conftest import PROVINCE, make_settings, make_user
from tests.conftest import _drop_postgres, _fresh_postgres, prepare_database
from tests.delivery.conftest import make_contact

COMMUNE = "01.051.01.01"
THREADS = 64
CONNECTIONS = 16
HOLDER = {"cin": "KA123456", "given_name_fr": "Karima", "surname_fr": "Alaoui",
          "given_name_ar": "كريمة", "surname_ar": "العلوي", "role": "president",
          "mobile": "0661234567", "email": "k.alaoui@example.ma", "commune_code": COMMUNE}


@pytest.fixture(params=["sqlite", "postgresql"])
def committed_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'committed.db'}")
        prepare_database(engine)
        yield engine
        engine.dispose()
        return
    server_url = request.getfixturevalue("postgres_server_url")
    name, created = _fresh_postgres(server_url)
    url = created.url.render_as_string(hide_password=False)
    created.dispose()
    # The PostgreSQL server is shared (100 connections): 64 threads queue for 16 of them.
    engine = make_engine(url, pool_size=CONNECTIONS, max_overflow=0, pool_timeout=120)
    try:
        prepare_database(engine)
        yield engine
    finally:
        engine.dispose()
        _drop_postgres(server_url, name)


@pytest.fixture
def committed_app(committed_engine: Engine, tmp_path: Path, clock: FrozenClock,
                  softhsm_library: TokenLibrary, softhsm_module_path: str) -> Flask:
    rt = Runtime(make_settings(tmp_path, pkcs11_module=softhsm_module_path), clock=clock,
                 engine=committed_engine, tokens=softhsm_library)
    app = create_app(rt=rt)
    app.testing = False
    return app


def test_concurrent_replays_get_the_stored_response(committed_app: Flask) -> None:
    app = committed_app
    rt = runtime(app)
    with rt.unit_of_work() as session:
        make_contact(session, rt.clock, PROVINCE)  # the province's designated contact
    contact = make_user(rt, app, "contact", "contact", province_code=PROVINCE)
    headers = {**contact.headers, "Idempotency-Key": "holder-KA123456"}
    start = threading.Barrier(THREADS)

    def create(_: int) -> tuple[int, object, str | None]:
        client = app.test_client()
        start.wait()
        response = client.post("/v1/holders", json=HOLDER, headers=headers)
        return (response.status_code, response.get_json(),
                response.headers.get("Idempotent-Replayed"))

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(create, range(THREADS)))
    statuses = sorted({status for status, _, _ in results})
    assert statuses == [201], [r for r in results if r[0] != 201][:3]
    bodies = {str(body) for _, body, _ in results}
    assert len(bodies) == 1  # every caller sees the one holder created
    assert sum(replayed == "true" for _, _, replayed in results) == THREADS - 1
    with rt.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Holder).where(
            Holder.cin == HOLDER["cin"])) == 1
    # The same key with another body is still refused.
    other = app.test_client().post("/v1/holders", json={**HOLDER, "surname_fr": "Autre"},
                                   headers=headers)
    assert other.status_code == 422
    assert other.get_json()["type"].endswith("/idempotency-key-reused")
