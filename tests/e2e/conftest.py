"""The browser harness of the web tests: Debian's Chromium driven by Playwright against the
app served on 127.0.0.1 by werkzeug in a thread, over the test database and SoftHSM2
runtime of the API tests, with the scene of tests/delivery/oversight_scene.py.

:func:`check` runs axe-core (npm registry, installed by ``make axe`` into var/node; the
fixture installs it when missing) on the page and fails on any serious or critical
violation, then saves a screenshot under ``$TAWQI_WEB_SHOTS`` (default var/screenshots).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from core.clock import FrozenClock
from delivery import envelopes
from delivery.envelopes import provision_envelope_key
from delivery.models import ENVELOPE_INITIAL_PIN, CertificateRequest
from hsm import generate_pin
from tests.api.conftest import PASSWORD, api_runtime, app, make_user  # noqa: F401
from tests.delivery import oversight_scene
from tests.delivery.oversight_scene import HERE

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "var" / "node"
AXE_JS = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("TAWQI_WEB_SHOTS", ROOT / "var" / "screenshots"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: axe impacts that fail a page.
BLOCKING = ("serious", "critical")


def axe_script() -> Path:
    """axe-core's script, installed from the npm registry when missing (as ``make axe``)."""
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is missing: run scripts/system-deps.sh (Debian nodejs)")
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                        str(NODE_DIR), "axe-core@4"], check=True, timeout=300)
    return AXE_JS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield found
        found.close()


@dataclass
class Site:
    url: str
    rt: Runtime
    scene: Any
    shots: Path


@pytest.fixture
def site(app: Flask, api_runtime: Runtime, clock: FrozenClock) -> Iterator[Site]:  # noqa: F811
    settings = api_runtime.settings
    # the envelope token seals the codes and PINs the journeys send
    provision_envelope_key(api_runtime.tokens(), token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)
    with api_runtime.unit_of_work() as session:
        scene = oversight_scene.build(session, clock)
        # the scene personalises through the state machine: seal the PIN each token was
        # given, as personalisation does, so that a hand-over can send it
        sealer = app_wiring(app).sealer()
        for request_id in (scene.request_in_transit, scene.request_overdue):
            found = session.get_one(CertificateRequest, request_id)
            found.pin_envelope_id = envelopes.seal(
                session, clock, sealer, purpose=ENVELOPE_INITIAL_PIN,
                holder_id=found.holder_id, secret=generate_pin(8)).id
    for username, role, province in (("admin", "dgcl_admin", None),
                                     ("operator", "operator", None),
                                     ("contact", "contact", HERE)):
        make_user(api_runtime, app, username, role, province_code=province)
    make_user(api_runtime, app, "holder.c", "holder", holder_id=scene.holder_c.id)
    with serve(app) as url:
        yield Site(url, api_runtime, scene, SHOTS)


@contextmanager
def serve(application: Flask) -> Iterator[str]:
    """The app on 127.0.0.1 (werkzeug, one thread: SoftHSM2 calls stay serialised)."""
    server = make_server("127.0.0.1", 0, application, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # bypass_csp: our CSP forbids scripts, axe-core is injected by the test only
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    yield context.new_page()
    context.close()


def login(page: Page, site: Site, username: str) -> None:
    page.goto(f"{site.url}/web/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def set_lang(page: Page, site: Site, lang: str) -> None:
    """Choose the language as a person does: the switch in the header."""
    # A click just before (a login form) may still be loading its page: read the language
    # of the page it leads to, not of the one it leaves.
    page.wait_for_load_state()
    if page.locator("html").get_attribute("lang") != lang:
        page.click("#lang-switch")
        # documentElement is null for an instant while the next page replaces this one
        page.wait_for_function("(lang) => document.documentElement !== null"
                               " && document.documentElement.lang === lang", arg=lang)


def check(page: Page, site: Site, name: str) -> None:
    """axe-core finds no serious or critical violation on the page as shown; the
    screenshot is saved as ``<name>-<lang>.png``."""
    lang = page.locator("html").get_attribute("lang") or "fr"
    page.add_script_tag(path=str(axe_script()))
    result = page.evaluate("async () => { const r = await axe.run(document, "
                           "{resultTypes: ['violations']}); return r.violations; }")
    blocking = [{"id": v["id"], "impact": v["impact"],
                 "nodes": [n["target"] for n in v["nodes"]][:5]}
                for v in result if v.get("impact") in BLOCKING]
    page.screenshot(path=str(site.shots / f"{name}-{lang}.png"), full_page=True)
    assert not blocking, f"{name} ({lang}): " + json.dumps(blocking, ensure_ascii=False)


def fonts(page: Page) -> set[str]:
    """The font families the page loaded (from our @font-face rules)."""
    found: list[str] = page.evaluate(
        "async () => { await document.fonts.ready; return [...document.fonts]"
        ".filter(f => f.status === 'loaded').map(f => f.family.replaceAll('\"', '')); }")
    return set(found)


def fits(page: Page, width: int = 390, shot: str | None = None) -> None:
    """At a phone's width the page itself does not scroll sideways: tables scroll in their
    box. ``shot``: also save the page at that width as ``<shot>-<lang>-<width>.png``."""
    page.set_viewport_size({"width": width, "height": 800})
    wide = page.evaluate("document.documentElement.scrollWidth")
    if shot is not None:
        lang = page.locator("html").get_attribute("lang") or "fr"
        page.screenshot(path=str(SHOTS / f"{shot}-{lang}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    assert wide <= width, f"the page is {wide} px wide at {width} px"
