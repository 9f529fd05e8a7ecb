"""The session pool of a :class:`~hsm.library.TokenLibrary`: per process and per module
generation, one pooled session per token label (logged in once its PIN was checked), least
recently used first out, and the label -> slot cache.

A session is not thread-safe and python-pkcs11 does not serialise calls into SoftHSM2: every
use of a pooled session happens under the loaded module's lock (:meth:`SessionPool.locked`).
A forked child or a re-initialised module gets a fresh pool; the old sessions are forgotten
without calling into the module.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pkcs11 import exceptions as p11

from hsm import _module as _mod
from hsm.errors import HsmError, InvalidRequest, LoginRequired, ModuleUnavailable, TokenNotFound

LABEL_MAX_BYTES = 32  # CK_TOKEN_INFO.label

GONE = (p11.SessionHandleInvalid, p11.SessionClosed, p11.TokenNotPresent,
        p11.DeviceRemoved, p11.SlotIDInvalid)
GONE_RV = {_mod.CKR_SESSION_HANDLE_INVALID, _mod.CKR_SESSION_CLOSED,
           _mod.CKR_TOKEN_NOT_PRESENT, _mod.CKR_DEVICE_REMOVED,
           _mod.CKR_SLOT_ID_INVALID}


def module_error(exc: p11.PKCS11Error, doing: str) -> HsmError:
    """Wrap a python-pkcs11 error (its text holds no PIN; we keep only the class name)."""
    name = type(exc).__name__
    if isinstance(exc, p11.UserNotLoggedIn):
        return LoginRequired(f"The token is not logged in ({doing}).", code=name)
    if isinstance(exc, GONE):
        return TokenNotFound(f"The token went away while {doing}.", code=name)
    return HsmError(f"The token module refused {doing}.", code=name)


def check_label(label: str) -> None:
    if (not isinstance(label, str) or not label or label != label.strip()
            or len(label.encode("utf-8")) > LABEL_MAX_BYTES):
        raise InvalidRequest("A token label is 1 to 32 bytes of UTF-8 without surrounding "
                             "spaces.", label=str(label)[:64])


@dataclass
class PooledSession:
    """One token in the pool: its session and what was found through it."""

    slot: Any
    session: Any
    logged_in: bool = False
    private_keys: dict[bytes, Any] = field(default_factory=dict)
    secret_keys: dict[str, Any] = field(default_factory=dict)


class PoolState:
    """Per process and per module generation: the pool and the label -> slot cache."""

    def __init__(self, module: _mod.LoadedModule) -> None:
        self.module = module
        self.pid = module.pid
        self.generation = module.generation
        self.entries: OrderedDict[str, PooledSession] = OrderedDict()
        self.slots: dict[str, Any] = {}
        #: slot id -> label of the slots seen holding an initialised token (a label is set
        #: once, by C_InitToken, so a slot is asked again only when it disappears), and the
        #: slots last seen with an uninitialised token.
        self.slot_labels: dict[int, str] = {}
        self.free_slots: list[int] = []
        self.guard = threading.Lock()
        self.label_locks: dict[str, threading.Lock] = {}

    def label_lock(self, label: str) -> threading.Lock:
        with self.guard:
            lock = self.label_locks.get(label)
            if lock is None:
                lock = self.label_locks[label] = threading.Lock()
            return lock


class SessionPool:
    """The pooled sessions of one module for one library object. ``max_sessions`` bounds
    the pool (``None``: unbounded): the least recently used token is logged out and its
    session closed when a new one is needed."""

    def __init__(self, module_path: str, max_sessions: int | None) -> None:
        self.module_path = module_path
        self.max_sessions = max_sessions
        self._current: PoolState | None = None

    def module(self) -> _mod.LoadedModule:
        return _mod.load_module(self.module_path)

    def state(self, module: _mod.LoadedModule) -> PoolState:
        """The pool for this process and module generation. Caller holds module.lock.

        Through a token server (p11-kit's client), a restarted server or a connection found
        dead re-initialises the module first (it reconnects): the pool starts afresh."""
        if module.per_instance and (module.needs_reset or module.server_restarted()):
            module.reinitialize()  # ModuleUnavailable while the server is away
        state = self._current
        if state is None or state.module is not module or state.generation != module.generation:
            # A new process (fork) or a re-initialised module: the old sessions are dead in
            # this process; forget them without calling into the module.
            state = self._current = PoolState(module)
        return state

    @contextmanager
    def locked(self) -> Iterator[PoolState]:
        module = self.module()
        with module.lock:
            yield self.state(module)

    def refresh_ids(self, state: PoolState) -> None:
        """Bring :attr:`PoolState.slot_labels` and :attr:`PoolState.free_slots` up to date:
        one slot-list call, then token information only for the slots not known yet (the
        free one, and those another process initialised). O(new slots) round trips through
        a token server, not O(slots)."""
        rv, ids = state.module.slot_ids()
        if rv != _mod.CKR_OK:
            if rv in (_mod.CKR_DEVICE_ERROR, _mod.CKR_DEVICE_REMOVED):
                state.module.needs_reset = True  # the token server went away
            raise ModuleUnavailable("The token module did not list its slots.",
                                    code=f"0x{rv:x}")
        present = set(ids)
        for gone in [i for i in state.slot_labels if i not in present]:
            del state.slot_labels[gone]
        free = []
        for slot_id in ids:
            if slot_id in state.slot_labels:
                continue
            rv, label, flags = state.module.token_info(slot_id)
            if rv != _mod.CKR_OK:
                continue  # removed meanwhile
            if flags & _mod.CKF_TOKEN_INITIALIZED:
                state.slot_labels[slot_id] = label
            else:
                free.append(slot_id)
        state.free_slots = free

    def rescan(self, state: PoolState) -> None:
        """Rebuild the label -> slot map from the module's slot list (the labels come from
        :meth:`refresh_ids`, asked once per slot)."""
        self.refresh_ids(state)
        found: dict[str, Any] = {}
        try:
            slots = state.module.lib.get_slots(token_present=True)
        except p11.PKCS11Error as exc:
            if isinstance(exc, (p11.DeviceError, p11.DeviceRemoved)):
                state.module.needs_reset = True  # the token server went away
            raise ModuleUnavailable("The token module did not list its slots.",
                                    code=type(exc).__name__) from exc
        for slot in slots:
            label = state.slot_labels.get(slot.slot_id)
            if label is not None:
                found.setdefault(label, slot)
        state.slots = found

    def slot(self, state: PoolState, label: str) -> Any:
        slot = state.slots.get(label)
        if slot is None:
            self.rescan(state)
            slot = state.slots.get(label)
        if slot is None:
            raise TokenNotFound("No token has this label.", token=label)
        return slot

    def entry(self, state: PoolState, label: str) -> PooledSession:
        """The pooled session of a token, opened (not logged in) if needed."""
        entry = state.entries.get(label)
        if entry is not None:
            state.entries.move_to_end(label)
            return entry
        check_label(label)
        for attempt in range(2):
            slot = self.slot(state, label)
            try:
                token = slot.get_token()
                if token.label != label:
                    raise p11.TokenNotPresent()
                session = token.open(rw=True)
            except GONE:
                state.slots.pop(label, None)
                state.slot_labels.pop(slot.slot_id, None)
                if attempt:
                    raise TokenNotFound("No token has this label.", token=label) from None
                continue
            except p11.PKCS11Error as exc:
                raise module_error(exc, "opening a session") from exc
            entry = PooledSession(slot=slot, session=session)
            state.entries[label] = entry
            self.evict(state)
            return entry
        raise TokenNotFound("No token has this label.", token=label)  # pragma: no cover

    def evict(self, state: PoolState) -> None:
        while self.max_sessions is not None and len(state.entries) > self.max_sessions:
            label = next(iter(state.entries))
            self.drop(state, label)

    def drop(self, state: PoolState, label: str, *, logout: bool = True) -> None:
        """Log out (unless ``logout`` is false) and close one pooled session (errors
        ignored: it may already be gone)."""
        entry = state.entries.pop(label, None)
        if entry is None:
            return
        if entry.logged_in and logout:
            state.module.logout(entry.session.handle)
        try:
            entry.session.close()
        except p11.PKCS11Error:
            pass

    def forget_login(self, state: PoolState, entry: PooledSession) -> None:
        if entry.logged_in:
            state.module.logout(entry.session.handle)
        entry.logged_in = False
        entry.private_keys.clear()
        entry.secret_keys.clear()

    def close(self) -> None:
        """Close every pooled session. Key objects handed out so far raise
        :class:`LoginRequired` afterwards; the library itself can be used again.

        No C_Logout: through the token server every process shares one login per token, so
        a process that ends (a recycled gunicorn worker) would log the CA token out under
        the others. The module logs a token out itself when its last session closes."""
        module = _mod._registry.get(self.module_path)
        if module is None or self._current is None:
            return
        with module.lock:
            state = self._current
            if state is None or state.module is not module or state.pid != os.getpid() \
                    or state.generation != module.generation:
                self._current = None
                return
            for label in list(state.entries):
                self.drop(state, label, logout=False)
            state.slots.clear()
            state.slot_labels.clear()


__all__ = ["GONE", "GONE_RV", "LABEL_MAX_BYTES", "PoolState", "PooledSession", "SessionPool",
           "check_label", "module_error"]
