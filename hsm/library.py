"""The token layer's entry point: :class:`TokenLibrary`.

One ``TokenLibrary`` per application (build it in the app factory, pass it to services). It
owns an app-scoped pool: per token label, one read-write session, logged in as the user
after a successful PIN check and reused by every key object of that token. All calls into
the PKCS#11 module are serialised by the module lock (see :mod:`hsm._module`); PIN checks
of one token are also serialised among themselves (a per-label lock) so that the wrong-PIN
count cannot be overtaken by concurrent attempts in this process. The pool itself is
:mod:`hsm.pool`; the sealing of secrets is :mod:`hsm.sealing` (this class stays the
front of both).

PIN handling: a PIN passes through here on its way to the token and is never stored,
logged or put in an error. Each PIN check really asks the token: if the token is already
logged in, it is logged out first (PKCS#11 answers "already logged in" without looking at
the PIN otherwise). A consequence, by design: a wrong PIN logs the token out, and key
objects handed out earlier for that token raise :class:`LoginRequired` until a correct PIN
is given again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, cast

import pkcs11
from asn1crypto.core import Integer, OctetString
from asn1crypto.keys import ECDomainParameters
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from hsm import _module as _mod
from hsm import sealing
from hsm.errors import (
    HsmError,
    InvalidRequest,
    KeyAlreadyExists,
    KeyNotFound,
    LoginRequired,
    ModuleUnavailable,
    NoFreeSlot,
    PinIncorrect,
    PinLocked,
    PinPolicyViolation,
    TokenAlreadyExists,
    TokenNotFound,
)
from hsm.keys import TokenECPrivateKey, TokenPrivateKey, TokenRSAPrivateKey
from hsm.pins import InMemoryPinAttemptStore, PinAttemptStore, check_pin_policy, generate_pin
from hsm.pool import GONE, GONE_RV, PooledSession, SessionPool, check_label, module_error

#: Used when ``TAWQI_PKCS11_MODULE`` is not set (Debian/Ubuntu path of SoftHSM2).
DEFAULT_MODULE_PATH = "/usr/lib/softhsm/libsofthsm2.so"

#: key_type -> (PKCS#11 key type, curve OID or RSA modulus bits)
KEY_TYPES: dict[str, tuple[KeyType, str | int]] = {
    "EC-P256": (KeyType.EC, "1.2.840.10045.3.1.7"),
    "EC-P384": (KeyType.EC, "1.3.132.0.34"),
    "RSA-2048": (KeyType.RSA, 2048),
    "RSA-3072": (KeyType.RSA, 3072),
}

LABEL_MAX_BYTES = 32  # CK_TOKEN_INFO.label
# A signature re-reads the wrong-PIN count (which another process may have raised to the
# lockout) at most this often per token; every PIN check still reads it afresh.
_LOCK_RECHECK_SECONDS = 1.0
# Through a shared module (the token server) the token's login is shared by every process:
# another process's PIN check logs the token out and in again, which voids the handles of
# private objects and, for a moment, the login. A signature then finds its key again and
# waits for the login this many times (about 0.8 s in all) before raising LoginRequired.
_SHARED_LOGIN_TRIES = 12
log = logging.getLogger(__name__)

# A batch of signatures takes the module lock for this many at a time (see _token_sign_many).
_BATCH_SLICE = 64
# Through a token server a batch of at least _LANE_BATCH signatures is shared between this
# thread and signing_lanes - 1 more connections, each its own thread (see _sign_in_lanes).
_LANE_BATCH = 32

# The python-pkcs11 exception for a CK_RV of the two-call signature (LoadedModule.sign), so
# that both signature paths are handled alike; any other code is a plain PKCS11Error.
_SIGN_ERRORS: dict[int, type[p11.PKCS11Error]] = {
    _mod.CKR_USER_NOT_LOGGED_IN: p11.UserNotLoggedIn,
    _mod.CKR_OBJECT_HANDLE_INVALID: p11.ObjectHandleInvalid,
    _mod.CKR_KEY_HANDLE_INVALID: p11.KeyHandleInvalid,
    _mod.CKR_GENERAL_ERROR: p11.GeneralError,
    _mod.CKR_SESSION_HANDLE_INVALID: p11.SessionHandleInvalid,
    _mod.CKR_SESSION_CLOSED: p11.SessionClosed,
    _mod.CKR_TOKEN_NOT_PRESENT: p11.TokenNotPresent,
    _mod.CKR_DEVICE_REMOVED: p11.DeviceRemoved,
}


def _sign_once(module: _mod.LoadedModule, entry: PooledSession, key: Any,
               mechanism: Mechanism, param: Any, data: bytes) -> bytes:
    """One signature with a found key object, the caller holding the module lock: two
    module calls for a mechanism without parameters, python-pkcs11 (three) otherwise."""
    if param is not None:
        return bytes(key.sign(data, mechanism=mechanism, mechanism_param=param))
    rv, signature = module.sign(entry.session.handle, key.handle, int(mechanism), data)
    if rv != _mod.CKR_OK:
        raise _SIGN_ERRORS.get(rv, p11.PKCS11Error)(f"C_Sign: 0x{rv:x}")
    return signature



def default_module_path() -> str:
    """The PKCS#11 module to load: ``TAWQI_PKCS11_MODULE`` or SoftHSM2's library."""
    return os.environ.get("TAWQI_PKCS11_MODULE") or DEFAULT_MODULE_PATH


def _check_pin_given(pin: str) -> None:
    if not isinstance(pin, str) or not pin:
        raise InvalidRequest("A PIN is required.")


class TokenLibrary:
    """Tokens of one PKCS#11 module, with an app-scoped, thread-safe session pool.

    The module is loaded lazily, on first use, in each process (so a pre-fork server's
    workers each initialise their own). ``attempts`` counts wrong user PINs per token label;
    after ``max_attempts`` consecutive failures the token is locked for PIN checks, key
    look-ups and signatures until :meth:`reset_pin`. ``max_sessions`` bounds the pool: the
    least recently used token is logged out and its session closed when a new one is needed
    (``None``: unbounded). ``signing_lanes``: through a token server, the connections a
    batch of signatures is shared between (1: the pooled session only; see
    :meth:`_sign_in_lanes`).
    """

    def __init__(self, module_path: str, *, attempts: PinAttemptStore | None = None,
                 max_attempts: int = 5, max_sessions: int | None = 256,
                 signing_lanes: int = 2) -> None:
        if max_attempts < 1:
            raise InvalidRequest("max_attempts must be at least 1.")
        if max_sessions is not None and max_sessions < 1:
            raise InvalidRequest("max_sessions must be at least 1 or None.")
        if signing_lanes < 1:
            raise InvalidRequest("signing_lanes must be at least 1.")
        self.signing_lanes = signing_lanes
        self.module_path = module_path
        self.max_attempts = max_attempts
        self.max_sessions = max_sessions
        self._attempts: PinAttemptStore = (attempts if attempts is not None
                                           else InMemoryPinAttemptStore())
        self._pool = SessionPool(module_path, max_sessions)
        # token label -> monotonic time until which "not locked" may be trusted when signing
        self._unlocked_until: dict[str, float] = {}
        # (token label, key ID) -> (key label, public key): public facts of a key found
        # before, so that a PIN check does not read them from the token again (see
        # private_key). Forgotten when this process changes the token's objects and when
        # the key is not found any more.
        self._publics: dict[tuple[str, bytes], tuple[str, PublicKeyTypes]] = {}
        # name -> (pid, executor): private_key_soon's PIN checks, the signing lanes' threads
        self._executors: dict[str, tuple[int, ThreadPoolExecutor]] = {}
        #: Signatures made by the signing lanes so far (_sign_in_lanes), for monitoring.
        self.signatures_in_lanes = 0

    @classmethod
    def from_environment(cls, **kwargs: Any) -> TokenLibrary:
        """A library over :func:`default_module_path` (``TAWQI_PKCS11_MODULE``)."""
        return cls(default_module_path(), **kwargs)

    def __repr__(self) -> str:
        return f"<TokenLibrary module={self.module_path!r}>"

    def __enter__(self) -> TokenLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _public_exists(self, entry: PooledSession, *, key_id: bytes | None,
                       key_label: str | None) -> bool:
        """Whether a public key or certificate matches (public objects need no login)."""
        attrs: dict[Attribute, Any] = {}
        if key_id is not None:
            attrs[Attribute.ID] = key_id
        if key_label is not None:
            attrs[Attribute.LABEL] = key_label
        try:
            return any(self._objects(entry.session, {**attrs, Attribute.CLASS: kind})
                       for kind in (ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE))
        except p11.PKCS11Error:
            return True

    def _forget_publics(self, label: str) -> None:
        """Forget the public facts kept for ``label``'s keys (its objects change)."""
        for found in [k for k in list(self._publics) if k[0] == label]:
            self._publics.pop(found, None)

    def _raise_if_locked_recently(self, label: str) -> None:
        """The signing path's lock check: one store read per token per second, not one per
        signature (with the database store, that read cost more than the signature)."""
        now = time.monotonic()
        if self._unlocked_until.get(label, 0.0) > now:
            return
        self._raise_if_locked(label)
        self._unlocked_until[label] = now + _LOCK_RECHECK_SECONDS

    def _raise_if_locked(self, label: str) -> None:
        failures = self._attempts.failures(label)
        if failures >= self.max_attempts:
            raise PinLocked("The token is locked after too many wrong PINs; the security "
                            "officer must reset the PIN.", token=label,
                            attempts_left=0)

    def _login(self, label: str, pin: str) -> None:
        """Check ``pin`` on the token and leave it logged in (counting failures)."""
        check_label(label)
        _check_pin_given(pin)
        module = self._pool.module()
        with module.lock:
            state = self._pool.state(module)
        with state.label_lock(label):
            self._unlocked_until.pop(label, None)
            # The attempt is counted before the token sees the PIN, atomically across every
            # process sharing the store: never more than max_attempts wrong PINs reach it.
            count = self._attempts.reserve(label, self.max_attempts)
            if count is None:
                raise PinLocked("The token is locked after too many wrong PINs; the security "
                                "officer must reset the PIN.", token=label, attempts_left=0)
            try:
                rv = self._login_on_token(module, label, _mod.CKU_USER, pin)
            except BaseException:
                self._attempts.refund(label)
                raise
            if rv == _mod.CKR_OK:
                self._attempts.reset(label)
                return
            self._raise_login_failure(label, rv, count)

    def _login_on_token(self, module: _mod.LoadedModule, label: str, user_type: int,
                        pin: str) -> int:
        """Log the pooled session out, then in as ``user_type``; return the CK_RV."""
        rv = _mod.CKR_OK
        for _attempt in range(2):
            with module.lock:
                state = self._pool.state(module)
                entry = self._pool.entry(state, label)
                self._pool.forget_login(state, entry)
                rv = module.login(entry.session.handle, user_type, pin)
                for _again in range(_SHARED_LOGIN_TRIES):
                    if rv not in (_mod.CKR_USER_ALREADY_LOGGED_IN,
                                  _mod.CKR_USER_ANOTHER_ALREADY_LOGGED_IN):
                        break
                    # Logged in through another session: another library object of this
                    # process, or another process sharing the module through the token
                    # server (which may log in again between our logout and login). Log
                    # the token out, then have the PIN checked.
                    module.logout(entry.session.handle)
                    rv = module.login(entry.session.handle, user_type, pin)
                if rv in GONE_RV:
                    self._pool.drop(state, label)
                    state.slots.pop(label, None)
                    continue
                if rv == _mod.CKR_OK and user_type == _mod.CKU_USER:
                    entry.logged_in = True
                return rv
        return rv

    def _raise_login_failure(self, label: str, rv: int, count: int) -> None:
        """Raise for a refused login; ``count`` already includes this attempt (reserved).
        Outcomes where the token did not judge the PIN give the reservation back."""
        if rv in (_mod.CKR_PIN_INCORRECT, _mod.CKR_PIN_INVALID, _mod.CKR_PIN_LEN_RANGE):
            self._attempts.confirm(label)
        else:
            self._attempts.refund(label)
        if rv == _mod.CKR_PIN_INCORRECT:
            left = max(self.max_attempts - count, 0)
            if left == 0:
                raise PinLocked("Wrong PIN; the token is now locked after too many wrong "
                                "PINs.", token=label, attempts_left=0)
            raise PinIncorrect("Wrong PIN.", token=label, attempts_left=left)
        if rv == _mod.CKR_PIN_LOCKED:
            raise PinLocked("The token reports its PIN locked.", token=label,
                            attempts_left=0)
        if rv in (_mod.CKR_PIN_INVALID, _mod.CKR_PIN_LEN_RANGE):
            raise PinIncorrect("Wrong PIN.", token=label,
                               attempts_left=max(self.max_attempts - count, 0))
        if rv == _mod.CKR_USER_PIN_NOT_INITIALIZED:
            raise HsmError("The token has no user PIN yet.", token=label,
                           code=f"0x{rv:x}")
        if rv in GONE_RV:
            raise TokenNotFound("The token went away during login.", token=label)
        raise HsmError("The token refused the login.", token=label, code=f"0x{rv:x}")

    @staticmethod
    def _objects(session: Any, attrs: dict[Attribute, Any]) -> list[Any]:
        # Consume the search fully: an open search keeps the session busy.
        return list(session.get_objects(attrs))

    def _find_private(self, entry: PooledSession, *, key_id: bytes | None,
                      key_label: str | None) -> Any:
        attrs: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if key_id is not None:
            attrs[Attribute.ID] = key_id
        if key_label is not None:
            attrs[Attribute.LABEL] = key_label
        found = self._objects(entry.session, attrs)
        if not found:
            raise KeyNotFound("No private key matches on this token.",
                              key_id=key_id.hex() if key_id else None, key_label=key_label)
        if len(found) > 1:
            raise InvalidRequest("Several private keys match; give the key ID.",
                                 key_label=key_label)
        return found[0]

    def _public_from_object(self, obj: Any) -> PublicKeyTypes:
        if obj.key_type == KeyType.RSA:
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(obj[Attribute.MODULUS], "big"))
            return numbers.public_key()
        if obj.key_type == KeyType.EC:
            params = ECDomainParameters.load(obj[Attribute.EC_PARAMS])
            if params.name != "named":
                raise InvalidRequest("Only named EC curves are supported.")
            curve = ec.get_curve_for_oid(x509.ObjectIdentifier(params.chosen.dotted))()
            point = obj[Attribute.EC_POINT]
            expected = 1 + 2 * ((curve.key_size + 7) // 8)
            if len(point) != expected or point[0] != 4:
                point = OctetString.load(point).native  # DER-wrapped, as the spec says
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        raise InvalidRequest("Unsupported key type on the token.", key_type=str(obj.key_type))

    def _public_for(self, entry: PooledSession, key_id: bytes, private: Any | None = None
                    ) -> PublicKeyTypes:
        found = self._objects(entry.session, {Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                              Attribute.ID: key_id})
        if found:
            return self._public_from_object(found[0])
        certs = self._objects(entry.session, {Attribute.CLASS: ObjectClass.CERTIFICATE,
                                              Attribute.ID: key_id})
        if certs:
            return x509.load_der_x509_certificate(certs[0][Attribute.VALUE]).public_key()
        if private is not None and private.key_type == KeyType.RSA:
            return self._public_from_object(private)
        raise KeyNotFound("No public key or certificate for this key ID.",
                          key_id=key_id.hex())

    def _token_sign(self, token_label: str, key_id: bytes, mechanism: Mechanism,
                    param: Any, data: bytes) -> bytes:
        """Sign ``data`` with a pooled, logged-in token key (used by the key objects).

        Never logs in: the token must be logged in after a PIN check of this process. If
        another process (sharing the module through the token server) is re-checking a PIN
        on this token, the key is looked up again and the signature retried, briefly."""
        self._raise_if_locked_recently(token_label)
        module = self._pool.module()
        failure: Exception | None = None
        for attempt in range(_SHARED_LOGIN_TRIES):
            if attempt:
                time.sleep(min(0.002 * 2 ** attempt, 0.1))
            with module.lock:
                state = self._pool.state(module)
                entry = state.entries.get(token_label)
                if entry is None or not entry.logged_in:
                    raise LoginRequired("The token is not logged in any more; get the key "
                                        "again with the PIN.", token=token_label)
                key = entry.private_keys.get(key_id)
                try:
                    if key is None:
                        key = self._find_private(entry, key_id=key_id, key_label=None)
                        entry.private_keys[key_id] = key
                    return _sign_once(module, entry, key, mechanism, param, data)
                except (p11.UserNotLoggedIn, p11.ObjectHandleInvalid, p11.KeyHandleInvalid,
                        p11.GeneralError, KeyNotFound) as exc:
                    # Logged out (and maybe in again) by another client of the module; a
                    # logout between C_SignInit and C_Sign makes SoftHSM2 answer
                    # CKR_GENERAL_ERROR.
                    entry.private_keys.pop(key_id, None)
                    failure = exc
                except GONE as exc:
                    self._pool.drop(state, token_label)
                    raise module_error(exc, "signing") from exc
                except p11.PKCS11Error as exc:
                    raise module_error(exc, "signing") from exc
        with module.lock:
            entry = self._pool.state(module).entries.get(token_label)
            if entry is not None:
                entry.logged_in = False
                entry.private_keys.clear()
        if isinstance(failure, p11.GeneralError):
            raise module_error(failure, "signing") from failure
        raise LoginRequired("The token is not logged in any more; get the key again with "
                            "the PIN.", token=token_label) from failure

    def _token_sign_many(self, token_label: str, key_id: bytes, mechanism: Mechanism,
                         param: Any, items: list[bytes]) -> list[bytes]:
        """:meth:`_token_sign` for a batch (a 1,000-hash ``signHash``): the lock check, the
        module lock and the pool lookup once per slice of the batch instead of once per
        signature, with the same retries when another process logs the token out midway.
        The module lock is released between slices, so other threads of this process are
        not held up for the whole batch."""
        module = self._pool.module()
        if param is None and module.per_instance and self.signing_lanes > 1 and \
                len(items) >= _LANE_BATCH:
            signed = self._sign_in_lanes(module, token_label, key_id, mechanism, items)
            if signed is not None:
                return signed
        out: list[bytes | None] = [None] * len(items)
        position = 0
        while position < len(items):
            position += self._sign_slices(module, token_label, key_id, mechanism, param,
                                          items, range(position, len(items)), out)
            if position < len(items):
                # No key object yet, or the token was logged out midway: one signature
                # through the careful path (it looks the key up again and retries), then
                # batch again.
                out[position] = self._token_sign(token_label, key_id, mechanism, param,
                                                 items[position])
                position += 1
        return cast(list[bytes], out)  # every position was signed above

    @contextmanager
    def _logged_in_key(self, module: _mod.LoadedModule, token_label: str, key_id: bytes
                       ) -> Iterator[tuple[PooledSession, Any] | None]:
        """Under the module lock, after the token's lock check: the pooled session of
        ``token_label`` and its key object for ``key_id`` if this process's PIN check left
        them logged in, else None."""
        self._raise_if_locked_recently(token_label)
        with module.lock:
            entry = self._pool.state(module).entries.get(token_label)
            key = entry.private_keys.get(key_id) if entry is not None and \
                entry.logged_in else None
            yield None if entry is None or key is None else (entry, key)

    def _sign_slices(self, module: _mod.LoadedModule, token_label: str, key_id: bytes,
                     mechanism: Mechanism, param: Any, items: list[bytes],
                     indices: Sequence[int], out: list[bytes | None]) -> int:
        """Sign ``items[i]`` into ``out[i]`` for each of ``indices`` in turn, with the key
        object the pool holds, the lock check, the module lock and the pool lookup once per
        slice of them instead of once per signature (the module lock is released between
        slices, so other threads of this process are not held up for a whole batch).
        Returns how many were signed before the key went missing (a logout midway) or the
        module refused one."""
        done = 0
        while done < len(indices):
            with self._logged_in_key(module, token_label, key_id) as found:
                if found is None:
                    return done
                entry, key = found
                try:
                    for index in indices[done:done + _BATCH_SLICE]:
                        out[index] = _sign_once(module, entry, key, mechanism, param,
                                                items[index])
                        done += 1
                except p11.PKCS11Error:
                    return done
        return done

    def _sign_in_lanes(self, module: _mod.LoadedModule, token_label: str, key_id: bytes,
                       mechanism: Mechanism, items: list[bytes]) -> list[bytes] | None:
        """A batch shared between this thread (the pooled session, under the module lock
        per slice, as :meth:`_token_sign_many`) and the module's signing lanes (their own
        connections to the token server and their own sessions, each in a thread of this
        library), item ``i`` going to lane ``i % lanes``: through a token server each
        signature is two round trips, and the server serves connections in parallel.

        Only with the key object this process's PIN check found (None otherwise: the
        caller's path looks it up). A lane that meets any error stops; whatever is left
        unsigned is then signed one by one through :meth:`_token_sign`, in order (which
        looks the key up again, waits for another process's login, or raises)."""
        with self._logged_in_key(module, token_label, key_id) as found:
            if found is None:
                return None
            entry, key = found
            try:
                lanes = module.lanes(self.signing_lanes - 1)
            except ModuleUnavailable:
                return None
            key_handle, slot_id = int(key.handle), int(entry.slot.slot_id)
        count = len(lanes) + 1
        out: list[bytes | None] = [None] * len(items)

        def run(lane: _mod.SigningLane, first: int) -> int:
            signed = 0
            try:
                with lane.lock:
                    session = lane.session(slot_id)
                    if session is None:
                        return signed
                    for index in range(first, len(items), count):
                        rv, signature = lane.sign(session, key_handle, int(mechanism),
                                                  items[index])
                        if rv != _mod.CKR_OK:
                            if rv in GONE_RV:
                                lane.forget(slot_id)
                            return signed
                        out[index] = signature
                        signed += 1
            except Exception:  # the careful path below signs what is left
                log.warning("a signing lane failed; the rest of its share is signed one by "
                            "one", exc_info=True)
            return signed

        background = self._executor("sign-lane", self.signing_lanes - 1)
        running = [background.submit(run, lane, k + 1) for k, lane in enumerate(lanes)]
        try:
            self._sign_slices(module, token_label, key_id, mechanism, None, items,
                              range(0, len(items), count), out)
        finally:
            self.signatures_in_lanes += sum(done.result() for done in running)
        return [signature if signature is not None
                else self._token_sign(token_label, key_id, mechanism, None, items[index])
                for index, signature in enumerate(out)]

    # ------------------------------------------------------------------ token lifecycle

    def init_token(self, label: str, so_pin: str, user_pin: str) -> None:
        """Initialise a free (uninitialised) token with ``label`` and set its user PIN.

        Raises :class:`TokenAlreadyExists` if a token already has the label,
        :class:`NoFreeSlot` if the module offers no uninitialised token, and
        :class:`PinPolicyViolation` if ``user_pin`` breaks the policy.
        """
        self.init_tokens(so_pin, [(label, user_pin)])

    def init_tokens(self, so_pin: str, tokens: Sequence[tuple[str, str]]) -> None:
        """Initialise one free token per ``(label, user PIN)``, in order, as
        :meth:`init_token` does for one; the label -> slot map is rebuilt once at the end.

        The slots are found through the module's slot list and the information of the slots
        not seen before only: the cost of one token does not grow with the number of tokens
        (python-pkcs11's slot walk asks every slot, which through a token server made each
        initialisation O(n) round trips). Two processes sharing the module must not run this
        at the same time (they would pick the same free slot): callers serialise it. Stops
        at the first error; the tokens initialised before it stay."""
        _check_pin_given(so_pin)
        for label, user_pin in tokens:
            check_label(label)
            check_pin_policy(user_pin)
        if len({label for label, _ in tokens}) != len(tokens):
            raise TokenAlreadyExists("A label is given twice.")
        done: list[str] = []
        try:
            with self._pool.locked() as state:
                module = state.module
                for label, user_pin in tokens:
                    self._pool.refresh_ids(state)
                    if label in state.slot_labels.values():
                        raise TokenAlreadyExists("A token already has this label.",
                                                 token=label)
                    if not state.free_slots:
                        raise NoFreeSlot("The token module has no uninitialised token left.")
                    self._forget_publics(label)
                    rv = module.init_token(state.free_slots[0], so_pin, label)
                    if rv != _mod.CKR_OK:
                        raise HsmError("The token module refused to initialise the token.",
                                       token=label, code=f"0x{rv:x}")
                    # The token may have moved to another slot (SoftHSM2 renumbers it).
                    self._pool.refresh_ids(state)
                    slot_id = next((i for i, known in state.slot_labels.items()
                                    if known == label), None)
                    if slot_id is None:
                        raise TokenNotFound("The new token is not listed.", token=label)
                    self._set_user_pin(module, slot_id, label, so_pin, user_pin)
                    done.append(label)
        finally:
            if done:
                with self._pool.locked() as state:
                    self._pool.rescan(state)
                for label in done:
                    self._attempts.reset(label)

    @staticmethod
    def _set_user_pin(module: _mod.LoadedModule, slot_id: int, label: str, so_pin: str,
                      user_pin: str) -> None:
        """As security officer of a new token, set its user PIN (a session of its own)."""
        rv, handle = module.open_session(slot_id)
        if rv != _mod.CKR_OK:
            raise HsmError("The new token refused a session.", token=label, code=f"0x{rv:x}")
        try:
            rv = module.login(handle, _mod.CKU_SO, so_pin)
            if rv != _mod.CKR_OK:
                raise HsmError("The new token refused the SO login.", token=label,
                               code=f"0x{rv:x}")
            try:
                rv = module.init_pin(handle, user_pin)
                if rv in (_mod.CKR_PIN_INVALID, _mod.CKR_PIN_LEN_RANGE):
                    raise PinPolicyViolation("The token refused the user PIN.", token=label,
                                             reason="token-policy")
                if rv != _mod.CKR_OK:
                    raise HsmError("The token module refused setting the user PIN.",
                                   token=label, code=f"0x{rv:x}")
            finally:
                module.logout(handle)
        finally:
            module.close_session(handle)

    def logged_in(self, label: str) -> bool:
        """Whether this process's pooled session of ``label`` is logged in: False once the
        login was lost (a token server that restarted), when key objects handed out before
        raise :class:`LoginRequired`. No call into the token."""
        with self._pool.locked() as state:
            entry = state.entries.get(label)
            return entry is not None and entry.logged_in

    def token_exists(self, label: str) -> bool:
        """Whether an initialised token has ``label`` (the slot map is refreshed on a miss)."""
        check_label(label)
        with self._pool.locked() as state:
            try:
                self._pool.slot(state, label)
            except TokenNotFound:
                return False
            return True

    def token_labels(self, prefix: str = "") -> list[str]:
        """The labels of the initialised tokens that start with ``prefix``, sorted (the
        slot map refreshed first, so tokens other processes initialised are seen)."""
        with self._pool.locked() as state:
            self._pool.refresh_ids(state)
            return sorted(label for label in state.slot_labels.values()
                          if label.startswith(prefix))

    def destroy_objects(self, label: str, pin: str) -> int:
        """Destroy every object on the token (keys, certificates, data); return the count."""
        self._login(label, pin)
        with self._pool.locked() as state:
            entry = self._pool.entry(state, label)
            try:
                objects = self._objects(entry.session, {})
                for obj in objects:
                    obj.destroy()
            except p11.PKCS11Error as exc:
                raise module_error(exc, "destroying objects") from exc
            finally:
                entry.private_keys.clear()
                entry.secret_keys.clear()
                self._forget_publics(label)
            return len(objects)

    def release(self, label: str) -> None:
        """Log one token out and close its pooled session (no-op if not pooled)."""
        with self._pool.locked() as state:
            self._pool.drop(state, label)

    def close(self) -> None:
        executors, self._executors = self._executors, {}
        for pid, executor in executors.values():
            if pid == os.getpid():
                executor.shutdown(wait=True)
        self._pool.close()

    # ------------------------------------------------------------------ keys and certificates

    def generate_key_pair(self, label: str, pin: str, *, key_type: str, key_label: str,
                          key_id: bytes) -> PublicKeyTypes:
        """Generate a key pair on the token; return its public key.

        The private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE and
        may only sign; both halves carry ``key_id`` and ``key_label``.
        """
        spec = KEY_TYPES.get(key_type)
        if spec is None:
            raise InvalidRequest("Unknown key type.", key_type=key_type,
                                 allowed=sorted(KEY_TYPES))
        if not isinstance(key_id, bytes) or not key_id:
            raise InvalidRequest("A key ID (non-empty bytes) is required.")
        self._login(label, pin)
        self._forget_publics(label)
        public_template = {
            Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
            Attribute.ENCRYPT: False, Attribute.WRAP: False,
            Attribute.ID: key_id, Attribute.LABEL: key_label,
        }
        private_template = {
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.DECRYPT: False,
            Attribute.UNWRAP: False, Attribute.DERIVE: False,
            Attribute.ID: key_id, Attribute.LABEL: key_label,
        }
        key_kind, size = spec
        with self._pool.locked() as state:
            entry = self._pool.entry(state, label)
            session = entry.session
            try:
                clash = (self._objects(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                                 Attribute.ID: key_id})
                         or self._objects(session, {Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                                    Attribute.ID: key_id}))
                if clash:
                    raise KeyAlreadyExists("A key with this ID is already on the token.",
                                           token=label, key_id=key_id.hex())
                capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
                if key_kind == KeyType.EC and isinstance(size, str):
                    params = session.create_domain_parameters(
                        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(size)},
                        local=True)
                    public, _private = params.generate_keypair(
                        store=True, capabilities=capabilities,
                        public_template=public_template, private_template=private_template)
                elif key_kind == KeyType.RSA and isinstance(size, int):
                    public, _private = session.generate_keypair(
                        KeyType.RSA, size, store=True, capabilities=capabilities,
                        public_template=public_template, private_template=private_template)
                else:  # pragma: no cover - KEY_TYPES is consistent
                    raise InvalidRequest("Unknown key type.", key_type=key_type)
                return self._public_from_object(public)
            except p11.PKCS11Error as exc:
                raise module_error(exc, "generating a key pair") from exc

    def private_key(self, label: str, pin: str, *, key_id: bytes | None = None,
                    key_label: str | None = None) -> TokenPrivateKey:
        """Check the PIN (counting failures) and return a signing key object.

        The key signs through this library's pool until the library is closed, the token is
        released or logged out by a later wrong PIN, or the token gets locked.
        """
        if key_id is None and key_label is None:
            raise InvalidRequest("Give key_id or key_label.")
        known = self._publics.get((label, key_id)) if key_id is not None and \
            key_label is None else None
        for attempt in range(_SHARED_LOGIN_TRIES):
            self._login(label, pin)
            with self._pool.locked() as state:
                entry = self._pool.entry(state, label)
                try:
                    obj = self._find_private(entry, key_id=key_id, key_label=key_label)
                    if known is not None and key_id is not None:
                        # The key's public facts do not change while its ID is on the
                        # token (IDs are random per key pair): no reads beyond the search
                        # that found the private key for this login.
                        found_id, (found_label, public) = key_id, known
                    else:
                        found_id = bytes(obj.id)
                        found_label = obj.label
                        public = self._public_for(entry, found_id, obj)
                except (p11.UserNotLoggedIn, p11.ObjectHandleInvalid, p11.GeneralError,
                        KeyNotFound) as exc:
                    # Through a shared module another process's PIN check may have logged
                    # the token out meanwhile: check the PIN again (we have it) and retry.
                    # A private key is invisible while the token is logged out; it is
                    # really absent when its public half is absent too.
                    absent = isinstance(exc, KeyNotFound) and not self._public_exists(
                        entry, key_id=key_id, key_label=key_label)
                    if absent and key_id is not None:
                        self._publics.pop((label, key_id), None)
                        known = None
                    if attempt + 1 < _SHARED_LOGIN_TRIES and not absent:
                        time.sleep(min(0.002 * 2 ** attempt, 0.1))
                        continue
                    if isinstance(exc, KeyNotFound):
                        raise
                    raise module_error(exc, "looking up the key") from exc
                except p11.PKCS11Error as exc:
                    raise module_error(exc, "looking up the key") from exc
                entry.private_keys[found_id] = obj
                self._publics[(label, found_id)] = (found_label, public)
                break
        if isinstance(public, ec.EllipticCurvePublicKey):
            return TokenECPrivateKey(self, label, found_id, found_label, public)
        if isinstance(public, rsa.RSAPublicKey):
            return TokenRSAPrivateKey(self, label, found_id, found_label, public)
        raise InvalidRequest("Unsupported key type on the token.")

    def private_key_soon(self, label: str, pin: str, *, key_id: bytes) -> TokenPrivateKey:
        """:meth:`private_key`, with the PIN check running in the background: the key
        object comes back at once and its first signature waits for the check (and raises
        its error: PinIncorrect, PinLocked...). The caller prepares what it signs (a PDF's
        stamp and signed revision) while the token checks the PIN; nothing is signed
        without the check. A key whose public half this process has not seen yet is
        fetched the ordinary way (that look-up needs the login)."""
        known = self._publics.get((label, key_id))
        if known is None:
            return self.private_key(label, pin, key_id=key_id)
        key_label, public = known
        key: TokenPrivateKey
        if isinstance(public, ec.EllipticCurvePublicKey):
            key = TokenECPrivateKey(self, label, key_id, key_label, public)
        elif isinstance(public, rsa.RSAPublicKey):
            key = TokenRSAPrivateKey(self, label, key_id, key_label, public)
        else:  # pragma: no cover - private_key refuses other key types before
            return self.private_key(label, pin, key_id=key_id)
        key._pending = self._executor("pin-check", 1).submit(
            self.private_key, label, pin, key_id=key_id)
        return key

    def _executor(self, name: str, workers: int) -> ThreadPoolExecutor:
        """This library's threads for ``name``, in this process (made again after a fork in
        the child, never inherited)."""
        found = self._executors.get(name)
        if found is None or found[0] != os.getpid():
            found = self._executors[name] = (os.getpid(), ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"tawqi-{name}"))
        return found[1]

    def public_key(self, label: str, *, key_id: bytes) -> PublicKeyTypes:
        """The public key with ``key_id`` (public objects: no PIN needed)."""
        with self._pool.locked() as state:
            entry = self._pool.entry(state, label)
            try:
                return self._public_for(entry, key_id)
            except p11.PKCS11Error as exc:
                raise module_error(exc, "reading a public key") from exc

    def store_certificate(self, label: str, pin: str | None, *, key_id: bytes,
                          cert_der: bytes, cert_label: str, replace: bool = True) -> None:
        """Store an X.509 certificate (public object) next to its key; an older certificate
        with the same ID is replaced (``replace=False``: the caller knows there is none, a
        token it just initialised, and no search is made). A certificate is a public
        object: without ``pin`` it is written in the pooled read/write session as it is
        (PKCS#11 allows it logged out), e.g. a renewed certificate of a holder whose PIN the
        service does not know, or just after the key was generated in that session."""
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            raise InvalidRequest("Not a DER X.509 certificate.") from exc
        serial = cert.serial_number
        serial_der = Integer(serial).dump()
        if pin is not None:
            self._login(label, pin)
        self._forget_publics(label)
        with self._pool.locked() as state:
            entry = self._pool.entry(state, label)
            try:
                olds = self._objects(entry.session, {
                    Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: key_id}) \
                    if replace else []
                for old in olds:
                    old.destroy()
                entry.session.create_object({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                    Attribute.TOKEN: True, Attribute.PRIVATE: False,
                    Attribute.MODIFIABLE: True,
                    Attribute.ID: key_id, Attribute.LABEL: cert_label,
                    Attribute.SUBJECT: cert.subject.public_bytes(),
                    Attribute.ISSUER: cert.issuer.public_bytes(),
                    Attribute.SERIAL_NUMBER: serial_der,
                    Attribute.VALUE: cert_der,
                })
            except p11.PKCS11Error as exc:
                raise module_error(exc, "storing a certificate") from exc

    def read_certificate(self, label: str, *, key_id: bytes) -> bytes | None:
        """The DER certificate stored with ``key_id``, or ``None``."""
        with self._pool.locked() as state:
            entry = self._pool.entry(state, label)
            try:
                found = self._objects(entry.session, {
                    Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: key_id})
                return bytes(found[0][Attribute.VALUE]) if found else None
            except p11.PKCS11Error as exc:
                raise module_error(exc, "reading a certificate") from exc

    # ------------------------------------------------------------------ PINs

    def check_pin(self, label: str, pin: str) -> None:
        """Raise :class:`PinIncorrect` / :class:`PinLocked` unless ``pin`` is right. A
        correct PIN clears the failure count and leaves the token logged in."""
        self._login(label, pin)

    def change_pin(self, label: str, old_pin: str, new_pin: str) -> None:
        """Change the user PIN; ``old_pin`` is checked (and counted), ``new_pin`` must
        satisfy the policy (checked first, so a weak new PIN costs no attempt)."""
        check_pin_policy(new_pin)
        self._login(label, old_pin)
        with self._pool.locked() as state:
            entry = self._pool.entry(state, label)
            try:
                entry.session.set_pin(old_pin, new_pin)
            except (p11.PinInvalid, p11.PinLenRange, p11.PinTooWeak) as exc:
                raise PinPolicyViolation("The token refused the new PIN.", token=label,
                                         reason="token-policy") from exc
            except p11.PKCS11Error as exc:
                raise module_error(exc, "changing the PIN") from exc

    def reset_pin(self, label: str, so_pin: str, *, length: int = 6) -> str:
        """As security officer, set a NEW random policy-compliant user PIN, clear the failure
        count and the lock, and return the PIN (the only moment it exists in clear).

        A wrong SO PIN raises :class:`PinIncorrect` with ``extras['role'] == 'so'``; it is not
        counted here (the module itself locks the SO PIN if it does so).
        """
        check_label(label)
        _check_pin_given(so_pin)
        new_pin = generate_pin(length)
        module = self._pool.module()
        with module.lock:
            state = self._pool.state(module)
        with state.label_lock(label):
            rv = self._login_on_token(module, label, _mod.CKU_SO, so_pin)
            if rv == _mod.CKR_PIN_INCORRECT:
                raise PinIncorrect("Wrong SO PIN.", token=label, role="so")
            if rv == _mod.CKR_PIN_LOCKED:
                raise PinLocked("The token reports its SO PIN locked.", token=label,
                                role="so")
            if rv != _mod.CKR_OK:
                raise HsmError("The token refused the SO login.", token=label,
                               code=f"0x{rv:x}")
            with module.lock:
                entry = self._pool.entry(self._pool.state(module), label)
                try:
                    entry.session.init_pin(new_pin)
                except p11.PKCS11Error as exc:
                    raise module_error(exc, "setting the user PIN") from exc
                finally:
                    module.logout(entry.session.handle)
            self._attempts.reset(label)
        return new_pin

    def is_locked(self, label: str) -> bool:
        """Locked by the service's failure count, or reported locked by the module."""
        if self._attempts.failures(label) >= self.max_attempts:
            return True
        with self._pool.locked() as state:
            slot = self._pool.slot(state, label)
            try:
                flags = slot.get_token().flags
            except p11.PKCS11Error as exc:
                raise module_error(exc, "reading token flags") from exc
            return bool(flags & TokenFlag.USER_PIN_LOCKED)

    # ------------------------------------------------------------------ sealed secrets
    # (AES-256-GCM under a non-extractable token key; the work is in hsm/sealing.py)

    def ensure_secret_key(self, label: str, pin: str, key_label: str) -> None:
        """Make sure the sealing key (256-bit HMAC: token, private, sensitive, not
        extractable, sign only) labelled ``key_label`` exists on the token."""
        sealing.ensure_secret_key(self, label, pin, key_label)

    def encrypt(self, label: str, pin: str, key_label: str, plaintext: bytes,
                aad: bytes = b"") -> bytes:
        """AES-256-GCM under a one-message key derived on the token
        (:func:`hsm.sealing.encrypt`); works through the token server."""
        return sealing.encrypt(self, label, pin, key_label, plaintext, aad)

    def decrypt(self, label: str, pin: str, key_label: str, blob: bytes,
                aad: bytes = b"") -> bytes:
        """Reverse :meth:`encrypt`; raise :class:`DecryptionFailed` if the blob, the AAD or
        the key do not match."""
        return sealing.decrypt(self, label, pin, key_label, blob, aad)
