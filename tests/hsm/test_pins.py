"""PIN policy, PIN generation and the in-memory attempt store (no token needed)."""

from __future__ import annotations

import threading

import pytest

from hsm import (
    InMemoryPinAttemptStore,
    InvalidRequest,
    PinAttemptStore,
    PinPolicyViolation,
    check_pin_policy,
    generate_pin,
)


@pytest.mark.parametrize("pin", ["482915", "7302519", "90817263", "139024", "550381"])
def test_policy_accepts_ordinary_pins(pin: str) -> None:
    check_pin_policy(pin)


@pytest.mark.parametrize(("pin", "reason"), [
    ("", "length"),
    ("48291", "length"),
    ("482915067", "length"),
    ("48a915", "digits-only"),
    ("\uff14\uff18\uff12\uff19\uff11\uff15", "digits-only"),  # full-width digits
    ("000000", "repeated-digit"),
    ("99999999", "repeated-digit"),
    ("123456", "sequence"),
    ("654321", "sequence"),
    ("12345678", "sequence"),
    ("890123", "sequence"),
    ("3210987", "sequence"),
    ("121212", "repeated-pattern"),
    ("123123", "repeated-pattern"),
    ("12341234", "repeated-pattern"),
    ("909090", "repeated-pattern"),
    ("111112", "too-few-digits"),
    ("112211", "too-few-digits"),
])
def test_policy_refuses(pin: str, reason: str) -> None:
    with pytest.raises(PinPolicyViolation) as caught:
        check_pin_policy(pin)
    error = caught.value
    assert error.extras["reason"] == reason
    assert error.status == 422 and error.type == "pin-policy"
    if pin:
        assert pin not in error.detail and pin not in repr(error)


def test_policy_refuses_non_strings() -> None:
    with pytest.raises(PinPolicyViolation):
        check_pin_policy(123456)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [6, 7, 8])
def test_generated_pins_satisfy_the_policy(length: int) -> None:
    pins = {generate_pin(length) for _ in range(200)}
    for pin in pins:
        assert len(pin) == length
        check_pin_policy(pin)
    assert len(pins) > 190  # random, not a fixed list


@pytest.mark.parametrize("length", [0, 5, 9])
def test_generate_pin_refuses_lengths_outside_the_policy(length: int) -> None:
    with pytest.raises(InvalidRequest):
        generate_pin(length)


def test_in_memory_store_counts_and_resets() -> None:
    store = InMemoryPinAttemptStore()
    assert isinstance(store, PinAttemptStore)
    assert store.failures("a") == 0
    assert [store.record_failure("a") for _ in range(3)] == [1, 2, 3]
    assert store.failures("b") == 0
    store.reset("a")
    assert store.failures("a") == 0


def test_in_memory_store_counts_every_concurrent_failure() -> None:
    store = InMemoryPinAttemptStore()

    def fail() -> None:
        for _ in range(500):
            store.record_failure("t")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.failures("t") == 4000


def test_in_memory_store_reserves_up_to_the_maximum_and_refunds() -> None:
    store = InMemoryPinAttemptStore()
    assert [store.reserve("t", 3) for _ in range(4)] == [1, 2, 3, None]
    assert store.failures("t") == 3  # the refused reservation wrote nothing
    store.refund("t")
    assert store.reserve("t", 3) == 3
    store.reset("t")
    store.refund("t")  # never below zero
    assert store.failures("t") == 0


def test_in_memory_store_never_reserves_past_the_maximum_under_threads() -> None:
    store = InMemoryPinAttemptStore()
    granted: list[int] = []

    def attempt() -> None:
        for _ in range(200):
            count = store.reserve("t", 5)
            if count is not None:
                granted.append(count)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(granted) == [1, 2, 3, 4, 5]
    assert store.failures("t") == 5
