"""PDF signing latency: ``signatures/signDoc`` over HTTP (visible bilingual stamp) against
pyHanko's own ``PdfSigner`` in-process (no stamp), same token key, same PDF (issue 16).

Run: ``.venv/bin/python -m bench.sign_pdf [--rounds 5]``

The throwaway service of :mod:`bench.sign_hash` (gunicorn, production settings file).

* **pyHanko**: ``signers.sign_pdf`` in this process, the holder's token key through
  ``pki.signer``'s adapter, no stamp, B-B: the baseline. Also pyHanko with its own visible
  stamp (``TextStampStyle``, Amiri through its OpenType support), for reference.
* **ours in-process**: ``pki.signing.pades.PadesService.sign`` at B-B, B-T, B-LT with the
  visible bilingual stamp: what the endpoint runs minus HTTP, authentication, the SAD and
  the audit.
* **http**: per round, ``sendOTP`` and ``authorize`` for the file's SHA-256 (not timed),
  then the timed ``signDoc`` call: multipart upload, SAD consumed, PIN login on the token,
  PAdES signature, the signed PDF back.

Medians of ``--rounds`` rounds after one warm-up each. Every call is bounded
(:mod:`bench.bounded`); one that overruns ends the run naming its step. The LAST line is
``ratio_vs_pyhanko=<x>``: signDoc B-B over HTTP / pyHanko without stamp (goal <= 1.2).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import requests as http

if TYPE_CHECKING:
    from pki.signing.stamp import StampText

from bench import bounded, end_token_server
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


def _stamp_text(clock_now: datetime) -> StampText:
    from pki.signing.stamp import StampText

    return StampText("Karim Benali", "كريم بنعلي", "Président du conseil de la commune",
                     "رئيس مجلس الجماعة", "Commune Al Hoceima", "جماعة الحسيمة",
                     clock_now)


def pyhanko_stamp_style(font_dir: str | None) -> object:
    """Stock pyHanko's visible stamp: its text stamp with Amiri through its own OpenType
    support (a new font subset at every signature), the same facts in both languages."""
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.stamp import TextStampStyle

    from pki.signing.stamp import font_paths

    regular, _bold = font_paths(font_dir)
    return TextStampStyle(
        stamp_text=("Signé électroniquement par Karim Benali\n"
                    "Président du conseil de la commune, Commune Al Hoceima\n"
                    "موقع إلكترونيا من طرف كريم بنعلي\n"
                    "Le %(ts)s"),
        text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(regular), font_size=7),
        border_width=1)


def in_process(service: Service, document: bytes, level: str, rounds: int
               ) -> dict[str, list[float]]:
    """Times (s) of ``ours`` (PadesService.sign at ``level``, stamp), and for B-B also
    ``pyhanko`` (PdfSigner, no stamp) and ``pyhanko_stamp`` (PdfSigner, its own stamp),
    interleaved round by round."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    from api.wiring import Wiring
    from pki import ca, tsa
    from pki.profiles import ARC_TSA, Profile
    from pki.signer import Signer, pyhanko_signer
    from pki.signing.pades import Level, LocalTimeStamper, PadesRequest, PadesService
    from pki.signing.service import RemoteSigning, issuer_chain
    from pki.signing.stamp import warm_fonts

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
        request = PadesRequest(level=Level(level), stamp=_stamp_text(runtime.clock.now()))
        their_style = pyhanko_stamp_style(settings.stamp_font_dir)
        times: dict[str, list[float]] = {"ours": [], "pyhanko": [], "pyhanko_stamp": []}

        def timed(name: str, index: int, work: Callable[[], object]) -> None:
            with bounded.step(f"{name} {level} in-process, round {index}"):
                start = time.perf_counter()
                work()
                elapsed = time.perf_counter() - start
            if index:
                times[name].append(elapsed)

        for index in range(rounds + 1):
            timed("ours", index, lambda: pades.sign(document, signer, request))
            if level != "B-B":
                continue
            timed("pyhanko", index, lambda: signers.sign_pdf(
                IncrementalPdfFileWriter(io.BytesIO(document)),
                signers.PdfSignatureMetadata(field_name="Signature1"),
                signer=pyhanko_signer(signer)))
            timed("pyhanko_stamp", index, lambda: signers.PdfSigner(
                signers.PdfSignatureMetadata(field_name="Signature1"),
                signer=pyhanko_signer(signer), stamp_style=their_style,  # type: ignore
                new_field_spec=fields.SigFieldSpec("Signature1", on_page=1,
                                                   box=(259, 36, 559, 132)),
            ).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(document))))
        return times
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
            answer = bounded.post(client, server.url + "/csc/v2/signatures/signDoc",
                                  f"signDoc {level}, round {index}", headers=headers,
                                  data={"credentialID": service.serial, "SAD": sad,
                                        "conformance_level": f"AdES-{level}"},
                                  files={"document": ("permit.pdf", document,
                                                      "application/pdf")})
            elapsed = time.perf_counter() - start
            answer.raise_for_status()
            assert answer.content.startswith(b"%PDF")
            if index:
                times.append(elapsed)
    finally:
        runtime.close()
    return times


LEVELS = ("B-B", "B-T", "B-LT")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-pdf-"))
    try:
        service = prepare(directory)
        document = permit()
        local = {level: in_process(service, document, level, args.rounds)
                 for level in LEVELS}
        server = Server(service)
        try:
            remote = {level: over_http(service, server, document, level, args.rounds)
                      for level in LEVELS}
        finally:
            server.stop()
        median = statistics.median
        bare = median(local["B-B"]["pyhanko"])
        print(f"PDF of {len(document):,} bytes, {args.rounds} rounds (median), one gunicorn "
              "worker; ours with the visible bilingual stamp")
        print(f"pyHanko PdfSigner in-process (token key, no stamp, B-B): {1000 * bare:.1f} ms")
        print("pyHanko PdfSigner in-process with its own visible Amiri stamp (B-B): "
              f"{1000 * median(local['B-B']['pyhanko_stamp']):.1f} ms")
        for level in LEVELS:
            ours = median(local[level]["ours"])
            wire = median(remote[level])
            print(f"{level}: in-process {1000 * ours:.1f} ms, signDoc over HTTP "
                  f"{1000 * wire:.1f} ms (x{wire / ours:.2f} of in-process, "
                  f"x{wire / bare:.2f} of pyHanko without stamp)")
        print(f"ratio_vs_pyhanko={median(remote['B-B']) / bare:.3f}")
    except bounded.StepOverran as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
