"""Verifications per second: ``pki.signing.verification.Verifier`` in-process and
``POST /v1/verify`` over HTTP, for PDFs signed by the service at each level.

Run: ``.venv/bin/python -m bench.verify [--seconds 5]``

The throwaway service of :mod:`bench.sign_hash`; the PDFs are signed through
``signatures/signDoc`` (B-B, B-T, B-LT, and a B-LT permit signed twice). Each figure is
sequential verifications (one client, one gunicorn worker) for ``--seconds``. The LAST line
is ``verifications_per_second=<x>``: B-LT over HTTP.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests as http

from bench.sign_hash import Server, Service, authorize, prepare, runtime_for
from bench.sign_pdf import permit


def sign(client: http.Session, server: Server, service: Service, runtime: object,
         document: bytes, level: str) -> bytes:
    digest = base64.b64encode(hashlib.sha256(document).digest()).decode()
    sad = authorize(client, server.url, service, runtime, {"documentDigests": [digest]})
    answer = client.post(server.url + "/csc/v2/signatures/signDoc",
                         headers={"Authorization": f"Bearer {service.api_key}"},
                         data={"credentialID": service.serial, "SAD": sad,
                               "conformance_level": f"AdES-{level}"},
                         files={"document": ("permit.pdf", document, "application/pdf")},
                         timeout=120)
    answer.raise_for_status()
    return answer.content


def rate(call: Callable[[], object], seconds: float) -> float:
    call()  # warm up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        count += 1
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-verify-"))
    try:
        service = prepare(directory)
        runtime = runtime_for(service)
        server = Server(service)
        client = http.Session()
        headers = {"Authorization": f"Bearer {service.api_key}",
                   "Content-Type": "application/pdf"}
        try:
            documents = {level: sign(client, server, service, runtime, permit(), level)
                         for level in ("B-B", "B-T", "B-LT")}
            documents["B-LT x2"] = sign(client, server, service, runtime,
                                        documents["B-LT"], "B-LT")

            def over_http(data: bytes) -> Callable[[], object]:
                def call() -> object:
                    answer = client.post(server.url + "/v1/verify", data=data,
                                         headers=headers, timeout=120)
                    answer.raise_for_status()
                    report = answer.json()
                    if report["indication"] != "TOTAL-PASSED":
                        raise RuntimeError(f"unexpected indication {report['indication']}")
                    return report
                return call

            remote = {name: rate(over_http(data), args.seconds)
                      for name, data in documents.items()}
        finally:
            server.stop()
        from api.wiring import Wiring

        verifier = Wiring(runtime).verifier()  # the one POST /v1/verify uses
        def in_process(data: bytes) -> Callable[[], object]:
            return lambda: verifier.verify(data)

        local = {name: rate(in_process(data), args.seconds)
                 for name, data in documents.items()}
        runtime.close()
        print(f"sequential verifications for {args.seconds:g} s each (one client, one "
              "gunicorn worker)")
        for name in documents:
            print(f"{name}: {len(documents[name]):,} bytes, in-process {local[name]:.1f}/s, "
                  f"POST /v1/verify {remote[name]:.1f}/s")
        print(f"verifications_per_second={remote['B-LT']:.1f}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
