"""Signatures per second through the token layer, against SoftHSM2.

Run: ``.venv/bin/python -m bench.hsm_sign [--seconds 3] [--rounds 3]``

For EC P-256 (ECDSA with SHA-256) and RSA 3072 (PKCS#1 v1.5 with SHA-256) it measures:

* ``ours``: ``TokenPrivateKey.sign(data, ...)`` (hash in Python, sign on the token, DER),
* ``bare``: a bare python-pkcs11 loop on the same key and module: for ECDSA
  ``key.sign(sha256(data), mechanism=ECDSA)`` (SoftHSM2 has no CKM_ECDSA_SHA256), for RSA
  ``key.sign(data, mechanism=SHA256_RSA_PKCS)``,
* ``openssl``: ``openssl speed -seconds N ecdsap256`` / ``rsa3072`` (one core, no token),
* ``ours x2``: our key object in two processes at once (total), against ours in one,
* ``served``: our key object through the token server (``hsm.server``, p11-kit's RPC over a
  unix socket, the embedded default for several processes), in one and in two processes.

Each figure is the best of ``--rounds`` rounds, ours and bare alternating. The LAST line is
``ratio_vs_bare=<x>``: the lower of the two ratios ours/bare.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from hsm import TokenLibrary, TokenPrivateKey, default_module_path, generate_pin
from hsm.server import client_module_path, is_serving, server_address
from hsm.softhsm import use_config, write_softhsm_config

DATA = b"Tawqi benchmark: a permit of 2026, signed by the commune" * 4
LABEL = "bench"


def rate(sign: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``sign`` over about ``seconds``."""
    sign()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for _ in range(10):
            sign()
        count += 10
        now = time.perf_counter()
    return count / (now - start)


def openssl_speed(algorithm: str, seconds: int) -> float | None:
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), algorithm],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    pattern = (r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)" if algorithm == "ecdsap256"
               else r"rsa 3072 bits\s+\S+\s+\S+\s+([\d.]+)")
    match = re.search(pattern, out)
    return float(match.group(1)) if match else None


def our_signer(key: TokenPrivateKey) -> Callable[[], bytes]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = ec.ECDSA(hashes.SHA256())
        return lambda: key.sign(DATA, algorithm)
    pkcs1 = padding.PKCS1v15()
    sha256 = hashes.SHA256()
    return lambda: key.sign(DATA, pkcs1, sha256)


def bare_signer(module_path: str, key_id: bytes) -> tuple[Callable[[], bytes], Any]:
    """A python-pkcs11 loop on the same key. The token is already logged in by our library
    (login is per token and per application), so this session needs no PIN."""
    token = pkcs11.lib(module_path).get_token(token_label=LABEL)
    session = token.open()
    key: Any = session.get_key(pkcs11.ObjectClass.PRIVATE_KEY, id=key_id)
    if key.key_type == pkcs11.KeyType.EC:
        def sign_ec() -> bytes:
            return key.sign(hashlib.sha256(DATA).digest(), mechanism=pkcs11.Mechanism.ECDSA)
        return sign_ec, session

    def sign_rsa() -> bytes:
        return key.sign(DATA, mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)
    return sign_rsa, session


def _worker(library: TokenLibrary, pin: str, key_id: bytes, seconds: float,
            start: Any, results: Any) -> None:
    key = library.private_key(LABEL, pin, key_id=key_id)
    start.wait()
    results.put(rate(our_signer(key), seconds))


def processes_rate(library: TokenLibrary, pin: str, key_id: bytes, seconds: float,
                   count: int) -> float:
    """Total signatures per second of ``count`` forked processes signing at once (each
    initialises the module for itself, as gunicorn workers do)."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(count)
    results = context.Queue()
    workers = [context.Process(target=_worker,
                               args=(library, pin, key_id, seconds, start, results))
               for _ in range(count)]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds * 10 + 30) for _ in workers)
    for worker in workers:
        worker.join()
    return float(total)


def start_token_server(workdir: str, module_path: str) -> subprocess.Popen[bytes]:
    """``python -m hsm.server`` over the bench's token directory (read at its start, after
    the keys were made); this process then reaches it through p11-kit's client module."""
    sock = os.path.join(workdir, "pkcs11.sock")
    server = subprocess.Popen([sys.executable, "-m", "hsm.server", "--module", module_path,
                               "--socket", sock], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not is_serving(sock):
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the token server did not start")
        time.sleep(0.05)
    os.environ["P11_KIT_SERVER_ADDRESS"] = server_address(sock)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    module_path = default_module_path()
    workdir = tempfile.TemporaryDirectory(prefix="tawqi-bench-")
    use_config(write_softhsm_config(workdir.name), module_path)
    library = TokenLibrary(module_path)
    pin = generate_pin(8)
    library.init_token(LABEL, generate_pin(8) + "-so", pin)
    library.generate_key_pair(LABEL, pin, key_type="EC-P256", key_label="ec", key_id=b"\x01")
    library.generate_key_pair(LABEL, pin, key_type="RSA-3072", key_label="rsa",
                              key_id=b"\x02")

    server = start_token_server(workdir.name, module_path)
    try:
        run(args, library, module_path, pin)
    finally:
        server.terminate()
        server.wait(30)
        library.close()
        workdir.cleanup()


def run(args: argparse.Namespace, library: TokenLibrary, module_path: str, pin: str) -> None:
    """Every measurement; the caller ends the token server whatever happens."""
    served_library = TokenLibrary(client_module_path())

    print(f"module: {module_path}")
    print(f"seconds per run: {args.seconds}, rounds: {args.rounds} (best of)")
    ratios = []
    for name, key_id, openssl_name in (("EC P-256 ECDSA-SHA256", b"\x01", "ecdsap256"),
                                       ("RSA 3072 PKCS1v15-SHA256", b"\x02", "rsa3072")):
        key = library.private_key(LABEL, pin, key_id=key_id)
        ours_sign = our_signer(key)
        bare_sign, bare_session = bare_signer(module_path, key_id)
        ours = bare = 0.0
        for _ in range(args.rounds):
            bare = max(bare, rate(bare_sign, args.seconds))
            ours = max(ours, rate(ours_sign, args.seconds))
        bare_session.close()
        ratio = ours / bare
        ratios.append(ratio)
        single = processes_rate(library, pin, key_id, args.seconds, 1)
        double = processes_rate(library, pin, key_id, args.seconds, 2)
        speed = openssl_speed(openssl_name, max(1, round(args.seconds)))
        print(f"{name}: ours {ours:.0f}/s, bare python-pkcs11 {bare:.0f}/s, "
              f"ours/bare {ratio:.3f}")
        print(f"{name}: openssl speed {openssl_name} "
              + (f"{speed:.0f}/s" if speed else "unavailable")
              + (f", ours/openssl {ours / speed:.3f}" if speed else ""))
        print(f"{name}: one process {single:.0f}/s, two processes {double:.0f}/s, "
              f"scaling x{double / single:.2f}")
        served_sign = our_signer(served_library.private_key(LABEL, pin, key_id=key_id))
        served = max(rate(served_sign, args.seconds) for _ in range(args.rounds))
        served_double = processes_rate(served_library, pin, key_id, args.seconds, 2)
        print(f"{name}: through the token server {served:.0f}/s ({served / ours:.2f} of "
              f"direct), two processes {served_double:.0f}/s")
    served_library.close()
    print(f"ratio_vs_bare={min(ratios):.3f}")


if __name__ == "__main__":
    main()
