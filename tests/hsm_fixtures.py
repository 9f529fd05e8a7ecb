"""Pytest fixtures for anything that needs a token: a fresh SoftHSM2 token directory per test.

Enabled for the whole suite by ``pytest_plugins = ["tests.hsm_fixtures"]`` in
``tests/conftest.py``. Fixtures:

* ``softhsm_library`` -> :class:`hsm.TokenLibrary` over a SoftHSM2 configuration written
  under this test's ``tmp_path`` (its own, empty token directory).
* ``hsm_token`` -> :class:`HsmToken` ``(library, label, so_pin, user_pin)``: one initialised
  token with random PINs, on ``softhsm_library``.
* ``hsm_token_factory`` -> ``make(label=None) -> HsmToken`` for tests that need several tokens
  (a CA token, an OCSP responder token, holders ...), all on the same ``softhsm_library``.

Why per-test is real here: SoftHSM2 reads ``SOFTHSM2_CONF`` in C_Initialize, so each test
points the variable at its own file and the module is finalised and initialised again in
this process (:func:`hsm.softhsm.use_config`). Consequence: token objects do not survive a
test; fixtures that hold keys must be function-scoped.

A missing SoftHSM2 fails the tests (``make test`` and CI must run them); set
``TAWQI_SKIP_HSM=1`` to skip them instead on a machine without SoftHSM2.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from hsm import InMemoryPinAttemptStore, TokenLibrary, default_module_path, generate_pin
from hsm.softhsm import use_config, write_softhsm_config


class HsmToken(NamedTuple):
    library: TokenLibrary
    label: str
    so_pin: str
    user_pin: str


@pytest.fixture(scope="session")
def softhsm_module_path() -> str:
    path = default_module_path()
    if not os.path.isfile(path):
        message = f"SoftHSM2 module not found at {path} (apt install softhsm2)"
        if os.environ.get("TAWQI_SKIP_HSM") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return path


@pytest.fixture
def softhsm_conf(tmp_path: Path, softhsm_module_path: str,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SoftHSM2 configuration (own token directory), active in this process."""
    conf = write_softhsm_config(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    use_config(conf, softhsm_module_path)
    return conf


@pytest.fixture
def softhsm_library(softhsm_conf: Path, softhsm_module_path: str) -> Iterator[TokenLibrary]:
    library = TokenLibrary(softhsm_module_path, attempts=InMemoryPinAttemptStore())
    try:
        yield library
    finally:
        library.close()


@pytest.fixture
def hsm_token_factory(softhsm_library: TokenLibrary) -> Callable[..., HsmToken]:
    def make(label: str | None = None) -> HsmToken:
        label = label or f"test-{secrets.token_hex(6)}"
        so_pin = secrets.token_hex(8)
        user_pin = generate_pin(8)
        softhsm_library.init_token(label, so_pin, user_pin)
        return HsmToken(softhsm_library, label, so_pin, user_pin)
    return make


@pytest.fixture
def hsm_token(hsm_token_factory: Callable[..., HsmToken]) -> HsmToken:
    return hsm_token_factory()
