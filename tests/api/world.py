"""A small delivery world for the API tests: contacts, holders, requests and batches in two
provinces, with stand-ins for the token layer (the hsm, pki and delivery suites test the
real ones; the end-to-end HTTP flow uses SoftHSM)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from flask import Flask
from sqlalchemy.orm import Session

from api import accounts, services
from api.runtime import Runtime
from core.clock import Clock
from delivery import batches, personalisation, requests
from delivery.holders import HolderProfile
from delivery.personalisation import PersonalisedToken
from delivery.policy import DeliveryPolicy
from tests.api.conftest import OTHER_PROVINCE, PROVINCE, Caller
from tests.delivery.conftest import make_contact, make_holder

COMMUNE_HERE = "01.051.03.01"
COMMUNE_THERE = "01.151.01.01"


class FakeSealer:
    """Reversible, keyed by the AAD: enough for tests that never open a real envelope."""

    key_label = "test-envelope"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        pad = hashlib.sha256(aad).digest()
        return bytes(b ^ pad[i % len(pad)] for i, b in enumerate(plaintext))

    def open(self, blob: bytes, aad: bytes) -> bytes:
        return self.seal(blob, aad)


class FakePersonaliser:
    def __init__(self) -> None:
        self.calls = 0

    def personalise(self, session: Session, clock: Clock, *, holder: HolderProfile,
                    token_label: str, pin: str, actor: str) -> PersonalisedToken:
        self.calls += 1
        return PersonalisedToken(token_label, secrets.token_hex(8), None)


@dataclass
class World:
    contact_here: int
    contact_there: int
    holder_here: int
    holder_there: int
    request_here: int
    request_there: int
    batch_here: int
    batch_there: int
    holder_here_cin: str


class FakeAuthority:
    """Never reached for an unknown serial (the lifecycle refuses before signing)."""

    id = -1


def install_fakes(app: Flask) -> FakePersonaliser:
    personaliser = FakePersonaliser()
    services.install(app, sealer=FakeSealer(), personaliser=personaliser,
                     authority=FakeAuthority)
    return personaliser


def build(rt: Runtime, app: Flask, callers: dict[str, Caller]) -> World:
    """Two provinces, each with a contact, a holder with a submitted request and another
    holder whose device token is personalised and in the province's open batch. The
    ``holder`` caller is linked to the first province's holder."""
    install_fakes(app)
    wiring = services.services(app)
    policy: DeliveryPolicy = wiring.policy
    with rt.unit_of_work() as session:
        clock = rt.clock
        here = make_contact(session, clock, PROVINCE)
        there = make_contact(session, clock, OTHER_PROVINCE,
                             email="contact.chefchaouen@interieur.gov.ma")
        ids: dict[str, int] = {}
        for name, contact, commune in (("here", here, COMMUNE_HERE),
                                       ("there", there, COMMUNE_THERE)):
            holder = make_holder(session, clock, commune, contact=contact)
            ids[f"holder_{name}"] = holder.id
            if name == "here":
                cin_here = holder.cin
            submitted = requests.submit_request(session, clock, contact_id=contact.id,
                                                holder_id=holder.id, token_form="device",
                                                actor="test", year=2026)
            ids[f"request_{name}"] = submitted.id
            shipped_holder = make_holder(session, clock, commune, contact=contact,
                                         role="official")
            other = requests.submit_request(session, clock, contact_id=contact.id,
                                            holder_id=shipped_holder.id, token_form="device",
                                            actor="test", year=2026)
            requests.approve_request(session, clock, other.id, actor="test",
                                     identity_check="CIN checked")
            personalisation.personalise_request(session, clock, other.id,
                                                personaliser=wiring.personaliser(),
                                                sealer=wiring.sealer(), actor="test",
                                                policy=policy)
            batch = batches.prepare_batch(session, clock, contact.province_code, actor="test")
            ids[f"batch_{name}"] = batch.id
        accounts.link_holder(session, clock, callers["holder"].principal_id,
                             ids["holder_here"], actor="test")
        callers["holder"].holder_id = ids["holder_here"]
        return World(here.id, there.id, ids["holder_here"], ids["holder_there"],
                     ids["request_here"], ids["request_there"], ids["batch_here"],
                     ids["batch_there"], cin_here)
