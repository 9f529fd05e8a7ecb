"""PDF signing latency: ``signatures/signDoc`` over HTTP (visible bilingual stamp) against
pyHanko's own ``PdfSigner`` in-process (no stamp), same token key, same PDF (issue 16).

Run: ``.venv/bin/python -m bench.sign_pdf [--rounds 5]``

The throwaway service of :mod:`bench.sign_hash` (gunicorn, production settings file).

* **pyHanko**: ``signers.sign_pdf`` in this process, the holder's token key behind a stock
  pyHanko ``Signer`` (only ``async_sign_raw`` written, as any pyHanko user would; not
  ``pki.signer``'s adapter, whose savings are ours to measure), no stamp, B-B: the
  baseline. Also pyHanko with its own visible stamp (``TextStampStyle``, Amiri through its
  OpenType support), for reference.
* **ours in-process**: ``pki.signing.pades.PadesService.sign`` at B-B, B-T, B-LT and B-LTA
  with the visible bilingual stamp (no QR code: that needs a status page): what the
  endpoint runs minus HTTP, authentication, the SAD and the audit.
* **http**: per round, ``sendOTP`` and ``authorize`` for the file's SHA-256 (not timed),
  then the timed ``signDoc`` call: multipart upload, SAD consumed, PIN login on the token,
  PAdES signature with the stamp and its QR code, the signed PDF back.

The paths take turns round by round (pyHanko, pyHanko with its stamp, then ours in-process
and over HTTP at each level), so that a load which changes during the run weighs on each
alike; medians of ``--rounds`` rounds after one warm-up round. The same permit is signed
at every round, as a platform signs copies of one template: its stamp's place is found
once (pki.signing.pades.place_stamp). Every call is bounded (:mod:`bench.bounded`); one
that overruns ends the run naming its step. The LAST line is ``ratio_vs_pyhanko=<x>``:
signDoc B-B over HTTP / pyHanko without stamp (goal <= 1.2).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class InProcess:
    """Our ``PadesService`` and pyHanko's ``PdfSigner`` in this process, with the holder's
    token key and the service's TSA and revocation records."""

    def __init__(self, service: Service) -> None:
        from api.wiring import Wiring
        from pki import ca, tsa
        from pki.profiles import ARC_TSA, Profile
        from pki.signing.pades import LocalTimeStamper, PadesService
        from pki.signing.service import RemoteSigning, issuer_chain
        from pki.signing.stamp import warm_fonts

        self.service = service
        self.runtime = runtime_for(service)
        settings = self.runtime.settings
        self.tokens = self.runtime.tokens()
        profile = Profile.from_settings(settings)
        wiring = Wiring(self.runtime)
        authority = wiring.authority()
        with self.runtime.unit_of_work() as session:
            self.credential = RemoteSigning._credential(
                session.query(ca.CertificateRecord).filter_by(serial=service.serial).one())
            self.chain = issuer_chain(session, self.credential)
        tsa_signer = authority.tsa_signer
        assert tsa_signer is not None
        clock = self.runtime.clock
        stamper = LocalTimeStamper(lambda der: tsa.timestamp(
            tsa_signer, clock, der, policy_oid=profile.policy(ARC_TSA)).der)
        warm_fonts(settings.stamp_font_dir)
        self.pades = PadesService(clock, trust_roots=[self.chain[-1]], timestamper=stamper,
                                  revocation=wiring.revocation(),
                                  font_dir=settings.stamp_font_dir)
        self.their_style = pyhanko_stamp_style(settings.stamp_font_dir)

    def signer(self) -> Any:
        """The holder's key, logged in again: the served worker logs the token out and in
        at every signDoc (PIN check), which logs out this process's key too (one token
        server, one login state)."""
        from pki.signer import Signer

        key = self.tokens.private_key(self.service.token_label, self.service.pin,
                                      key_id=self.service.key_id)
        return Signer(key, self.credential.certificate, self.chain)

    def ours(self, document: bytes, level: str) -> Callable[[], object]:
        from pki.signing.pades import Level, PadesRequest

        signer = self.signer()
        request = PadesRequest(level=Level(level), stamp=_stamp_text(self.runtime.clock.now()))
        return lambda: self.pades.sign(document, signer, request)

    def pyhanko(self, document: bytes) -> Callable[[], object]:
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import signers

        signer = stock_pyhanko_signer(self.signer())
        return lambda: signers.sign_pdf(
            IncrementalPdfFileWriter(io.BytesIO(document)),
            signers.PdfSignatureMetadata(field_name="Signature1"), signer=signer)

    def pyhanko_stamp(self, document: bytes) -> Callable[[], object]:
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers

        signer = stock_pyhanko_signer(self.signer())
        return lambda: signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name="Signature1"),
            signer=signer, stamp_style=self.their_style,  # type: ignore
            new_field_spec=fields.SigFieldSpec("Signature1", on_page=1,
                                               box=(259, 36, 559, 132)),
        ).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(document)))

    def close(self) -> None:
        self.runtime.close()


def stock_pyhanko_signer(signer: Any) -> Any:
    """pyHanko's own ``Signer`` over the holder's token key, the way its documentation has
    a custom key written: ``async_sign_raw`` only (a zero placeholder of the largest size
    in pyHanko's dry run, as pyHanko's own PKCS#11 signer answers), certificates loaded
    once."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyhanko.sign.signers import Signer as PyHankoSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from pki.signer import to_asn1

    key = signer.key
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the benchmark holder key is EC")

    class TokenKeySigner(PyHankoSigner):
        async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                                 dry_run: bool = False) -> bytes:
            if dry_run:
                return bytes(2 * ((key.key_size + 7) // 8) + 9)
            algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                         "sha512": hashes.SHA512()}[digest_algorithm]
            signature: bytes = key.sign(data, ec.ECDSA(algorithm))
            return signature

    return TokenKeySigner(
        signing_cert=to_asn1(signer.certificate),
        cert_registry=SimpleCertificateStore.from_certs([to_asn1(c) for c in signer.chain]))


def over_http(service: Service, server: Server, client: http.Session, runtime: Any,
              document: bytes, level: str, step: str) -> Callable[[], object]:
    """The timed ``signDoc`` call, its SAD obtained now (untimed)."""
    headers = {"Authorization": f"Bearer {service.api_key}"}
    digest = base64.b64encode(hashlib.sha256(document).digest()).decode()
    sad = authorize(client, server.url, service, runtime, {"documentDigests": [digest]})

    def call() -> object:
        answer = bounded.post(client, server.url + "/csc/v2/signatures/signDoc", step,
                              headers=headers,
                              data={"credentialID": service.serial, "SAD": sad,
                                    "conformance_level": f"AdES-{level}"},
                              files={"document": ("permit.pdf", document,
                                                  "application/pdf")})
        answer.raise_for_status()
        assert answer.content.startswith(b"%PDF")
        return answer
    return call


LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


def measure(service: Service, server: Server, document: bytes, rounds: int
            ) -> dict[str, list[float]]:
    """Times (s) by name (``pyhanko``, ``pyhanko_stamp``, ``<level> in-process``,
    ``<level> http``), the paths taking turns round by round (a load that changes during
    the run weighs on each alike); the first round of each is a warm-up, not kept."""
    local = InProcess(service)
    runtime = runtime_for(service)
    client = http.Session()
    times: dict[str, list[float]] = {}

    def timed(name: str, index: int, work: Callable[[], object]) -> None:
        with bounded.step(f"{name}, round {index}"):
            start = time.perf_counter()
            work()
            elapsed = time.perf_counter() - start
        if index:
            times.setdefault(name, []).append(elapsed)

    try:
        for index in range(rounds + 1):
            timed("pyhanko", index, local.pyhanko(document))
            timed("pyhanko_stamp", index, local.pyhanko_stamp(document))
            for level in LEVELS:
                timed(f"{level} in-process", index, local.ours(document, level))
                step = f"signDoc {level}"
                timed(f"{level} http", index,
                      over_http(service, server, client, runtime, document, level,
                                f"{step}, round {index}"))
    finally:
        local.close()
        runtime.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-pdf-"))
    try:
        service = prepare(directory)
        document = permit()
        server = Server(service)
        try:
            times = measure(service, server, document, args.rounds)
        finally:
            server.stop()
        median = statistics.median
        bare = median(times["pyhanko"])
        print(f"PDF of {len(document):,} bytes, {args.rounds} rounds (median), one gunicorn "
              "worker; ours with the visible bilingual stamp (over HTTP with its QR code); "
              f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print(f"pyHanko PdfSigner in-process (token key, no stamp, B-B): {1000 * bare:.1f} ms")
        print("pyHanko PdfSigner in-process with its own visible Amiri stamp (B-B): "
              f"{1000 * median(times['pyhanko_stamp']):.1f} ms")
        for level in LEVELS:
            ours = median(times[f"{level} in-process"])
            wire = median(times[f"{level} http"])
            print(f"{level}: in-process {1000 * ours:.1f} ms, signDoc over HTTP "
                  f"{1000 * wire:.1f} ms (x{wire / ours:.2f} of in-process, "
                  f"x{wire / bare:.2f} of pyHanko without stamp)")
        print(f"ratio_vs_pyhanko={median(times['B-B http']) / bare:.3f}")
    except bounded.StepOverran as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
