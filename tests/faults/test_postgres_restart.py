"""PostgreSQL restarts under load: requests fail cleanly with 503 while it is down, the service
recovers without being restarted, and no write it acknowledged is lost.

A throwaway cluster of this test's own (it is restarted, so never the shared server), the real
application under a threaded WSGI server on 127.0.0.1, client threads writing holders over
HTTP while the cluster is restarted with ``pg_ctl restart -m fast``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from api.app import create_app
from api.runtime import Runtime
from core.db import make_session_factory
from delivery.contacts import ContactDesignation, designate_contact
from delivery.models import Holder
from tests.api.conftest import COMMUNE, PROVINCE, make_settings, make_user
from tests.conftest import prepare_database
from tests.pgcluster import ThrowawayCluster, _bin

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WRITERS = 4
WRITES_PER_WRITER = 40  # bounded: the test stops by itself


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    started = ThrowawayCluster().start()
    try:
        yield started
    finally:
        started.stop()


def _restart(cluster: ThrowawayCluster) -> None:
    subprocess.run([*cluster._as_user, _bin("pg_ctl"), "-D", str(cluster.directory / "data"),
                    "-l", str(cluster.directory / "log"), "-m", "fast", "-w", "restart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)  # with a log file: the new server must not hold our pipes


def _postmaster_start(url: str) -> datetime:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            started: datetime = conn.scalar(text("SELECT pg_postmaster_start_time()"))
            return started
    finally:
        engine.dispose()


def _holder(writer: int, n: int) -> dict[str, str]:
    return {"cin": f"R{writer}{n:05d}", "given_name_fr": "Karim", "surname_fr": "Benali",
            "given_name_ar": "كريم", "surname_ar": "بنعلي", "role": "official",
            "mobile": f"06612{writer}{n:04d}", "email": f"w{writer}.n{n}@example.ma",
            "commune_code": COMMUNE}


def test_restart_under_load_loses_no_acknowledged_write(cluster: ThrowawayCluster,
                                                        tmp_path: Path) -> None:
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "tawqi_restart"'))
    admin.dispose()
    url = make_url(cluster.url).set(database="tawqi_restart").render_as_string(
        hide_password=False)
    rt = Runtime(make_settings(tmp_path, database_url=url))
    prepare_database(rt.engine)
    app = create_app(rt=rt)
    with rt.unit_of_work() as session:
        designate_contact(session, rt.clock, ContactDesignation(
            province_code=PROVINCE, full_name="Samira El Idrissi", title="Cheffe de division",
            phone="0539981234", postal_address="Province d'Al Hoceima, BP 1",
            email="contact.alhoceima@interieur.gov.ma", decision_reference="DEC-2026-017",
            decision_date=date(2026, 2, 1), designated_by="Le gouverneur"), actor="test")
    contact = make_user(rt, app, "contact.restart", "contact", province_code=PROVINCE)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.server_port}"
    started_at = _postmaster_start(cluster.url)

    acknowledged: list[str] = []
    refused: list[tuple[int, str]] = []
    lock = threading.Lock()
    halfway = threading.Event()

    def writer(index: int) -> None:
        with requests.Session() as http:
            for n in range(WRITES_PER_WRITER):
                if n == WRITES_PER_WRITER // 3:
                    halfway.set()
                body = _holder(index, n)
                try:
                    reply = http.post(f"{base}/v1/holders", json=body,
                                      headers=contact.headers, timeout=30)
                except requests.RequestException as exc:  # the server itself must not fail
                    with lock:
                        refused.append((0, type(exc).__name__))
                    continue
                with lock:
                    if reply.status_code == 201:
                        acknowledged.append(reply.json()["cin"])
                    else:
                        refused.append((reply.status_code,
                                        reply.headers.get("Content-Type", "") + reply.text))
                time.sleep(0.01)

    try:
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        assert halfway.wait(60)
        _restart(cluster)
        assert _postmaster_start(cluster.url) > started_at  # it really went down and up
        for thread in threads:
            thread.join(300)
        assert not any(thread.is_alive() for thread in threads)

        # Refusals while the database was away are clean 503 problems, nothing else.
        assert all(status == 503 and "problem+json" in kind for status, kind in refused), \
            refused[:5]
        # The same process serves again, without a restart of its own.
        again = requests.post(f"{base}/v1/holders", json=_holder(9, 1),
                              headers=contact.headers, timeout=30)
        assert again.status_code == 201, again.text
        # Every acknowledged write survived.
        with make_session_factory(rt.engine)() as session:
            stored = set(session.scalars(select(Holder.cin)))
        assert set(acknowledged) <= stored
        assert len(acknowledged) + len(refused) == WRITERS * WRITES_PER_WRITER
        assert len(acknowledged) > WRITERS * WRITES_PER_WRITER // 2
    finally:
        server.shutdown()
        serving.join(10)
        rt.close()
