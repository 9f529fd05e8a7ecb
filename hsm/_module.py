"""One loaded PKCS#11 module per process: loading, the module lock, and raw calls.

A PKCS#11 module is process-global state: it is initialised once per process (C_Initialize)
and, as python-pkcs11 initialises it without OS locking, it must never be entered by two
threads at once (two threads signing through SoftHSM2 together crash the process). So this
file keeps, per module path and per process, one :class:`LoadedModule` holding the
python-pkcs11 ``lib`` and ONE re-entrant lock; every call into the module goes through that
lock. Session pools are not here: they belong to each :class:`hsm.library.TokenLibrary`.

After a fork (gunicorn workers) the child sees the parent's entry, notices the pid changed and
initialises the module anew (PKCS#11 §5.4: a child must call C_Initialize; objects inherited
from the parent are kept referenced, never used, so no stale handle is closed in the child).

python-pkcs11 does not expose C_InitToken, nor C_Login/C_Logout on an already open session,
nor a slot list without a round trip per slot; those (and the few calls a token's
initialisation needs) are called here through ``ctypes`` on the same module's function
list (dlopen of the same path returns the same loaded library, so the state is shared).
This is plain PKCS#11, nothing SoftHSM-specific.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

import pkcs11
from pkcs11.exceptions import PKCS11Error

from hsm.errors import ModuleUnavailable

# Return values and user types from the PKCS#11 specification.
CKR_OK = 0x000
CKR_SLOT_ID_INVALID = 0x003
CKR_GENERAL_ERROR = 0x005
CKR_KEY_HANDLE_INVALID = 0x060
CKR_OBJECT_HANDLE_INVALID = 0x082
CKR_BUFFER_TOO_SMALL = 0x150
CKR_DEVICE_ERROR = 0x030
CKR_DEVICE_REMOVED = 0x032
CKR_PIN_INCORRECT = 0x0A0
CKR_PIN_INVALID = 0x0A1
CKR_PIN_LEN_RANGE = 0x0A2
CKR_PIN_EXPIRED = 0x0A3
CKR_PIN_LOCKED = 0x0A4
CKR_SESSION_CLOSED = 0x0B0
CKR_SESSION_HANDLE_INVALID = 0x0B3
CKR_SESSION_EXISTS = 0x0B6
CKR_SESSION_READ_ONLY_EXISTS = 0x0B7
CKR_TOKEN_NOT_PRESENT = 0x0E0
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_USER_ANOTHER_ALREADY_LOGGED_IN = 0x104
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191

CKU_SO = 0
CKU_USER = 1

_ULONG = ctypes.c_ulong
_BYTES = ctypes.c_char_p

# The head of CK_FUNCTION_LIST, in the order of the specification, up to C_Sign.
_FUNCTIONS = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
    "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState",
    "C_SetOperationState", "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject",
    "C_DestroyObject", "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue",
    "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_EncryptInit",
    "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit", "C_Decrypt",
    "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest", "C_DigestUpdate",
    "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign",
)


class _FunctionListHead(ctypes.Structure):
    _fields_ = [("version", ctypes.c_ubyte * 2)] + [(name, ctypes.c_void_p)
                                                     for name in _FUNCTIONS]


CKF_RW_SESSION = 0x2
CKF_SERIAL_SESSION = 0x4
CKF_TOKEN_INITIALIZED = 0x400


class _TokenInfo(ctypes.Structure):
    """CK_TOKEN_INFO (PKCS#11 v2.40, default alignment as on Linux)."""

    _fields_ = [
        ("label", ctypes.c_char * 32), ("manufacturer", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16), ("serial", ctypes.c_char * 16), ("flags", _ULONG),
        # session counts, PIN lengths, memory: ten CK_ULONG
        ("counters", _ULONG * 10),
        ("hardware", ctypes.c_ubyte * 2), ("firmware", ctypes.c_ubyte * 2),
        ("utc_time", ctypes.c_char * 16)]


_Initialize = ctypes.CFUNCTYPE(_ULONG, ctypes.c_void_p)
_GetSlotList = ctypes.CFUNCTYPE(_ULONG, ctypes.c_ubyte, ctypes.POINTER(_ULONG),
                                ctypes.POINTER(_ULONG))
_GetTokenInfo = ctypes.CFUNCTYPE(_ULONG, _ULONG, ctypes.POINTER(_TokenInfo))
_InitToken = ctypes.CFUNCTYPE(_ULONG, _ULONG, _BYTES, _ULONG, _BYTES)
_InitPIN = ctypes.CFUNCTYPE(_ULONG, _ULONG, _BYTES, _ULONG)
_OpenSession = ctypes.CFUNCTYPE(_ULONG, _ULONG, _ULONG, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.POINTER(_ULONG))
_CloseSession = ctypes.CFUNCTYPE(_ULONG, _ULONG)
_Login = ctypes.CFUNCTYPE(_ULONG, _ULONG, _ULONG, _BYTES, _ULONG)
_Logout = ctypes.CFUNCTYPE(_ULONG, _ULONG)


class _Mechanism(ctypes.Structure):
    """CK_MECHANISM."""

    _fields_ = [("mechanism", _ULONG), ("parameter", ctypes.c_void_p),
                ("parameter_length", _ULONG)]


_SignInit = ctypes.CFUNCTYPE(_ULONG, _ULONG, ctypes.POINTER(_Mechanism), _ULONG)
_Sign = ctypes.CFUNCTYPE(_ULONG, _ULONG, _BYTES, _ULONG, ctypes.c_void_p,
                         ctypes.POINTER(_ULONG))

#: The output buffer of :meth:`LoadedModule.sign`: an RSA-8192 signature fits.
SIGNATURE_BUFFER = 1024


class LoadedModule:
    """A PKCS#11 module initialised in this process, with its lock.

    Hold :attr:`lock` around every call into the module, including python-pkcs11 calls on
    sessions and objects that came from :attr:`lib`. ``generation`` changes whenever the
    module is finalised and initialised again; sessions of an older generation are dead.
    """

    def __init__(self, path: str, lib: Any) -> None:
        self.path = path
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.lib = lib
        self.generation = 0
        #: One instance per C_GetFunctionList call (p11-kit's client); see _per_instance.
        self.per_instance = False
        #: For a client of a token server: the server socket as it was when this instance
        #: connected (see :meth:`server_restarted`), and whether a call found the connection
        #: dead (the next use initialises the module again, which reconnects).
        self.server_id: tuple[str, int, int, int] | None = None
        self.needs_reset = False
        self._raw: dict[str, Any] | None = None
        self._lanes: list[SigningLane] = []

    def _functions(self) -> dict[str, Any]:
        if self._raw is None:
            dll, table = _instance(self.path)
            self._raw = {
                "dll": dll,
                "initialize": _Initialize(table.C_Initialize),
                "slot_list": _GetSlotList(table.C_GetSlotList),
                "token_info": _GetTokenInfo(table.C_GetTokenInfo),
                "init_token": _InitToken(table.C_InitToken),
                "init_pin": _InitPIN(table.C_InitPIN),
                "open_session": _OpenSession(table.C_OpenSession),
                "close_session": _CloseSession(table.C_CloseSession),
                "login": _Login(table.C_Login),
                "logout": _Logout(table.C_Logout),
                "sign_init": _SignInit(table.C_SignInit),
                "sign": _Sign(table.C_Sign),
            }
        return self._raw

    # Raw calls: the caller holds ``self.lock``. They return the CK_RV, never raise on it.

    def c_initialize(self) -> int:
        """C_Initialize(NULL), bypassing python-pkcs11's "already initialised" flag (which a
        forked child inherits from its parent)."""
        return int(self._functions()["initialize"](None))

    def init_token(self, slot_id: int, so_pin: str, label: str) -> int:
        pin = so_pin.encode("utf-8")
        padded = label.encode("utf-8").ljust(32, b" ")
        return int(self._functions()["init_token"](slot_id, pin, len(pin), padded))

    def slot_ids(self) -> tuple[int, list[int]]:
        """(CK_RV, the ids of the slots with a token present): one call, no per-slot
        information (python-pkcs11's ``get_slots`` asks each slot, O(n) round trips through
        the token server)."""
        function = self._functions()["slot_list"]
        for _attempt in range(3):
            count = _ULONG(0)
            rv = int(function(1, None, ctypes.byref(count)))
            if rv != CKR_OK:
                return rv, []
            ids = (_ULONG * max(count.value, 1))()
            rv = int(function(1, ids, ctypes.byref(count)))
            if rv == CKR_BUFFER_TOO_SMALL:  # a token appeared between the two calls
                continue
            return rv, list(ids[:count.value])
        return CKR_BUFFER_TOO_SMALL, []

    def token_info(self, slot_id: int) -> tuple[int, str, int]:
        """(CK_RV, label, flags) of the token in ``slot_id``."""
        info = _TokenInfo()
        rv = int(self._functions()["token_info"](slot_id, ctypes.byref(info)))
        if rv != CKR_OK:
            return rv, "", 0
        label = bytes(info.label).decode("utf-8", "replace").rstrip(" \x00")
        return rv, label, int(info.flags)

    def open_session(self, slot_id: int) -> tuple[int, int]:
        """(CK_RV, handle) of a new read/write session on ``slot_id``."""
        return _open_session(self._functions(), slot_id)

    def close_session(self, session_handle: int) -> int:
        return int(self._functions()["close_session"](session_handle))

    def init_pin(self, session_handle: int, pin: str) -> int:
        data = pin.encode("utf-8")
        return int(self._functions()["init_pin"](session_handle, data, len(data)))

    def login(self, session_handle: int, user_type: int, pin: str) -> int:
        data = pin.encode("utf-8")
        return int(self._functions()["login"](session_handle, user_type, data, len(data)))

    def logout(self, session_handle: int) -> int:
        return int(self._functions()["logout"](session_handle))

    def sign(self, session_handle: int, key_handle: int, mechanism: int,
             data: bytes) -> tuple[int, bytes]:
        """(CK_RV, signature): C_SignInit then ONE C_Sign into a buffer that fits any
        signature, for a mechanism without parameters. python-pkcs11 asks C_Sign for the
        length first, a third call; through the token server each call is a round trip,
        so this signs a batch about a third faster (measured in bench/sign_hash.py)."""
        return _sign(self._functions(), session_handle, key_handle, mechanism, data)

    def lanes(self, count: int) -> list[SigningLane]:
        """Up to ``count`` signing lanes of this module (created on first use; none for a
        module without instances). The caller holds :attr:`lock`."""
        if not self.per_instance:
            return []
        while len(self._lanes) < count:
            self._lanes.append(SigningLane(self.path))
        return self._lanes[:count]

    def server_restarted(self) -> bool:
        """For p11-kit's client module: whether the token server's socket is another one
        than when this instance connected (the server restarted: the connection is dead)."""
        if not self.per_instance:
            return False
        current = server_socket_id()
        if current is not None and self.server_id is not None and \
                current[0] != self.server_id[0]:
            return False  # another address: p11-kit's client keeps the one it read first
        # Also from "none" to a socket: p11-kit's client initialises without its server
        # (it then shows no slot at all), so an instance made during an outage is stale too.
        return current != self.server_id

    def reinitialize(self) -> None:
        """C_Finalize then C_Initialize (the module re-reads its configuration; p11-kit's
        client connects to its server again)."""
        with self.lock:
            if self.per_instance:
                # The raw functions' own instance holds a connection too: take a new one,
                # and so do the signing lanes.
                self._raw = None
                self.server_id = server_socket_id()
                lanes, self._lanes = self._lanes, []
                for lane in lanes:
                    lane.close()
            try:
                self.lib.finalize()
            except PKCS11Error:
                pass
            try:
                self.lib.initialize()
            except PKCS11Error as exc:
                self.needs_reset = True
                raise ModuleUnavailable("The token module could not be initialised again.",
                                        module=self.path) from exc
            self.needs_reset = False
            self.generation += 1


def _instance(path: str) -> tuple[ctypes.CDLL, _FunctionListHead]:
    """The module at ``path`` and the head of a function list of its, initialised.

    A module may hand out a separate instance per C_GetFunctionList call (p11-kit's client
    module opens one connection per instance): this one is initialised too. A module with
    one global state (SoftHSM2) answers "already initialised"."""
    dll = ctypes.CDLL(path)
    get_list = dll.C_GetFunctionList
    get_list.restype = _ULONG
    get_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionListHead))]
    head = ctypes.POINTER(_FunctionListHead)()
    rv = get_list(ctypes.byref(head))
    if rv != CKR_OK or not head:
        raise ModuleUnavailable("The token module has no usable function list.", code=rv)
    table = head.contents
    rv = int(_Initialize(table.C_Initialize)(None))
    if rv not in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
        raise ModuleUnavailable("The token module could not be initialised.", module=path,
                                code=f"0x{rv:x}")
    return dll, table


def _open_session(functions: dict[str, Any], slot_id: int) -> tuple[int, int]:
    handle = _ULONG(0)
    rv = int(functions["open_session"](slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, None,
                                       None, ctypes.byref(handle)))
    return rv, int(handle.value)


def _sign(functions: dict[str, Any], session_handle: int, key_handle: int, mechanism: int,
          data: bytes) -> tuple[int, bytes]:
    mech = _Mechanism(mechanism, None, 0)
    rv = int(functions["sign_init"](session_handle, ctypes.byref(mech), key_handle))
    if rv != CKR_OK:
        return rv, b""
    size = SIGNATURE_BUFFER
    while True:
        out = ctypes.create_string_buffer(size)
        length = _ULONG(size)
        rv = int(functions["sign"](session_handle, data, len(data), out, ctypes.byref(length)))
        if rv == CKR_BUFFER_TOO_SMALL and length.value > size:
            size = int(length.value)  # the operation stays active: sign again
            continue
        return rv, out.raw[:length.value] if rv == CKR_OK else b""


class SigningLane:
    """Another instance of a module with instances (p11-kit's client: its own connection
    to the token server, which serves each connection in a thread of its own), with its
    own session per slot, to sign part of a batch in parallel. Through a token server a
    signature is two round trips; while one connection waits, another can sign.

    A lane is used by one thread at a time (:attr:`lock`), never by python-pkcs11 and
    never under the module lock (its calls go through its own connection). Key handles
    are the token's, valid on any connection."""

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        dll, table = _instance(path)
        self._functions: dict[str, Any] = {
            "dll": dll, "finalize": _Initialize(table.C_Finalize),
            "open_session": _OpenSession(table.C_OpenSession),
            "sign_init": _SignInit(table.C_SignInit), "sign": _Sign(table.C_Sign)}
        self._sessions: dict[int, int] = {}

    def session(self, slot_id: int) -> int | None:
        """This lane's session on ``slot_id`` (opened once), or None if none opens."""
        handle = self._sessions.get(slot_id)
        if handle is None:
            rv, handle = _open_session(self._functions, slot_id)
            if rv != CKR_OK:
                return None
            self._sessions[slot_id] = handle
        return handle

    def forget(self, slot_id: int) -> None:
        self._sessions.pop(slot_id, None)

    def sign(self, session_handle: int, key_handle: int, mechanism: int,
             data: bytes) -> tuple[int, bytes]:
        return _sign(self._functions, session_handle, key_handle, mechanism, data)

    def close(self) -> None:
        """End this lane's instance (its connection and sessions)."""
        with self.lock:
            self._sessions.clear()
            self._functions["finalize"](None)


def server_socket_id() -> tuple[str, int, int, int] | None:
    """Identity of the token server's unix socket named by ``P11_KIT_SERVER_ADDRESS``
    (its path, device, inode, modification time: an inode number may be reused), or None
    while nothing is there."""
    address = os.environ.get("P11_KIT_SERVER_ADDRESS", "")
    if not address.startswith("unix:path="):
        return None
    try:
        found = os.stat(address[len("unix:path="):])
    except OSError:
        return None
    return (address, found.st_dev, found.st_ino, found.st_mtime_ns)


_registry_lock = threading.Lock()
_registry: dict[str, LoadedModule] = {}
# Objects inherited from a parent process: kept referenced so that nothing in the child
# ever closes a handle through them (a handle number may be reused by the child's module).
_inherited: list[LoadedModule] = []


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _per_instance(path: str) -> bool:
    """Whether the module hands out a new instance per C_GetFunctionList call (p11-kit's
    client module does: one server connection each) rather than one static function list
    (SoftHSM2 and most modules)."""
    get_list = ctypes.CDLL(path).C_GetFunctionList
    get_list.restype = _ULONG
    get_list.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    first, second = ctypes.c_void_p(), ctypes.c_void_p()
    if get_list(ctypes.byref(first)) != CKR_OK or get_list(ctypes.byref(second)) != CKR_OK:
        return False
    return bool(first.value != second.value)


def _child_lib(path: str, inherited: LoadedModule) -> Any:
    """In a forked child: the python-pkcs11 ``lib`` to use.

    For a module with instances (p11-kit's client), the parent's instance must not be used
    by the child (its connection is the parent's): a new ``lib`` object gets a new instance
    and initialises it. Otherwise the inherited object is kept, as python-pkcs11 caches it.
    """
    if inherited.per_instance:
        from pkcs11 import _pkcs11

        return _pkcs11.lib(path)
    return pkcs11.lib(path)


def load_module(path: str) -> LoadedModule:
    """Return the module at ``path`` loaded and initialised in THIS process.

    Raises :class:`ModuleUnavailable` if the file is missing or the module fails to start.
    """
    pid = os.getpid()
    module = _registry.get(path)
    if module is not None and module.pid == pid:
        return module
    with _registry_lock:
        module = _registry.get(path)
        if module is not None and module.pid == pid:
            return module
        if not os.path.isfile(path):
            raise ModuleUnavailable("The PKCS#11 module file does not exist.", module=path)
        real = os.path.realpath(path)
        other = next((m for m in _registry.values()
                      if m.pid == pid and os.path.realpath(m.path) == real), None)
        if other is not None:
            # The same module under another name: share its lock, never a second one.
            _registry[path] = other
            return other
        try:
            lib = _child_lib(path, module) if module is not None else pkcs11.lib(path)
        except (PKCS11Error, OSError) as exc:
            raise ModuleUnavailable("The PKCS#11 module could not be loaded.",
                                    module=path) from exc
        fresh = LoadedModule(path, lib)
        fresh.per_instance = module.per_instance if module is not None \
            else _per_instance(path)
        if fresh.per_instance:
            fresh.server_id = server_socket_id()
        if module is not None:
            # Inherited from the parent (fork): the child must call C_Initialize itself
            # (PKCS#11 v2.40, section 6.7.7). No C_Finalize: it could tear down state that
            # the parent still uses (a network HSM client's connection, say). A module that
            # does not notice the fork answers "already initialised"; we then go on with it.
            _inherited.append(module)
            rv = fresh.c_initialize()
            if rv not in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
                raise ModuleUnavailable("The PKCS#11 module could not be initialised in "
                                        "this process.", module=path, code=f"0x{rv:x}")
        _registry[path] = fresh
        return fresh
