"""PDF signing latency over HTTP (``signatures/signDoc``) against pyHanko in-process, with
the same key and the same PDF.

Run: ``.venv/bin/python -m bench.sign_pdf [--rounds 5] [--level B-LT]``

The throwaway service of :mod:`bench.sign_hash` (gunicorn, production settings file).

* **in-process**: ``pki.signing.pades.PadesService.sign`` in this process, i.e. pyHanko's
  ``PdfSigner`` with the token key through ``pki.signer``'s adapter, the visible bilingual
  stamp, our TSA called in-process and our CA's records for B-LT: what the endpoint runs,
  minus HTTP, authentication, the SAD and the audit. Also pyHanko alone (``sign_pdf``, no
  stamp, B-B) for reference.
* **http**: per round, ``sendOTP`` and ``authorize`` for the file's SHA-256 (not timed),
  then the timed ``signDoc`` call: multipart upload, SAD consumed, PIN login on the token,
  PAdES signature, the signed PDF back.

Medians of ``--rounds`` rounds after one warm-up each. The LAST line is
``ratio_vs_pyhanko=<x>`` (http / in-process at ``--level``, goal <= 1.5).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import requests as http

from bench.sign_hash import Server, Service, authorize, prepare, runtime_for


def permit(pages: int = 2) -> bytes:
    """A small permit PDF (text pages, Helvetica)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

    writer = PdfFileWriter()
    font = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Font"),
        generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
        generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica")})
    resources = generic.DictionaryObject({generic.NameObject("/Font"): generic.DictionaryObject(
        {generic.NameObject("/F1"): font})})
    for number in range(pages):
        lines = [f"Permis de construire 2026/{number:04d} - page {number + 1}"] + \
            [f"Article {i}: conditions de l'autorisation, ligne {i}" for i in range(40)]
        text = b"BT /F1 11 Tf 14 TL 60 780 Td " + b" ".join(
            b"(" + line.encode("latin-1") + b") Tj T*" for line in lines) + b" ET"
        writer.insert_page(PageObject(
            contents=writer.add_object(generic.StreamObject(stream_data=text)),
            media_box=generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
            resources=resources))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def in_process(service: Service, document: bytes, level: str, rounds: int
               ) -> tuple[list[float], list[float]]:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    from api.wiring import Wiring
    from pki import ca, tsa
    from pki.profiles import ARC_TSA, Profile
    from pki.signer import Signer, pyhanko_signer
    from pki.signing.pades import (
        Level,
        LocalTimeStamper,
        PadesRequest,
        PadesService,
    )
    from pki.signing.service import RemoteSigning, issuer_chain
    from pki.signing.stamp import StampText, warm_fonts

    runtime = runtime_for(service)
    settings = runtime.settings
    try:
        tokens = runtime.tokens()
        profile = Profile.from_settings(settings)
        wiring = Wiring(runtime)
        authority = wiring.authority()
        with runtime.unit_of_work() as session:
            credential = RemoteSigning._credential(
                session.query(ca.CertificateRecord).filter_by(serial=service.serial).one())
            chain = issuer_chain(session, credential)
        tsa_signer = authority.tsa_signer
        assert tsa_signer is not None
        stamper = LocalTimeStamper(lambda der: tsa.timestamp(
            tsa_signer, runtime.clock, der, policy_oid=profile.policy(ARC_TSA)).der)

        warm_fonts(settings.stamp_font_dir)
        pades = PadesService(runtime.clock, trust_roots=[chain[-1]], timestamper=stamper,
                             revocation=wiring.revocation(), font_dir=settings.stamp_font_dir)
        key = tokens.private_key(service.token_label, service.pin, key_id=service.key_id)
        signer = Signer(key, credential.certificate, chain)
        stamp = StampText("Karim Benali", "كريم بنعلي", "Président du conseil de la commune",
                          "رئيس مجلس الجماعة", "Commune Al Hoceima", "جماعة الحسيمة",
                          runtime.clock.now())
        request = PadesRequest(level=Level(level), stamp=stamp)
        ours, bare = [], []
        for index in range(rounds + 1):
            start = time.perf_counter()
            pades.sign(document, signer, request)
            if index:
                ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(document)),
                             signers.PdfSignatureMetadata(field_name="Signature1"),
                             signer=pyhanko_signer(signer))
            if index:
                bare.append(time.perf_counter() - start)
        return ours, bare
    finally:
        runtime.close()


def over_http(service: Service, server: Server, document: bytes, level: str, rounds: int
              ) -> list[float]:
    runtime = runtime_for(service)
    client = http.Session()
    headers = {"Authorization": f"Bearer {service.api_key}"}
    digest = __import__("base64").b64encode(hashlib.sha256(document).digest()).decode()
    times = []
    try:
        for index in range(rounds + 1):
            sad = authorize(client, server.url, service, runtime,
                            {"documentDigests": [digest]})
            start = time.perf_counter()
            answer = client.post(server.url + "/csc/v2/signatures/signDoc", headers=headers,
                                 data={"credentialID": service.serial, "SAD": sad,
                                       "conformance_level": f"AdES-{level}"},
                                 files={"document": ("permit.pdf", document,
                                                     "application/pdf")}, timeout=120)
            elapsed = time.perf_counter() - start
            answer.raise_for_status()
            assert answer.content.startswith(b"%PDF")
            if index:
                times.append(elapsed)
    finally:
        runtime.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--level", choices=("B-B", "B-T", "B-LT"), default="B-LT")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-pdf-"))
    try:
        service = prepare(directory)
        document = permit()
        results = {}
        for level in ("B-B", "B-T", "B-LT"):
            results[level] = in_process(service, document, level, args.rounds)
        server = Server(service)
        try:
            remote = {level: over_http(service, server, document, level, args.rounds)
                      for level in ("B-B", "B-T", "B-LT")}
        finally:
            server.stop()
        print(f"PDF of {len(document):,} bytes, {args.rounds} rounds (median), one gunicorn "
              "worker; visible bilingual stamp")
        bare = statistics.median(results["B-B"][1])
        print(f"pyHanko alone (sign_pdf, token key, no stamp, B-B): {1000 * bare:.0f} ms")
        for level in ("B-B", "B-T", "B-LT"):
            local = statistics.median(results[level][0])
            wire = statistics.median(remote[level])
            print(f"{level}: in-process {1000 * local:.0f} ms, signDoc over HTTP "
                  f"{1000 * wire:.0f} ms, ratio {wire / local:.2f}")
        local = statistics.median(results[args.level][0])
        print(f"ratio_vs_pyhanko={statistics.median(remote[args.level]) / local:.3f}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
