"""The test PKI, generated once per test session and database backend.

Root -> issuing CA -> OCSP responder, TSA -> holders (one good, one revoked after the
elections, one suspended), every key on SoftHSM2 tokens of a token directory that belongs
to this fixture, every row in a database of its own (so the shared test databases keep
their audit chains to themselves).

SoftHSM2 reads its configuration when the module is initialised, and other tests switch it
to their own token directories; the function-scoped fixtures below switch it back (the
tokens are files, so nothing is lost) and load fresh key handles.

The clock is frozen, at the minute the session started: openssl and pkilint judge validity
against the real time, so the PKI must be valid now.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.clock import FrozenClock
from core.db import make_engine, make_session_factory, transaction
from core.migrate import upgrade
from hsm import InMemoryPinAttemptStore, TokenLibrary, default_module_path, generate_pin
from hsm.softhsm import use_config, write_softhsm_config
from pki import ca, issuance, lifecycle
from pki.authority import Authority
from pki.profiles import DOCUMENTATION_POLICY_OID, HolderIdentity, Profile

ACTOR = "test"
PUBLIC_URL = "http://pki.tawqi.ma"  # a public name: ETSI linting refuses internal ones
POLICY_OID = DOCUMENTATION_POLICY_OID

HOLDERS = {
    "good": HolderIdentity(cin="AB123456", given_name="Fatima Zahra", surname="El Idrissi",
                           title="Présidente du conseil communal",
                           organization="Commune de Tiznit"),
    "revoked": HolderIdentity(cin="K12345", given_name="Mohamed", surname="Benali",
                              title="Président du conseil communal",
                              organization="جماعة أكادير"),
    "suspended": HolderIdentity(cin="JB998877", given_name="Nadia", surname="Ait Lahcen",
                                title="Chef de service",
                                organization="Services déconcentrés — Province de Tiznit"),
}


@dataclass
class World:
    engine: Engine
    conf: Path
    module: str
    library: TokenLibrary
    clock: FrozenClock
    profile: Profile
    so_pin: str
    pin: str
    root_pin: str
    init: ca.InitResult
    holder_pins: dict[str, str] = field(default_factory=dict)
    holder_tokens: dict[str, str] = field(default_factory=dict)
    serials: dict[str, str] = field(default_factory=dict)
    tmp: Path = Path()

    def activate(self) -> None:
        """Make this PKI's token directory the module's configuration again."""
        if os.environ.get("SOFTHSM2_CONF") != str(self.conf):
            use_config(self.conf, self.module)

    def authority(self, session: Session) -> Authority:
        self.activate()
        return ca.load_authority(session, self.library, self.profile, pin=self.pin)

    @property
    def root(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.init.root_der)

    @property
    def issuing(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.init.issuing_der)

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM)
                        for c in (self.issuing, self.root))

    def new_holder_token(self) -> tuple[str, str]:
        self.activate()
        label = f"holder-{secrets.token_hex(4)}"
        pin = generate_pin(6)
        self.library.init_token(label, self.so_pin, pin)
        return label, pin


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def pki_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('pki-db') / 'pki.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("postgres_server_url")
    name = f"tawqi_pki_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=10, max_overflow=10)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pki_world(pki_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    module = default_module_path()
    if not os.path.isfile(module):
        pytest.fail(f"SoftHSM2 module not found at {module} (apt install softhsm2)")
    tmp = tmp_path_factory.mktemp("pki")
    conf = write_softhsm_config(tmp / "softhsm")
    use_config(conf, module)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    library = TokenLibrary(module, attempts=InMemoryPinAttemptStore())
    clock = FrozenClock(datetime.now(UTC).replace(second=0, microsecond=0))
    profile = Profile(public_url=PUBLIC_URL, policy_oid=POLICY_OID)
    so_pin, pin, root_pin = secrets.token_hex(8), generate_pin(8), generate_pin(8)
    sessions = make_session_factory(pki_engine)
    with transaction(sessions) as session:
        init = ca.init_ca(session, clock, library, profile, root_token="tawqi-root",
                          ca_token="tawqi-ca", so_pin=so_pin, pin=pin, root_pin=root_pin,
                          actor=ACTOR)
    world = World(pki_engine, conf, module, library, clock, profile, so_pin, pin, root_pin,
                  init, tmp=tmp)
    for name, holder in HOLDERS.items():
        label, holder_pin = world.new_holder_token()
        with transaction(sessions) as session:
            authority = world.authority(session)
            issued = issuance.issue_holder_certificate(
                session, clock, authority, library, token_label=label, token_pin=holder_pin,
                holder=holder, actor=ACTOR)
        world.holder_pins[name] = holder_pin
        world.holder_tokens[name] = label
        world.serials[name] = issued.serial
    with transaction(sessions) as session:
        authority = world.authority(session)
        lifecycle.revoke(session, clock, authority, world.serials["revoked"],
                         "affiliation-changed", actor=ACTOR)
        lifecycle.suspend(session, clock, authority, world.serials["suspended"], actor=ACTOR)
    yield world
    library.close()


@pytest.fixture
def world(pki_world: World) -> World:
    pki_world.activate()
    return pki_world


@pytest.fixture
def pki_session(pki_world: World) -> Iterator[Session]:
    """A session on the PKI's database, rolled back after the test (commits included)."""
    connection = pki_world.engine.connect()
    outer = connection.begin()
    db_session = Session(bind=connection, join_transaction_mode="create_savepoint",
                         expire_on_commit=False)
    try:
        yield db_session
    finally:
        db_session.close()
        outer.rollback()
        connection.close()


def same_connection(session: Session) -> sessionmaker[Session]:
    """Sessions that see ``session``'s uncommitted work (savepoints on its connection)."""
    return sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint",
                        expire_on_commit=False)


@pytest.fixture
def authority(world: World, pki_session: Session) -> Authority:
    return world.authority(pki_session)


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write
