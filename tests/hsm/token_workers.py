"""Worker processes for the token-server tests: each is a separate Python process (spawned,
not forked) with its own TokenLibrary over p11-kit's client module and its own database PIN
counter, as a gunicorn worker has. The test drives them over a pipe."""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

_MESSAGE = b"signed in another process"


def _outcome(exc: BaseException) -> tuple[str, dict[str, Any]]:
    extras = getattr(exc, "extras", {}) or {}
    return type(exc).__name__, {k: v for k, v in extras.items() if k == "attempts_left"}


def serve(conn: Connection, database_url: str, barrier: Barrier) -> None:
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    from core.db import make_engine
    from delivery.pins import DatabasePinAttemptStore
    from hsm import TokenLibrary
    from hsm.server import client_module_path

    engine = make_engine(database_url)
    store = DatabasePinAttemptStore(engine)
    library = TokenLibrary(client_module_path(), attempts=store, max_attempts=5)

    def sign(label: str, pin: str, key_id: bytes) -> bytes:
        key = library.private_key(label, pin, key_id=key_id)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(_MESSAGE, ec.ECDSA(hashes.SHA256()))

    held: dict[str, Any] = {}

    def hold(label: str, pin: str, key_id: bytes) -> None:
        """Keep a key object, as the API keeps the CA's key for the life of the process."""
        held[label] = library.private_key(label, pin, key_id=key_id)

    def sign_held(label: str) -> bytes:
        return held[label].sign(_MESSAGE, ec.ECDSA(hashes.SHA256()))

    def generate(label: str, pin: str, key_id: bytes) -> bytes:
        public = library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k",
                                           key_id=key_id)
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def burst(label: str, pin: str, threads: int) -> list[tuple[str, dict[str, Any]]]:
        """Wait for every worker, then try ``pin`` from ``threads`` threads at once."""
        results: list[tuple[str, dict[str, Any]]] = []
        barrier.wait(timeout=60)
        start = threading.Barrier(threads)

        def attempt() -> None:
            start.wait(timeout=60)
            try:
                library.check_pin(label, pin)
                results.append(("ok", {}))
            except Exception as exc:
                results.append(_outcome(exc))

        running = [threading.Thread(target=attempt) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
        return results

    def forked_check_pin(label: str, pin: str) -> int:
        """Fork (as a pre-fork server does after using the module): the child checks the
        PIN through its own connection; its exit code says whether it worked."""
        library.check_pin(label, pin)
        import os

        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                # The parent's pooled database connections are not the child's.
                store._engine.dispose(close=False)
                library.check_pin(label, pin)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        library.check_pin(label, pin)  # and the parent's connection still works
        return os.waitstatus_to_exitcode(status)

    def sign_many(label: str, pin: str, key_id: bytes, count: int) -> dict[str, int]:
        """Wait for the other workers, then sign ``count`` times with one key object."""
        key = library.private_key(label, pin, key_id=key_id)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        barrier.wait(timeout=60)
        seen: dict[str, int] = {}
        for _ in range(count):
            try:
                key.sign(_MESSAGE, ec.ECDSA(hashes.SHA256()))
                name = "ok"
            except Exception as exc:
                name = f"{type(exc).__name__}:{getattr(exc, 'extras', {}).get('code')}"
            seen[name] = seen.get(name, 0) + 1
        return seen

    def sign_batches(label: str, pin: str, key_id: bytes, count: int) -> dict[str, int]:
        """Wait for the other workers, then sign ``count`` digests in batches of 50 with
        one key object (the batch path); each signature must verify."""
        key = library.private_key(label, pin, key_id=key_id)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        prehashed = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        barrier.wait(timeout=60)
        seen: dict[str, int] = {}
        for start in range(0, count, 50):
            digests = [hashlib.sha256(b"%d" % n).digest()
                       for n in range(start, min(start + 50, count))]
            try:
                for digest, signature in zip(digests, key.sign_digests(  # type: ignore
                        digests, hashes.SHA256()), strict=True):
                    key.public_key().verify(signature, digest, prehashed)
                name = "ok"
            except Exception as exc:
                name = f"{type(exc).__name__}:{getattr(exc, 'extras', {}).get('code')}"
            seen[name] = seen.get(name, 0) + len(digests)
        return seen

    def check_many(label: str, pin: str, count: int) -> int:
        """Wait for the other workers, then check the (right) PIN ``count`` times."""
        barrier.wait(timeout=60)
        for _ in range(count):
            library.check_pin(label, pin)
        return count

    def init_many(prefix: str, so_pin: str, pin: str, count: int) -> list[str]:
        """Wait for the other workers, then initialise ``count`` tokens, each inside the
        cross-process exclusion personalisation uses (core.db.exclusive)."""
        from core.db import exclusive, make_session_factory, transaction

        barrier.wait(timeout=60)
        failures = []
        for n in range(count):
            with transaction(make_session_factory(engine)) as session, \
                    exclusive(session, "tawqi.token-init"):
                try:
                    library.init_token(f"{prefix}-{n}", so_pin, pin)
                except Exception as exc:
                    failures.append(type(exc).__name__)
        return failures

    commands: dict[str, Any] = {
        "init_many": init_many,
        "init_token": library.init_token, "check_pin": library.check_pin,
        "change_pin": library.change_pin, "reset_pin": library.reset_pin,
        "token_exists": library.token_exists, "failures": store.failures,
        "sign": sign, "generate": generate, "burst": burst,
        "forked_check_pin": forked_check_pin, "sign_many": sign_many,
        "sign_batches": sign_batches,
        "signatures_in_lanes": lambda: library.signatures_in_lanes,
        "check_many": check_many, "ensure_secret_key": library.ensure_secret_key,
        "encrypt": library.encrypt, "decrypt": library.decrypt,
        "hold": hold, "sign_held": sign_held, "close": library.close,
    }
    try:
        while True:
            name, args = conn.recv()
            if name == "quit":
                break
            try:
                conn.send(("ok", commands[name](*args)))
            except Exception as exc:
                conn.send(_outcome(exc))
    finally:
        library.close()
        store.dispose()
        engine.dispose()


class Worker:
    """One worker process and its end of the pipe."""

    def __init__(self, ctx: Any, database_url: str, barrier: Barrier) -> None:
        self.barrier = barrier  # kept alive until the children have unpickled it
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child_end, database_url, barrier),
                                   daemon=True)
        self.process.start()

    def call(self, name: str, *args: Any) -> tuple[str, Any]:
        self.conn.send((name, args))
        if not self.conn.poll(120):
            raise TimeoutError(f"worker did not answer {name}")
        result: tuple[str, Any] = self.conn.recv()
        return result

    def ok(self, name: str, *args: Any) -> Any:
        status, value = self.call(name, *args)
        if status != "ok":
            raise AssertionError(f"{name}: {status} {value}")
        return value

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send(("quit", ()))
            self.process.join(30)
        if self.process.is_alive():  # pragma: no cover - only if a worker hangs
            self.process.terminate()
            self.process.join(10)


def start_workers(count: int, database_url: str) -> list[Worker]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    return [Worker(ctx, database_url, barrier) for _ in range(count)]


MESSAGE = _MESSAGE
