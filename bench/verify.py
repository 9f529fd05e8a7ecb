"""Verification: our ``Verifier`` in-process and ``POST /v1/verify`` over HTTP, against
pyHanko's own ETSI validation of the same files in-process (issue 16).

Run: ``.venv/bin/python -m bench.verify [--seconds 5]``

The throwaway service of :mod:`bench.sign_hash`; the PDFs are signed through
``signatures/signDoc`` (B-B, B-T, B-LT, and a B-LT permit signed twice). For each file
the four below take turns for about three times ``--seconds`` (one client, one gunicorn
worker), ``--burst`` calls in a row each, so that a load which changes during the run weighs
on each alike:

* **pyHanko**: its AdES validation of every signature of the file (``ades_with_time_
  validation``, or ``ades_basic_validation`` for B-B), the validation spec (our root, the
  revocation data of the file and of our CA, no fetching) built beforehand, untimed;
* **in-process**: ``Verifier.verify`` as ``POST /v1/verify`` runs it (the report: AdES
  indication, the certificate's status at signing time and now, coverage, identity);
* **http**: ``POST /v1/verify``, the JSON report back, with the standard library's
  ``http.client`` (:func:`bench.bounded.post_plain`), one connection per call;
* **through requests**: the same call through a ``requests`` session, printed beside it:
  the library adds about 1 ms of its own per call here (see the ratio's history in
  docs/benchmarks.md).

Goals: in-process <= 1.5x pyHanko's time, HTTP <= 1.2x in-process, at every level, per
median call (the ratios of the mean times are printed too: they carry the garbage
collector's pauses, which land on whichever call starts one).

Why bursts: taking turns call by call, the HTTP path was always measured on a worker that had
been idle during the two other calls (about 30 ms), while the in-process call came right
after pyHanko's, which runs much of the same code (asn1crypto, pyHanko). On this machine the
worker's first call after such a pause costs 1.5-2.5 ms more (caches, wake-up), so the HTTP
ratio compared an idle worker with a warm process. Each path now runs ``--burst`` calls in a
row and its median call is its steady cost; the ratios of the first call of each burst
(every path starting again after the others ran) are printed too. Every call is bounded
(:mod:`bench.bounded`). The LAST line is ``ratio_vs_pyhanko=<x>``: our in-process time /
pyHanko's, B-LT, median calls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Rate:
    """One path's calls per second: from its median call, from its mean (garbage
    collection included), and from the median of the first call of each burst (the path
    starting again after the others ran)."""

    median: float
    mean: float
    first: float


def rates(calls: dict[str, Callable[[], object]], seconds: float, name: str, burst: int
          ) -> dict[str, Rate]:
    """The rate of each of ``calls``, made in turn ``burst`` calls at a time for about
    ``seconds`` in all, so that a load which changes during the run weighs on each alike;
    each is first called once as a warm-up, untimed."""
    for kind, call in calls.items():
        with bounded.step(f"{kind} {name} (warm-up)"):
            call()
    spent: dict[str, list[float]] = {kind: [] for kind in calls}
    firsts: dict[str, list[float]] = {kind: [] for kind in calls}
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for kind, call in calls.items():
            for turn in range(burst):
                with bounded.step(f"{kind} {name}, call {count}"):
                    began = time.perf_counter()
                    call()
                    took = time.perf_counter() - began
                spent[kind].append(took)
                if turn == 0:
                    firsts[kind].append(took)
                count += 1
    return {kind: Rate(1 / statistics.median(times), len(times) / sum(times),
                       1 / statistics.median(firsts[kind]))
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
    parser.add_argument("--burst", type=int, default=5,
                        help="calls in a row of each path before the next takes its turn")
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

            def passed(report: dict[str, Any]) -> dict[str, Any]:
                if report["indication"] != "TOTAL-PASSED":
                    raise RuntimeError(f"unexpected indication {report['indication']}")
                return report

            def over_http(data: bytes) -> Callable[[], object]:
                def call() -> object:
                    status, body = bounded.post_plain(server.url, "/v1/verify", data, headers,
                                                      "POST /v1/verify")
                    if status != 200:
                        raise RuntimeError(f"POST /v1/verify answered {status}: {body[:200]!r}")
                    return passed(json.loads(body))
                return call

            def through_requests(data: bytes) -> Callable[[], object]:
                def call() -> object:
                    answer = bounded.post(client, server.url + "/v1/verify",
                                          "POST /v1/verify (requests)", data=data,
                                          headers=headers)
                    answer.raise_for_status()
                    return passed(answer.json())
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
                                     "POST /v1/verify": over_http(data),
                                     "POST /v1/verify (requests)": through_requests(data)},
                                    3 * args.seconds, name, max(1, args.burst))
                        for name, data in documents.items()}
        finally:
            server.stop()
        runtime.close()
        theirs = {name: m["pyHanko AdES validation"] for name, m in measured.items()}
        local = {name: m["Verifier.verify"] for name, m in measured.items()}
        remote = {name: m["POST /v1/verify"] for name, m in measured.items()}
        heavy = {name: m["POST /v1/verify (requests)"] for name, m in measured.items()}
        print(f"sequential verifications, about {3 * args.seconds:g} s per file, the "
              f"four taking turns {args.burst} calls in a row each (one client, one gunicorn "
              "worker); per file (B-LT x2: two signatures); load average "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print("file: size, pyHanko AdES validation in-process, our Verifier in-process, "
              "POST /v1/verify with the standard library's http.client (per median call); "
              "ours/pyHanko, http/in-process (time ratios of the median calls; of the means, "
              "garbage collection included; of the first call of each burst, after the "
              "other paths ran); and POST /v1/verify through requests (the client library's "
              "own time included)")
        for name in documents:
            ours, remote_, py = local[name], remote[name], theirs[name]
            print(f"{name}: {len(documents[name]):,} bytes, pyHanko {py.median:.1f}/s, "
                  f"in-process {ours.median:.1f}/s, POST /v1/verify {remote_.median:.1f}/s; "
                  f"x{py.median / ours.median:.2f} of pyHanko (means "
                  f"x{py.mean / ours.mean:.2f}, first calls x{py.first / ours.first:.2f}), "
                  f"http x{ours.median / remote_.median:.2f} of in-process (means "
                  f"x{ours.mean / remote_.mean:.2f}, first calls "
                  f"x{ours.first / remote_.first:.2f}); through requests "
                  f"x{ours.median / heavy[name].median:.2f} (first calls "
                  f"x{ours.first / heavy[name].first:.2f})")
        print(f"ratio_vs_pyhanko={theirs['B-LT'].median / local['B-LT'].median:.3f}")
    except bounded.StepOverran as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
