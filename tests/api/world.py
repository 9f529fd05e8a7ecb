"""A small delivery world for the API tests: contacts, holders, requests and batches in two
provinces, on the real token layer. The CA and the envelope key are created on this test's
SoftHSM2 tokens, and the app's own collaborators (``api.wiring``: the CA authority, the
envelope sealer, the token personaliser) personalise the shipped tokens: a key generated on
each token, a certificate issued by the test's CA, the PIN sealed on the envelope token."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from api import accounts
from api.runtime import Runtime
from api.wiring.flaskapp import wiring as app_wiring
from delivery import batches, personalisation, requests
from delivery.policy import DeliveryPolicy
from tests.api.conftest import OTHER_PROVINCE, PROVINCE, Caller, provision_service_tokens
from tests.delivery.conftest import make_contact, make_holder

COMMUNE_HERE = "01.051.03.01"
COMMUNE_THERE = "01.151.01.01"


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


def build(rt: Runtime, app: Flask, callers: dict[str, Caller]) -> World:
    """Two provinces, each with a contact, a holder with a submitted request and another
    holder whose device token is personalised and in the province's open batch. The
    ``holder`` caller is linked to the first province's holder."""
    provision_service_tokens(rt)
    wiring = app_wiring(app)
    policy: DeliveryPolicy = wiring.policy
    with app.app_context():  # the CA keys are loaded as a request would, before any work
        personaliser = wiring.personaliser()
        sealer = wiring.sealer()
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
                                                personaliser=personaliser,
                                                sealer=sealer, actor="test",
                                                policy=policy)
            batch = batches.prepare_batch(session, clock, contact.province_code, actor="test")
            ids[f"batch_{name}"] = batch.id
        accounts.link_holder(session, clock, callers["holder"].principal_id,
                             ids["holder_here"], actor="test")
        callers["holder"].holder_id = ids["holder_here"]
        return World(here.id, there.id, ids["holder_here"], ids["holder_there"],
                     ids["request_here"], ids["request_there"], ids["batch_here"],
                     ids["batch_there"], cin_here)
