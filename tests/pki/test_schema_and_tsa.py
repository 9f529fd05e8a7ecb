"""The hand-written migration matches the models; the TSA refuses what it should."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from asn1crypto import tsp
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import pki.models  # (registers the tables on Base.metadata)
import pki.signing.models  # noqa: F401  (its tables too, whatever ran before)
from core.db import Base
from pki import tsa
from pki.authority import Authority
from pki.signer import to_asn1
from pki.signing.pades import RecordsRevocation
from tests.pki.conftest import World


def _pki_only(diff: object) -> bool:
    text = repr(diff)
    return "pki_" in text


def test_migration_matches_models(pki_engine: Engine) -> None:
    with pki_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, Base.metadata) if _pki_only(d)]
    assert diffs == []


def _request(digest: bytes, algorithm: str = "sha256", **extra: object) -> bytes:
    return tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest},
        "cert_req": True, **extra}).dump()


@pytest.mark.hsm
def test_tsa_grants_and_refuses(world: World, authority: Authority) -> None:
    signer = authority.tsa_signer
    assert signer is not None
    policy = world.profile.policy_oid + ".3"
    granted = tsa.timestamp(signer, world.clock, _request(hashlib.sha256(b"x").digest(),
                                                          nonce=42), policy_oid=policy)
    assert granted.granted and granted.gen_time == world.clock.now().replace(microsecond=0)
    info = tsp.TimeStampResp.load(granted.der)["time_stamp_token"]["content"][
        "encap_content_info"]["content"].parsed
    assert info["nonce"].native == 42 and info["policy"].native == policy
    cases = {
        "bad_alg": _request(hashlib.sha1(b"x").digest(), "sha1"),
        "bad_data_format": _request(b"short"),
        "unaccepted_policy": _request(hashlib.sha256(b"x").digest(), req_policy="1.2.3"),
    }
    for failure, der in cases.items():
        result = tsa.timestamp(signer, world.clock, der, policy_oid=policy)
        assert not result.granted and result.failure == failure
        status = tsp.PKIStatusInfo.load(result.der[2:])  # SEQUENCE { status } (short form)
        assert status["status"].native == "rejection"
        assert failure in status["fail_info"].native
    assert tsa.timestamp(signer, world.clock, b"junk", policy_oid=policy).failure == \
        "bad_data_format"


@pytest.mark.hsm
def test_tsa_token_lets_an_offline_validator_build_the_chain(
        world: World, authority: Authority, pki_session: Session) -> None:
    """B-T for decades: the token carries the TSA's issuing chain, so pyHanko's validator,
    offline and holding only our root as trust anchor, trusts the time-stamp."""
    signer = authority.tsa_signer
    assert signer is not None
    digest = hashlib.sha256(b"permit").digest()
    granted = tsa.timestamp(signer, world.clock, _request(digest),
                            policy_oid=world.profile.policy_oid + ".3")
    token = tsp.TimeStampResp.load(granted.der)["time_stamp_token"]
    carried = {c.chosen.sha256 for c in token["content"]["certificates"]}
    assert to_asn1(world.issuing).sha256 in carried
    revocation = RecordsRevocation(pki_session, world.clock).revocation_data(
        signer.full_chain())
    context = ValidationContext(trust_roots=[to_asn1(world.root)], allow_fetching=False,
                                ocsps=list(revocation.ocsps), crls=list(revocation.crls),
                                revocation_mode="hard-fail", moment=world.clock.now())
    status = asyncio.run(validate_tst_signed_data(token["content"], context,
                                                  lambda _algorithm: digest))
    assert status["intact"] and status["valid"], status
    path = status["validation_path"]  # built and validated up to our root
    assert path is not None and path.trust_anchor.authority.public_key.dump() == \
        to_asn1(world.root).public_key.dump()
    assert status.get("trust_problem_indic") is None
