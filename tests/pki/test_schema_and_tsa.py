"""The hand-written migration matches the models; the TSA refuses what it should."""

from __future__ import annotations

import hashlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from asn1crypto import tsp
from sqlalchemy.engine import Engine

import pki.models  # noqa: F401  (registers the tables on Base.metadata)
from core.db import Base
from pki import tsa
from pki.authority import Authority
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
