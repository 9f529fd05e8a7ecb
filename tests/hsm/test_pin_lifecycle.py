"""Wrong-PIN counting, lockout, SO reset and PIN change, against SoftHSM2."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import (
    InMemoryPinAttemptStore,
    LoginRequired,
    PinIncorrect,
    PinLocked,
    PinPolicyViolation,
    TokenLibrary,
    check_pin_policy,
)
from tests.hsm_fixtures import HsmToken

pytestmark = pytest.mark.hsm

WRONG = "730519"


def _wrong_pin(right: str) -> str:
    return WRONG if right != WRONG else "840621"


def test_wrong_pin_counts_down_then_locks(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    wrong = _wrong_pin(pin)
    for left in (4, 3, 2, 1):
        with pytest.raises(PinIncorrect) as caught:
            library.check_pin(label, wrong)
        assert caught.value.extras["attempts_left"] == left
        assert caught.value.status == 403 and caught.value.type == "pin-incorrect"
    with pytest.raises(PinLocked) as locked:
        library.check_pin(label, wrong)
    assert locked.value.status == 423
    assert library.is_locked(label)
    with pytest.raises(PinLocked):
        library.check_pin(label, pin)  # the right PIN does not help any more
    with pytest.raises(PinLocked):
        library.private_key(label, pin, key_id=b"\x01")


def test_a_correct_pin_resets_the_count(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    wrong = _wrong_pin(pin)
    for _ in range(4):
        with pytest.raises(PinIncorrect):
            library.check_pin(label, wrong)
    library.check_pin(label, pin)
    with pytest.raises(PinIncorrect) as caught:
        library.check_pin(label, wrong)
    assert caught.value.extras["attempts_left"] == 4


def test_locked_token_signs_nothing_and_so_reset_recovers(hsm_token: HsmToken) -> None:
    library, label, so_pin, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\x01")
    key = library.private_key(label, pin, key_id=b"\x01")
    key.sign(b"before", ec.ECDSA(hashes.SHA256()))
    for _ in range(5):
        with pytest.raises((PinIncorrect, PinLocked)):
            library.check_pin(label, _wrong_pin(pin))
    with pytest.raises(PinLocked):
        key.sign(b"while locked", ec.ECDSA(hashes.SHA256()))

    new_pin = library.reset_pin(label, so_pin)
    check_pin_policy(new_pin)
    assert new_pin != pin
    assert not library.is_locked(label)
    with pytest.raises(PinIncorrect) as caught:
        library.check_pin(label, pin)  # the old PIN is gone
    assert caught.value.extras["attempts_left"] == 4
    key = library.private_key(label, new_pin, key_id=b"\x01")
    signature = key.sign(b"after", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"after", ec.ECDSA(hashes.SHA256()))


def test_lock_is_shared_through_the_attempt_store(softhsm_library: TokenLibrary,
                                                  hsm_token: HsmToken) -> None:
    """Two library objects (think: two worker processes) sharing one store see one lock."""
    store = InMemoryPinAttemptStore()
    first = TokenLibrary(softhsm_library.module_path, attempts=store)
    second = TokenLibrary(softhsm_library.module_path, attempts=store)
    try:
        label, pin = hsm_token.label, hsm_token.user_pin
        for _ in range(3):
            with pytest.raises(PinIncorrect):
                first.check_pin(label, _wrong_pin(pin))
        with pytest.raises(PinIncorrect):
            second.check_pin(label, _wrong_pin(pin))
        with pytest.raises(PinLocked):
            first.check_pin(label, _wrong_pin(pin))
        assert second.is_locked(label)
    finally:
        first.close()
        second.close()


def test_a_lock_set_elsewhere_stops_signing_within_the_recheck_window(
        hsm_token: HsmToken, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing re-reads the shared wrong-PIN count at most once a second per token; a lock
    reached in another process stops this process's signatures once that window passes."""
    import hsm.library

    monkeypatch.setattr(hsm.library, "_LOCK_RECHECK_SECONDS", 0.0)  # the window is over
    library, label, _so, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\x0a")
    key = library.private_key(label, pin, key_id=b"\x0a")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    key.sign(b"before", ec.ECDSA(hashes.SHA256()))
    store = library._attempts
    for _ in range(library.max_attempts):
        store.record_failure(label)  # as another worker's wrong PINs would
    with pytest.raises(PinLocked):
        key.sign(b"after", ec.ECDSA(hashes.SHA256()))


def test_wrong_so_pin_is_refused_and_not_counted_as_user_failure(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    with pytest.raises(PinIncorrect) as caught:
        library.reset_pin(label, "not-the-so-pin")
    assert caught.value.extras["role"] == "so"
    library.check_pin(label, pin)
    with pytest.raises(PinIncorrect) as counted:
        library.check_pin(label, _wrong_pin(pin))
    assert counted.value.extras["attempts_left"] == 4


def test_reset_pin_lengths(hsm_token: HsmToken) -> None:
    library, label, so_pin, _ = hsm_token
    new_pin = library.reset_pin(label, so_pin, length=8)
    assert len(new_pin) == 8
    library.check_pin(label, new_pin)


def test_change_pin(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.change_pin(label, pin, "590274")
    library.check_pin(label, "590274")
    with pytest.raises(PinIncorrect):
        library.check_pin(label, pin)


def test_change_pin_checks_the_new_pin_first(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    with pytest.raises(PinPolicyViolation):
        library.change_pin(label, pin, "111111")
    with pytest.raises(PinPolicyViolation):
        library.change_pin(label, _wrong_pin(pin), "123456")
    # neither attempt cost a try
    with pytest.raises(PinIncorrect) as caught:
        library.check_pin(label, _wrong_pin(pin))
    assert caught.value.extras["attempts_left"] == 4
    library.check_pin(label, pin)


def test_change_pin_with_wrong_old_pin_is_counted(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    with pytest.raises(PinIncorrect) as caught:
        library.change_pin(label, _wrong_pin(pin), "590274")
    assert caught.value.extras["attempts_left"] == 4
    library.check_pin(label, pin)


def test_a_wrong_pin_logs_the_token_out(hsm_token: HsmToken) -> None:
    """Each PIN check asks the token; a failed one leaves the token logged out, so keys
    obtained earlier need the PIN again."""
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\x01")
    key = library.private_key(label, pin, key_id=b"\x01")
    with pytest.raises(PinIncorrect):
        library.check_pin(label, _wrong_pin(pin))
    with pytest.raises(LoginRequired) as caught:
        key.sign(b"x", ec.ECDSA(hashes.SHA256()))
    assert caught.value.status == 401
    library.check_pin(label, pin)
    key.sign(b"x", ec.ECDSA(hashes.SHA256()))


def test_keys_stop_after_close_and_release(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k", key_id=b"\x01")
    key = library.private_key(label, pin, key_id=b"\x01")
    library.release(label)
    with pytest.raises(LoginRequired):
        key.sign(b"x", ec.ECDSA(hashes.SHA256()))
    key = library.private_key(label, pin, key_id=b"\x01")
    library.close()
    with pytest.raises(LoginRequired):
        key.sign(b"x", ec.ECDSA(hashes.SHA256()))


def test_pool_is_bounded(softhsm_library: TokenLibrary,
                         hsm_token_factory: object) -> None:
    library = TokenLibrary(softhsm_library.module_path, max_sessions=2)
    try:
        tokens = [hsm_token_factory() for _ in range(3)]  # type: ignore[operator]
        keys = []
        for token in tokens:
            library.generate_key_pair(token.label, token.user_pin, key_type="EC-P256",
                                      key_label="k", key_id=b"\x01")
            keys.append(library.private_key(token.label, token.user_pin, key_id=b"\x01"))
        with pytest.raises(LoginRequired):  # the least recently used token was evicted
            keys[0].sign(b"x", ec.ECDSA(hashes.SHA256()))
        for key in keys[1:]:
            key.sign(b"x", ec.ECDSA(hashes.SHA256()))
    finally:
        library.close()


def test_no_pin_in_errors(hsm_token: HsmToken) -> None:
    library, label, so_pin, pin = hsm_token
    wrong = _wrong_pin(pin)
    errors: list[Exception] = []
    for call in (lambda: library.check_pin(label, wrong),
                 lambda: library.reset_pin(label, "bad-so-pin-123"),
                 lambda: library.change_pin(label, wrong, "590274")):
        try:
            call()
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 3
    for error in errors:
        text = f"{error!r} {error} {error.to_dict()}"  # type: ignore[attr-defined]
        for secret in (pin, wrong, so_pin, "bad-so-pin-123", "590274"):
            assert secret not in text
    assert pin not in repr(library)
