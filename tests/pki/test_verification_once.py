"""A signature is validated once: when the AdES validation at the current time passes with a
good path, the report's statuses at signing time and now come from it, with no further path
validation; otherwise (revoked since) both statuses are validated on their own."""

from __future__ import annotations

from typing import Any

import pytest

from pki.signing.pades import Level
from pki.signing.verification import Verifier
from tests.pki.test_validation import pki, signed, verifier  # noqa: F401 - fixtures


def _count_status_checks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    original = Verifier._cert_status

    async def counting(self: Verifier, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("historical"))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Verifier, "_cert_status", counting)
    return calls


@pytest.mark.parametrize("level", [lv.value for lv in Level])
def test_a_passed_signature_is_validated_once(pki, signed, level: str,  # type: ignore[no-untyped-def]  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_status_checks(monkeypatch)
    (sig,) = verifier(pki).verify(signed[level]).signatures
    assert sig.indication == "TOTAL-PASSED"
    assert (sig.certificate_at_signing.status, sig.certificate_now.status) == ("good", "good")
    assert calls == []


def test_a_certificate_revoked_since_gets_both_statuses_validated(  # type: ignore[no-untyped-def]
        pki, signed, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    calls = _count_status_checks(monkeypatch)
    (sig,) = verifier(pki).verify(signed["revoked"]).signatures
    assert sig.certificate_now.status == "revoked"
    assert sorted(calls) == [False, True]
