"""PIN policy, PIN generation and the wrong-PIN counter protocol.

The counter lives with the service (SoftHSM2 does not lock a token after wrong PINs), behind
:class:`PinAttemptStore`; the service provides a database-backed store, ``hsm`` ships an
in-memory one for tests and single-process tools.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from typing import Protocol, runtime_checkable

from hsm.errors import InvalidRequest, PinPolicyViolation

PIN_MIN_LENGTH = 6
PIN_MAX_LENGTH = 8
#: A PIN must use at least this many different digits (refuses 111112, 121212, 112211 ...).
PIN_MIN_DISTINCT_DIGITS = 3


def check_pin_policy(pin: str) -> None:
    """Raise :class:`PinPolicyViolation` unless ``pin`` is 6 to 8 digits and not trivial.

    Trivial means: one digit repeated (000000), an ascending or descending run, wrapping
    or not (123456, 654321, 890123), a repeated block (121212, 123123, 12341234), or fewer
    than three distinct digits. The PIN itself never appears in the error.
    """
    if not isinstance(pin, str):
        raise PinPolicyViolation("The PIN must be a string of digits.", reason="type")
    if not (PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH):
        raise PinPolicyViolation(
            f"The PIN must have {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits.",
            reason="length", min_length=PIN_MIN_LENGTH, max_length=PIN_MAX_LENGTH)
    if not all("0" <= ch <= "9" for ch in pin):
        raise PinPolicyViolation("The PIN must contain digits only.", reason="digits-only")
    if len(set(pin)) == 1:
        raise PinPolicyViolation("The PIN repeats a single digit.", reason="repeated-digit")
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {9}):
        raise PinPolicyViolation("The PIN is a run of consecutive digits.", reason="sequence")
    for period in range(2, len(pin) // 2 + 1):
        if len(pin) % period == 0 and pin == pin[:period] * (len(pin) // period):
            raise PinPolicyViolation("The PIN repeats a short pattern.",
                                     reason="repeated-pattern")
    if len(set(pin)) < PIN_MIN_DISTINCT_DIGITS:
        raise PinPolicyViolation(
            f"The PIN must use at least {PIN_MIN_DISTINCT_DIGITS} different digits.",
            reason="too-few-digits")


def generate_pin(length: int = 6) -> str:
    """Return a random PIN of ``length`` digits (``secrets``) that satisfies the policy."""
    if not (PIN_MIN_LENGTH <= length <= PIN_MAX_LENGTH):
        raise InvalidRequest(
            f"A PIN has {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits.", length=length)
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(length))
        try:
            check_pin_policy(pin)
        except PinPolicyViolation:
            continue
        return pin


@runtime_checkable
class PinAttemptStore(Protocol):
    """Where consecutive wrong user PINs are counted, per token label.

    The token layer counts an attempt BEFORE it asks the token: :meth:`reserve` adds one
    failure unless the count already reached the maximum, in one atomic step, so that however
    many processes check PINs at once, no more than ``max_attempts`` wrong PINs ever reach the
    token. Exactly one of three calls follows a granted reservation: a correct PIN clears the
    count (:meth:`reset`), a wrong one keeps it (:meth:`confirm`), an attempt that ended
    without the token judging the PIN (the token went away) is given back (:meth:`refund`).
    Implementations must make ``reserve``, ``refund`` and ``record_failure`` atomic across
    every process sharing the store, and must never store the PIN.
    """

    def failures(self, token_label: str) -> int:
        """The current count of consecutive failures (0 if none)."""
        ...

    def record_failure(self, token_label: str) -> int:
        """Add one failure and return the new count."""
        ...

    def reserve(self, token_label: str, max_attempts: int) -> int | None:
        """Count one failure in advance, unless ``max_attempts`` are already counted.

        Returns the new count, or ``None`` (nothing written) when the token is locked."""
        ...

    def confirm(self, token_label: str) -> None:
        """The reserved attempt was a wrong PIN: it stays counted (a store that counts in
        :meth:`reserve` does nothing here)."""
        ...

    def refund(self, token_label: str) -> None:
        """Take back one reserved failure (the token did not judge the PIN)."""
        ...

    def reset(self, token_label: str) -> None:
        """Forget the failures (after a correct PIN or an SO reset)."""
        ...


class InMemoryPinAttemptStore:
    """A thread-safe, process-local :class:`PinAttemptStore` (tests, tools, the demo)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def failures(self, token_label: str) -> int:
        with self._lock:
            return self._counts.get(token_label, 0)

    def record_failure(self, token_label: str) -> int:
        with self._lock:
            count = self._counts.get(token_label, 0) + 1
            self._counts[token_label] = count
            return count

    def reserve(self, token_label: str, max_attempts: int) -> int | None:
        with self._lock:
            count = self._counts.get(token_label, 0)
            if count >= max_attempts:
                return None
            self._counts[token_label] = count + 1
            return count + 1

    def confirm(self, token_label: str) -> None:
        return None  # counted when reserved

    def refund(self, token_label: str) -> None:
        with self._lock:
            count = self._counts.get(token_label, 0)
            if count > 1:
                self._counts[token_label] = count - 1
            else:
                self._counts.pop(token_label, None)

    def reset(self, token_label: str) -> None:
        with self._lock:
            self._counts.pop(token_label, None)
