"""Verification: our ``Verifier`` in-process and ``POST /v1/verify`` over HTTP, against
pyHanko's own ETSI validation of the same files in-process (issue 16).

Run: ``.venv/bin/python -m bench.verify [--seconds 5]``

The throwaway service of :mod:`bench.sign_hash`; the PDFs are signed through
``signatures/signDoc`` (B-B, B-T, B-LT, and a B-LT permit signed twice). For each file
the three below take turns call by call for about three times ``--seconds`` (one client,
one gunicorn worker), so that a load which changes during the run weighs on each alike:

* **pyHanko**: its AdES validation of every signature of the file (``ades_with_time_
  validation``, or ``ades_basic_validation`` for B-B), the validation spec (our root, the
  revocation data of the file and of our CA, no fetching) built beforehand, untimed;
* **in-process**: ``Verifier.verify`` as ``POST /v1/verify`` runs it (the report: AdES
  indication, the certificate's status at signing time and now, coverage, identity);
* **http**: ``POST /v1/verify``, the JSON report back.

Goals: in-process <= 1.5x pyHanko's time, HTTP <= 1.2x in-process, at every level, per
median call (the ratios of the mean times are printed too: they carry the garbage
collector's pauses, which land on whichever call starts one). Every call is bounded
(:mod:`bench.bounded`). The LAST line is ``ratio_vs_pyhanko=<x>``: our in-process time /
pyHanko's, B-LT, median calls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests as http

from bench import bounded, end_token_server
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
                         timeout=bounded.DEFAULT_SECONDS)
    answer.raise_for_status()
    return answer.content


def rates(calls: dict[str, Callable[[], object]], seconds: float, name: str
          ) -> dict[str, tuple[float, float]]:
    """Calls per second of each of ``calls``, made in turn (one of each, again and again)
    for about ``seconds`` in all, so that a load which changes during the run weighs on
    each alike; each is first called once as a warm-up, untimed. Two figures per call: from
    the median call (what one verification costs) and from the mean (with the garbage
    collector's pauses, which land on whichever call happens to start one: the three share
    this process's heap, except the HTTP path's server)."""
    for kind, call in calls.items():
        with bounded.step(f"{kind} {name} (warm-up)"):
            call()
    spent: dict[str, list[float]] = {kind: [] for kind in calls}
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for kind, call in calls.items():
            with bounded.step(f"{kind} {name}, call {count}"):
                began = time.perf_counter()
                call()
                spent[kind].append(time.perf_counter() - began)
        count += 1
    return {kind: (1 / statistics.median(times), len(times) / sum(times))
            for kind, times in spent.items()}


def pyhanko_validation(verifier: Any, data: bytes) -> Callable[[], object]:
    """pyHanko's own ETSI EN 319 102-1 validation of every signature of ``data``, as
    pyHanko's API offers it: the file read, then per signature ``ades_with_time_validation``
    (time-stamped) or ``ades_basic_validation`` (B-B), with the validation spec (anchors,
    policy, the revocation data of the file and of our CA) built beforehand, outside the
    timing. The baseline: what our verifier adds (the revocation data gathered, the
    statuses at signing time and now, coverage, identity, the report) is all it lacks."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.ades.report import AdESStatus
    from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY
    from pyhanko.sign.validation.ades import ades_basic_validation, ades_with_time_validation
    from pyhanko.sign.validation.status import PdfSignatureStatus
    from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

    from pki.signing.pades import RevocationData
    from pki.signing.verification import _timestamp_tokens

    now = datetime.now(UTC)
    first = PdfFileReader(io.BytesIO(data), strict=False)
    specs = []
    for embedded in first.embedded_regular_signatures:
        known, certs = verifier._knowledge(first, embedded, RevocationData())
        specs.append((verifier._spec(known, certs, now, None),
                      bool(_timestamp_tokens(embedded))))

    async def validate_all() -> list[object]:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        timing = ValidationTimingInfo(now, now, True)
        results: list[object] = []
        for embedded, (spec, timestamped) in zip(reader.embedded_regular_signatures, specs,
                                                 strict=True):
            embedded.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
            result: Any
            if timestamped:
                result = await ades_with_time_validation(
                    embedded.signed_data, spec.signature_validation_spec, timing_info=timing,
                    raw_digest=embedded.compute_digest(),
                    extra_status_kwargs=embedded.summarise_integrity_info(),
                    status_cls=PdfSignatureStatus)
            else:
                result = await ades_basic_validation(
                    embedded.signed_data, spec.signature_validation_spec, timing_info=timing,
                    raw_digest=embedded.compute_digest())
            if result.ades_subindic.status is not AdESStatus.PASSED:
                raise RuntimeError(f"pyHanko: {result.ades_subindic} {result.failure_msg}")
            results.append(result)
        return results

    return lambda: asyncio.run(validate_all())


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
                    answer = bounded.post(client, server.url + "/v1/verify", "POST /v1/verify",
                                          data=data, headers=headers)
                    answer.raise_for_status()
                    report = answer.json()
                    if report["indication"] != "TOTAL-PASSED":
                        raise RuntimeError(f"unexpected indication {report['indication']}")
                    return report
                return call

            from api.wiring import Wiring

            wiring = Wiring(runtime)
            verifier = wiring.verifier()  # the one POST /v1/verify uses

            def in_process(data: bytes) -> Callable[[], object]:
                def call() -> object:
                    report = verifier.verify(data)
                    if report.indication != "TOTAL-PASSED":
                        raise RuntimeError(f"unexpected indication {report.indication}")
                    return report
                return call

            measured = {name: rates({"pyHanko AdES validation": pyhanko_validation(
                                         verifier, data),
                                     "Verifier.verify": in_process(data),
                                     "POST /v1/verify": over_http(data)},
                                    3 * args.seconds, name)
                        for name, data in documents.items()}
        finally:
            server.stop()
        runtime.close()
        theirs = {name: m["pyHanko AdES validation"][0] for name, m in measured.items()}
        local = {name: m["Verifier.verify"][0] for name, m in measured.items()}
        remote = {name: m["POST /v1/verify"][0] for name, m in measured.items()}
        means = {name: (m["pyHanko AdES validation"][1] / m["Verifier.verify"][1],
                        m["Verifier.verify"][1] / m["POST /v1/verify"][1])
                 for name, m in measured.items()}
        print(f"sequential verifications, about {3 * args.seconds:g} s per file, the three "
              "taking turns call by call (one client, one gunicorn worker); per file (B-LT "
              "x2: two signatures); load average "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print("file: size, pyHanko AdES validation in-process, our Verifier in-process, "
              "POST /v1/verify (per median call); ours/pyHanko, http/in-process (time "
              "ratios of the median calls; of the means, garbage collection included)")
        for name in documents:
            print(f"{name}: {len(documents[name]):,} bytes, pyHanko {theirs[name]:.1f}/s, "
                  f"in-process {local[name]:.1f}/s, POST /v1/verify {remote[name]:.1f}/s; "
                  f"x{theirs[name] / local[name]:.2f} of pyHanko (means x{means[name][0]:.2f}), "
                  f"http x{local[name] / remote[name]:.2f} of in-process "
                  f"(means x{means[name][1]:.2f})")
        print(f"ratio_vs_pyhanko={theirs['B-LT'] / local['B-LT']:.3f}")
    except bounded.StepOverran as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
