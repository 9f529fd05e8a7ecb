"""One process holds the PKCS#11 module; every other process reaches it through p11-kit.

Why: SoftHSM2 reads its token store when a process initialises it and keeps that state (the
PIN blobs, the list of tokens) for the life of the process. Two processes that load SoftHSM2
each see their own copy: a PIN changed in one still opens the token in the other, a token
created in one is missing in the other. A network HSM has one state; so must we.

How: this process loads the module ONCE and answers p11-kit's RPC protocol on a unix socket;
the other processes load ``p11-kit-client.so`` with ``P11_KIT_SERVER_ADDRESS`` pointing here.
The protocol and its dispatch are p11-kit's own (``p11_kit_remote_serve_module`` of
``libp11-kit.so.0``, the function behind ``p11-kit remote``); this file only accepts the
connections and gives each one a thread. We do not use ``p11-kit server`` itself: it forks
and runs one ``p11-kit remote`` process per connection, so each connection gets its own
SoftHSM2 state and the staleness comes back between connections (measured, see docs/hsm.md).

Each connection gets its own p11-kit *managed* instance of the module (``p11_kit_module_load``
with no flags): the module below is loaded and initialised once in this process, and a
client's C_Finalize, or its connection dropping, closes only that client's sessions. Login
state is the module's and therefore shared by all clients, as it is for one application on a
network HSM.

Run it with ``python -m hsm.server --module PATH --socket PATH [--pid-file PATH]`` (``tawqi
hsm serve`` does that). SIGTERM or SIGINT stop it; it removes its socket and pid file.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from hsm.errors import ModuleUnavailable

#: Debian's p11-kit client module (package p11-kit-modules).
CLIENT_MODULE_PATH = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"

_P11_KIT_LIBRARY = "libp11-kit.so.0"


def client_module_path() -> str:
    """The p11-kit client module of this machine (multiarch directory first)."""
    candidates = [CLIENT_MODULE_PATH]
    for base in ("/usr/lib", "/usr/lib64", "/usr/local/lib"):
        candidates.extend(str(p) for p in Path(base).glob("*/pkcs11/p11-kit-client.so"))
        candidates.append(f"{base}/pkcs11/p11-kit-client.so")
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ModuleUnavailable("p11-kit's client module is not installed (Debian package "
                            "p11-kit-modules).", module=CLIENT_MODULE_PATH)


def server_address(socket_path: str | os.PathLike[str]) -> str:
    """The ``P11_KIT_SERVER_ADDRESS`` value for a unix socket path."""
    return f"unix:path={os.fspath(socket_path)}"


class _P11Kit:
    """The few functions of libp11-kit this server needs."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("p11-kit") or _P11_KIT_LIBRARY
        try:
            dll = ctypes.CDLL(name)
        except OSError as exc:
            raise ModuleUnavailable("libp11-kit is not installed (Debian package "
                                    "libp11-kit0).") from exc
        self.load = dll.p11_kit_module_load
        self.load.restype = ctypes.c_void_p
        self.load.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.release = dll.p11_kit_module_release
        self.release.restype = None
        self.release.argtypes = [ctypes.c_void_p]
        self.initialize = dll.p11_kit_module_initialize
        self.initialize.restype = ctypes.c_ulong
        self.initialize.argtypes = [ctypes.c_void_p]
        self.finalize = dll.p11_kit_module_finalize
        self.finalize.restype = ctypes.c_ulong
        self.finalize.argtypes = [ctypes.c_void_p]
        self.serve = dll.p11_kit_remote_serve_module
        self.serve.restype = ctypes.c_int
        self.serve.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]


class ModuleServer:
    """Serve one PKCS#11 module to any number of local processes over a unix socket.

    The socket is created mode 0600 (only this user's processes may connect). ``serve`` blocks
    until :meth:`stop`; the module stays loaded and initialised in this process meanwhile, so
    every client sees one token state.
    """

    def __init__(self, module_path: str, socket_path: str | os.PathLike[str], *,
                 idle_timeout: float | None = None) -> None:
        if not os.path.isfile(module_path):
            raise ModuleUnavailable("The PKCS#11 module file does not exist.",
                                    module=module_path)
        self.module_path = module_path
        self.socket_path = Path(socket_path)
        self._p11 = _P11Kit()
        self.idle_timeout = idle_timeout
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._active = 0
        self._active_lock = threading.Lock()
        self._idle_since = time.monotonic()
        self._socket_inode: int | None = None
        # The instance that keeps the module initialised between clients.
        self._anchor: int | None = None

    def _load(self) -> int:
        module = self._p11.load(self.module_path.encode(), 0)
        if not module:
            raise ModuleUnavailable("p11-kit could not load the PKCS#11 module.",
                                    module=self.module_path)
        return int(module)

    def start(self) -> None:
        """Load and initialise the module, then listen (the socket exists on return)."""
        self._anchor = self._load()
        rv = self._p11.initialize(self._anchor)
        if rv != 0:
            self._p11.release(self._anchor)
            self._anchor = None
            raise ModuleUnavailable("The PKCS#11 module did not initialise.",
                                    module=self.module_path, code=f"0x{rv:x}")
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        listener.listen(128)
        self._listener = listener
        self._socket_inode = self.socket_path.stat().st_ino

    def serve(self) -> None:
        """Accept connections until :meth:`stop`; one thread per connection."""
        if self._listener is None:
            self.start()
        listener = self._listener
        if listener is None:  # pragma: no cover - start() sets it
            raise ModuleUnavailable("The server is not listening.")
        listener.settimeout(1.0 if self.idle_timeout is not None else None)
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                with self._active_lock:
                    idle = self._active == 0 and \
                        time.monotonic() - self._idle_since >= (self.idle_timeout or 0)
                if idle:
                    break
                continue
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            conn.settimeout(None)
            with self._active_lock:
                self._active += 1
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True,
                             name="p11-client").start()
        self._close()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            try:
                module = self._load()
            except ModuleUnavailable:
                with self._active_lock:
                    self._active -= 1
                return
            try:
                # Returns when the client disconnects; the GIL is released meanwhile.
                self._p11.serve(module, conn.fileno(), conn.fileno())
            finally:
                self._p11.release(module)
                with self._active_lock:
                    self._active -= 1
                    self._idle_since = time.monotonic()

    def stop(self) -> None:
        """Stop accepting; ``serve`` returns, removes the socket and finalises the module."""
        self._stopping.set()
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()

    def _close(self) -> None:
        # Remove the socket only if it is still ours (not a newer server's at the same path).
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.stat().st_ino == self._socket_inode:
                self.socket_path.unlink()
        if self._anchor is not None:
            self._p11.finalize(self._anchor)
            self._p11.release(self._anchor)
            self._anchor = None


def is_serving(socket_path: str | os.PathLike[str]) -> bool:
    """Whether something accepts connections on ``socket_path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(os.fspath(socket_path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def ensure_server(module_path: str, socket_path: str | os.PathLike[str], *,
                  idle_timeout: float | None = None, start_timeout: float = 15.0
                  ) -> tuple[str, bool]:
    """Return the address of a server of ``module_path`` on ``socket_path`` and whether this
    call started it: one is started
    (``python -m hsm.server``, detached, with a pid file and a log beside the socket) if none
    answers). A file lock makes concurrent callers (workers booting together) start one.

    The started server inherits this process's environment (``SOFTHSM2_CONF``). It is left
    running for the other processes; it ends after ``idle_timeout`` seconds without any
    client, or by :func:`stop_server`.
    """
    sock = Path(socket_path).absolute()
    if is_serving(sock):
        return server_address(sock), False
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(sock.parent / "server.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_serving(sock):
            return server_address(sock), False
        pid_file = sock.with_suffix(".pid")
        command = [sys.executable, "-m", "hsm.server", "--module", module_path,
                   "--socket", str(sock), "--pid-file", str(pid_file)]
        if idle_timeout is not None:
            command += ["--idle-timeout", str(idle_timeout)]
        with open(sock.with_suffix(".log"), "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log, start_new_session=True)
        deadline = time.monotonic() + start_timeout
        # Serving, and its pid file written (just after it starts listening): whoever got
        # True back may end it by that file at once (gunicorn's master, `tawqi hsm stop`).
        while not (is_serving(sock) and pid_file.exists()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ModuleUnavailable("The token server did not start; see its log.",
                                        log=str(sock.with_suffix(".log")))
            time.sleep(0.05)
    return server_address(sock), True


def stop_server(pid_file: str | os.PathLike[str], *, timeout: float = 10.0) -> bool:
    """End the server whose pid ``pid_file`` names (SIGTERM, then wait). Returns False if it
    was not running. The pid is checked to be an ``hsm.server`` process before signalling."""
    path = Path(pid_file)
    try:
        pid = int(path.read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if b"hsm.server" not in cmdline:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        time.sleep(0.05)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hsm.server",
        description="Serve one PKCS#11 module to local processes through p11-kit's RPC.")
    parser.add_argument("--module", required=True, help="the PKCS#11 module to serve")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument("--pid-file", help="write this process's id here while serving")
    parser.add_argument("--idle-timeout", type=float,
                        help="exit after this many seconds without any client")
    args = parser.parse_args(argv)
    server = ModuleServer(args.module, args.socket, idle_timeout=args.idle_timeout)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.start()
    except ModuleUnavailable as exc:
        print(f"hsm.server: {exc}", file=sys.stderr)
        return 1
    pid_file = Path(args.pid_file) if args.pid_file else None
    if pid_file is not None:
        # Whole or absent, never half-written, for a reader that comes at once.
        written = pid_file.with_name(pid_file.name + f".{os.getpid()}")
        written.write_text(f"{os.getpid()}\n", encoding="ascii")
        os.replace(written, pid_file)
    print(f"serving {args.module} at {server_address(server.socket_path)}", flush=True)
    try:
        server.serve()
    finally:
        if pid_file is not None:
            with contextlib.suppress(OSError):
                if pid_file.read_text(encoding="ascii").strip() == str(os.getpid()):
                    pid_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
