"""Threads share one library safely; a forked child initialises the module anew."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from hsm import PinIncorrect, TokenLibrary, _module
from tests.hsm_fixtures import HsmToken

pytestmark = pytest.mark.hsm


def test_eight_threads_sign_at_once(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    library.generate_key_pair(label, pin, key_type="EC-P256", key_label="ec", key_id=b"\x01")
    library.generate_key_pair(label, pin, key_type="RSA-2048", key_label="rsa",
                              key_id=b"\x02")
    ec_key = library.private_key(label, pin, key_id=b"\x01")
    rsa_key = library.private_key(label, pin, key_id=b"\x02")
    start = threading.Barrier(8)

    def work(worker: int) -> int:
        start.wait()
        done = 0
        for i in range(40):
            data = f"{worker}:{i}".encode()
            if (worker + i) % 4:
                signature = ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
                ec_key.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                signature = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
                rsa_key.public_key().verify(signature, data, padding.PKCS1v15(),
                                            hashes.SHA256())
            done += 1
        return done

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(work, range(8))) == 320


def test_threads_mixing_tokens_pin_checks_and_signatures(
        softhsm_library: TokenLibrary, hsm_token_factory: object) -> None:
    tokens = [hsm_token_factory() for _ in range(4)]  # type: ignore[operator]
    for token in tokens:
        softhsm_library.generate_key_pair(token.label, token.user_pin, key_type="EC-P256",
                                          key_label="k", key_id=b"\x01")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        token = tokens[worker % 4]
        try:
            start.wait()
            for i in range(15):
                key = softhsm_library.private_key(token.label, token.user_pin,
                                                  key_id=b"\x01")
                key.public_key().verify(key.sign(b"m", ec.ECDSA(hashes.SHA256())), b"m",
                                        ec.ECDSA(hashes.SHA256()))
                softhsm_library.read_certificate(token.label, key_id=b"\x01")
                softhsm_library.token_exists(f"missing-{worker}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Two threads on one token may log it out under each other's feet (LoginRequired) only
    # if a PIN were wrong; all PINs here are right, so nothing may fail.
    assert errors == []


def test_concurrent_wrong_pins_never_exceed_the_limit(hsm_token: HsmToken) -> None:
    library, label, _, pin = hsm_token
    wrong = "730519" if pin != "730519" else "840621"
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            library.check_pin(label, wrong)
        except PinIncorrect:
            outcomes.append("incorrect")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("incorrect") == 4
    assert outcomes.count("PinLocked") == 8


def test_forked_child_loads_the_module_anew(hsm_token: HsmToken) -> None:
    """The parent used the module; the child (like a gunicorn worker) must initialise it for
    itself and open its own sessions through the same TokenLibrary object."""
    library, label, _, pin = hsm_token
    public = library.generate_key_pair(label, pin, key_type="EC-P256", key_label="k",
                                       key_id=b"\x01")
    library.private_key(label, pin, key_id=b"\x01").sign(b"parent", ec.ECDSA(hashes.SHA256()))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            key = library.private_key(label, pin, key_id=b"\x01")
            signature = key.sign(b"child", ec.ECDSA(hashes.SHA256()))
            os.write(write_end, signature)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        signature = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    public.verify(signature, b"child", ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]
    # and the parent's pool still works
    library.private_key(label, pin, key_id=b"\x01").sign(b"parent", ec.ECDSA(hashes.SHA256()))


def test_one_lock_per_module_even_under_another_path(hsm_token: HsmToken,
                                                     tmp_path: Path) -> None:
    library, label, _, pin = hsm_token
    library.check_pin(label, pin)
    alias = tmp_path / "alias-of-the-module.so"
    alias.symlink_to(library.module_path)
    assert _module.load_module(str(alias)) is _module.load_module(library.module_path)
    other = TokenLibrary(str(alias))
    try:
        other.check_pin(label, pin)
    finally:
        other.close()
