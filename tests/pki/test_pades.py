"""PAdES signing (pki.signing.pades) and the bilingual stamp (pki.signing.stamp), judged by
outside tools: poppler's pdfsig (with an NSS database trusting the test root) and pyHanko's
validator."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import fields
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import DocumentSecurityStore, validate_pdf_signature
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko_certvalidator import ValidationContext

from core.clock import FrozenClock
from core.errors import ConfigurationError
from pki.signer import Signer, to_asn1
from pki.signing.errors import DocumentTooLarge, InvalidDocument, InvalidPlacement, SigningFailed
from pki.signing.pades import Level, PadesRequest, PadesService, Placement, free_box, read_pdf
from pki.signing.stamp import (
    QR_QUIET,
    InvalidStamp,
    StampText,
    bidi_runs,
    font_paths,
    qr_matrix,
    qr_square,
    utc_offset,
)
from tests.pki.test_pades_pki import (
    FROZEN_AT,
    build_pki,
    make_nss_db,
    pdfsig,
    permit_pdf,
    stamp_for,
)

LATER = FROZEN_AT + timedelta(minutes=10)


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    return build_pki()


@pytest.fixture(scope="module")
def service(pki) -> PadesService:  # type: ignore[no-untyped-def]
    return PadesService(FrozenClock(FROZEN_AT), trust_roots=[pki.root],
                        timestamper=pki.timestamper(), revocation=pki.revocation_source())


@pytest.fixture(scope="module")
def signed(pki, service) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """One permit signed at each level, and a B-LT permit signed a second time."""
    stamp = dataclasses.replace(stamp_for(), link=LINK)  # the stamp carries a QR code
    documents = {level.value: service.sign(permit_pdf(), pki.signer(),
                                           PadesRequest(level=level, stamp=stamp)).data
                 for level in Level}
    documents["twice"] = service.sign(documents["B-LT"], pki.signer("second"),
                                      PadesRequest(level=Level.B_LT,
                                                   stamp=stamp_for("second"))).data
    return documents


@pytest.fixture(scope="module")
def nss(pki, tmp_path_factory) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    directory = tmp_path_factory.mktemp("nss")
    return make_nss_db(directory / "db", pki.root), directory


# --------------------------------------------------------------------------- stamp


def test_bidi_runs_keep_numbers_left_to_right() -> None:
    runs = bidi_runs("بتاريخ 16/03/2026 على الساعة 09:30")
    assert runs == [("rtl", "بتاريخ "), ("ltr", "16/03/2026"), ("rtl", " على الساعة "),
                    ("ltr", "09:30")]
    assert bidi_runs("محمد العلوي") == [("rtl", "محمد العلوي")]
    assert bidi_runs("12") == [("ltr", "12")]


def test_stamp_states_the_time_zone() -> None:
    summer = stamp_for(at=datetime(2026, 6, 1, 8, 0, tzinfo=UTC))
    fr, ar = summer.rows()[-1]
    assert fr.text == "Le 01/06/2026 à 09:00 UTC+01:00"
    assert ar.text.endswith("09:00 UTC+01:00")
    assert utc_offset(datetime(2026, 3, 16, 9, 30, tzinfo=UTC).astimezone(
        ZoneInfo("Africa/Casablanca"))) == "UTC+00:00"  # Ramadan


def test_stamp_text_is_validated() -> None:
    good = stamp_for()
    assert good.rows()[1][0].text == "Mohamed El Alaoui"
    assert "16/03/2026" in good.rows()[-1][1].text  # 10:30 in Casablanca, same day
    with pytest.raises(InvalidStamp):
        StampText("", "م", "t", "ت", "o", "ج", FROZEN_AT)
    with pytest.raises(InvalidStamp):
        StampText("n", "م", "t", "ت", "o", "ج", FROZEN_AT.replace(tzinfo=None))
    with pytest.raises(InvalidStamp):
        StampText("n\x00", "م", "t", "ت", "o", "ج", FROZEN_AT)


LINK = "http://pki.tawqi.ma/s/q8Jd2kT0bX4mYpLwZr9vNA"


def _pgm(path: Path) -> tuple[int, int, bytes]:
    """Width, height and pixels of a binary greyscale PGM (pdftoppm -gray)."""
    raw = path.read_bytes()
    fields_: list[bytes] = []
    pos = 0
    while len(fields_) < 4:
        while raw[pos:pos + 1].isspace():
            pos += 1
        end = pos
        while not raw[end:end + 1].isspace():
            end += 1
        fields_.append(raw[pos:end])
        pos = end
    assert fields_[0] == b"P5"
    return int(fields_[1]), int(fields_[2]), raw[pos + 1:]


def test_stamp_link_is_checked() -> None:
    for bad in ("ftp://x/s/1", "http://x/ s", "http://x/" + "a" * 200, "http://é.ma/s/1"):
        with pytest.raises(InvalidStamp):
            dataclasses.replace(stamp_for(), link=bad)


def drawn_qr(data: bytes, box: tuple[float, ...], tmp_path: Path,
             page_height: float = 842) -> list[list[bool]]:
    """The modules of the QR code drawn in the stamp at ``box`` of the first page, read
    back from a poppler render (no QR decoder is installed): each module's centre, dark or
    light, quiet zone included."""
    x1, y1, x2, y2 = box
    path = tmp_path / "qr.pdf"
    path.write_bytes(data)
    scale = 8  # pixels per point (576 dpi)
    subprocess.run(["pdftoppm", "-gray", "-r", str(72 * scale), "-f", "1", "-l", "1",
                    "-x", str(int(x1 * scale)), "-y", str(int((page_height - y2) * scale)),
                    "-W", str(int((x2 - x1) * scale)), "-H", str(int((y2 - y1) * scale)),
                    str(path), str(tmp_path / "qr")], check=True)
    width, _height, pixels = _pgm(next(tmp_path.glob("qr*.pgm")))
    qx, qy, side = qr_square(x2 - x1, y2 - y1, 6.0)
    # The module count of the code drawn: the version that fits, read from the finder
    # pattern's width along the top row (7 dark modules, then a light one).
    top = (y2 - y1) - (qy + side)  # from the box's top edge, in points

    def dark(col: float, row: float, module: float) -> bool:
        px = int((qx + (col + 0.5) * module) * scale)
        py = int((top + (row + 0.5) * module) * scale)
        return pixels[py * width + px] < 128

    for version in range(1, 11):
        count = 17 + 4 * version
        module = side / (count + 2 * QR_QUIET)
        row = [dark(c, QR_QUIET, module) for c in range(QR_QUIET, QR_QUIET + 8)]
        if row == [True] * 7 + [False] and dark(QR_QUIET + count - 1, QR_QUIET, module):
            size = count + 2 * QR_QUIET
            return [[dark(c, r, module) for c in range(size)] for r in range(size)]
    raise AssertionError("no QR code found in the stamp")


def with_quiet_zone(matrix: list[list[bool]]) -> list[list[bool]]:
    size = len(matrix) + 2 * QR_QUIET
    return ([[False] * size for _ in range(QR_QUIET)]
            + [[False] * QR_QUIET + row + [False] * QR_QUIET for row in matrix]
            + [[False] * size for _ in range(QR_QUIET)])


def test_qr_code_on_the_stamp_reads_back_as_the_link(pki, service, tmp_path: Path
                                                    ) -> None:  # type: ignore[no-untyped-def]
    """The page is rendered by poppler and each module's centre compared with the code of
    the link (a re-encoding). The text stays whole beside it, and the file still passes
    pdfsig and pyHanko (the ``signed`` fixture's stamps carry the code)."""
    signed = service.sign(permit_pdf(), pki.signer(),
                          PadesRequest(level=Level.B_B,
                                       stamp=dataclasses.replace(stamp_for(), link=LINK)))
    assert signed.box is not None
    assert signed.box[2] - signed.box[0] > 300  # widened by the code's square
    assert drawn_qr(signed.data, signed.box, tmp_path) == with_quiet_zone(qr_matrix(LINK))
    assert drawn_qr(signed.data, signed.box, tmp_path) != with_quiet_zone(
        qr_matrix(LINK[:-1] + "B"))
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "qr.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Président du conseil communal" in text and "Mohamed El Alaoui" in text


def test_missing_font_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        font_paths(tmp_path)


def test_stamp_is_drawn_with_both_scripts(signed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "stamped.pdf"
    path.write_bytes(signed["B-B"])
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "Mohamed El Alaoui" in text
    assert "Président du conseil communal" in text
    assert "Le 16/03/2026" in text
    # The Arabic glyphs carry a ToUnicode map: the text comes back (poppler prints it in
    # visual order, so look for the letters rather than the word).
    assert set("محمدالعلوي") <= set(text)
    # The time zone is stated (16 March 2026 falls in Ramadan: Morocco is on UTC+00:00).
    assert "09:30 UTC+00:00" in text
    # Each run is marked with its text in logical order (/ActualText) and the runs of an
    # Arabic line are written in logical order: poppler's words (what its search matches)
    # hold the holder's name and the commune as written.
    words = [line.split("\t")[-1] for line in subprocess.run(
        ["pdftotext", "-tsv", str(path), "-"], capture_output=True, text=True,
        check=True).stdout.splitlines()[1:]]
    assert "محمد العلوي" in words and "جماعة الحسيمة" in words
    # The stamp is really painted: the rendered box is not blank.
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-x", "140", "-y", "390", "-W", "170",
                    "-H", "60", str(path), str(tmp_path / "box")], check=True)
    png = next(tmp_path.glob("box*.png")).read_bytes()
    assert len(png) > 2000


def test_second_stamp_goes_above_the_first(signed) -> None:  # type: ignore[no-untyped-def]
    reader = read_pdf(signed["twice"], max_bytes=10**8)
    boxes = [tuple(float(v) for v in s.sig_field["/Rect"])
             for s in reader.embedded_regular_signatures]
    assert len(boxes) == 2
    first, second = sorted(boxes, key=lambda b: b[1])
    assert second[1] >= first[3]  # no overlap: stacked upwards
    assert free_box(reader, 0)[1] >= second[3]


def test_inherited_media_box(pki, service) -> None:  # type: ignore[no-untyped-def]
    """Many PDFs put /MediaBox on the page tree, not on each page."""
    from pyhanko.pdf_utils import generic

    writer = IncrementalPdfFileWriter(io.BytesIO(permit_pdf()))
    page_ref, _resources = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    pages = writer.root["/Pages"]
    pages[generic.NameObject("/MediaBox")] = page["/MediaBox"]
    del page["/MediaBox"]
    writer.update_container(page)
    writer.update_container(pages)
    out = io.BytesIO()
    writer.write(out)
    signed = service.sign(out.getvalue(), pki.signer(),
                          PadesRequest(level=Level.B_B, stamp=stamp_for()))
    assert signed.box == (259.0, 36.0, 559.0, 132.0)


def test_placement_is_checked(pki, service) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidPlacement):
        Placement(box=(0, 0, 10, 10))
    with pytest.raises(InvalidPlacement):
        service.sign(permit_pdf(), pki.signer(),
                     PadesRequest(level=Level.B_B, stamp=stamp_for(),
                                  placement=Placement(page=3)))
    explicit = service.sign(permit_pdf(pages=2), pki.signer(),
                            PadesRequest(level=Level.B_B, stamp=stamp_for(),
                                         placement=Placement(page=0,
                                                             box=(40, 700, 360, 800))))
    assert explicit.page == 0 and explicit.box == (40.0, 700.0, 360.0, 800.0)


# --------------------------------------------------------------------------- levels


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "twice"])
def test_pdfsig_reports_valid_and_trusted(signed, nss, level: str) -> None:  # type: ignore[no-untyped-def]
    db, directory = nss
    report = pdfsig(signed[level], db, directory)
    assert len(report) == (2 if level == "twice" else 1)
    for signature in report:
        assert signature["Signature Validation"] == "Signature is Valid."
        assert signature["Certificate Validation"] == "Certificate is Trusted."
        assert signature["Signature Type"] == "ETSI.CAdES.detached"
    assert report[0]["Signer Certificate Common Name"] == "Mohamed El Alaoui"


def _ltv_context(data: bytes, roots: list[x509.Certificate]) -> ValidationContext:
    """pyHanko's long-term validation context: the file's DSS and nothing else (no
    fetching, revocation data required for every certificate of the path)."""
    reader = PdfFileReader(io.BytesIO(data))
    dss = DocumentSecurityStore.read_dss(reader)
    return dss.as_validation_context({
        "trust_roots": [to_asn1(r) for r in roots], "allow_fetching": False,
        "revocation_mode": "require", "moment": LATER})


def test_pyhanko_finds_b_lt_ltv_enabled(pki, signed) -> None:  # type: ignore[no-untyped-def]
    embedded = PdfFileReader(io.BytesIO(signed["B-LT"])).embedded_regular_signatures[0]
    context = _ltv_context(signed["B-LT"], [pki.root])
    status = validate_pdf_signature(embedded, signer_validation_context=context,
                                    ts_validation_context=_ltv_context(signed["B-LT"],
                                                                       [pki.root]))
    assert status.bottom_line and status.trusted and not status.revoked
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    assert status.modification_level == ModificationLevel.LTA_UPDATES
    # B-T has no DSS: nothing to validate with offline.
    with pytest.raises(NoDSSFoundError):
        _ltv_context(signed["B-T"], [pki.root])


def test_b_lt_dss_holds_chain_ocsp_and_crls(pki, signed) -> None:  # type: ignore[no-untyped-def]
    reader = PdfFileReader(io.BytesIO(signed["B-LT"]))
    dss = reader.root["/DSS"]
    certs = {x509.load_der_x509_certificate(ref.get_object().data).subject
             for ref in dss["/Certs"]}
    assert {pki.ca.subject, pki.signer().certificate.subject, pki.tsa_cert.subject} <= certs
    assert len(dss["/OCSPs"]) >= 2  # holder and TSA
    assert len(dss["/CRLs"]) == 2  # issuing CA and root


def test_b_t_carries_our_timestamp(pki, signed) -> None:  # type: ignore[no-untyped-def]
    reader = PdfFileReader(io.BytesIO(signed["B-T"]))
    embedded = reader.embedded_regular_signatures[0]
    context = ValidationContext(trust_roots=[to_asn1(pki.root)], allow_fetching=False,
                                revocation_mode="soft-fail", moment=LATER)
    status = validate_pdf_signature(embedded, signer_validation_context=context,
                                    ts_validation_context=context)
    assert status.bottom_line
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.timestamp == FROZEN_AT + timedelta(seconds=1)
    # Legacy field: PAdES puts the claimed time in /M, not in a CMS attribute.
    assert embedded.self_reported_timestamp == FROZEN_AT


def test_second_signature_keeps_the_first_valid(pki, signed) -> None:  # type: ignore[no-untyped-def]
    reader = PdfFileReader(io.BytesIO(signed["twice"]))
    first, second = reader.embedded_regular_signatures
    context = ValidationContext(trust_roots=[to_asn1(pki.root)], allow_fetching=False,
                                revocation_mode="soft-fail", moment=LATER)
    status = validate_pdf_signature(first, signer_validation_context=context)
    assert status.intact and status.valid and status.docmdp_ok
    assert status.modification_level == ModificationLevel.FORM_FILLING
    assert validate_pdf_signature(second, signer_validation_context=context).bottom_line


# --------------------------------------------------------------------------- refusals


def test_b_lt_refuses_a_revoked_certificate(pki, service) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SigningFailed):
        service.sign(permit_pdf(), pki.signer("revoked"), PadesRequest(level=Level.B_LT))


def test_levels_need_their_services(pki) -> None:  # type: ignore[no-untyped-def]
    bare = PadesService(FrozenClock(FROZEN_AT))
    with pytest.raises(SigningFailed):
        bare.sign(permit_pdf(), pki.signer(), PadesRequest(level=Level.B_T))
    with pytest.raises(SigningFailed):
        bare.sign(permit_pdf(), pki.signer(), PadesRequest(level=Level.B_LT))
    assert bare.sign(permit_pdf(), pki.signer(), PadesRequest(level=Level.B_B)).data


@pytest.mark.parametrize("data", [b"", b"hello", b"%PDF-1.7\n garbage garbage",
                                  b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>"])
def test_broken_documents_are_refused(pki, service, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidDocument) as caught:
        service.sign(data, pki.signer(), PadesRequest(level=Level.B_B))
    assert 400 <= caught.value.status < 500


def test_oversized_and_encrypted_documents_are_refused(pki) -> None:  # type: ignore[no-untyped-def]
    small = PadesService(FrozenClock(FROZEN_AT), max_bytes=100)
    with pytest.raises(DocumentTooLarge) as caught:
        small.sign(permit_pdf(), pki.signer(), PadesRequest(level=Level.B_B))
    assert caught.value.status == 413
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(permit_pdf())))
    writer.encrypt("owner", "user")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(InvalidDocument):
        read_pdf(out.getvalue(), max_bytes=10**7)


def test_request_is_validated() -> None:
    with pytest.raises(Exception, match="B-B, B-T, B-LT or B-LTA"):
        PadesRequest(level="B-LTB")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="field_name"):
        PadesRequest(field_name="bad name")
    assert PadesRequest(level="B-T").level is Level.B_T  # type: ignore[arg-type]
    assert PadesRequest(level="B-LTA").level is Level.B_LTA  # type: ignore[arg-type]


# --------------------------------------------------------------------------- token keys


@pytest.mark.hsm
def test_a_token_key_signs_through_the_pyhanko_adapter(pki, hsm_token, nss, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same path with a key on SoftHSM: pki.signer's adapter, the token signs."""
    from tests.pki.test_pades_pki import HOLDER_EKU, _cert, _endpoints, _ku

    library, label, _so, pin = hsm_token
    key_id = b"\x01\x02"
    public = library.generate_key_pair(label, pin, key_type="EC-P256", key_label="holder",
                                       key_id=key_id)
    holder = pki.signer().certificate
    cert = _cert(holder.subject, public, pki.ca, pki.ca_key, ca=False, days=365,
                 extensions=[(_ku(content_commitment=True), True), (HOLDER_EKU, False),
                             *_endpoints()],
                 not_before=FROZEN_AT - timedelta(days=1), serial=0x3001)
    token_key = library.private_key(label, pin, key_id=key_id)
    signer = Signer(token_key, cert, (pki.ca, pki.root))
    service = PadesService(FrozenClock(FROZEN_AT), trust_roots=[pki.root],
                           timestamper=pki.timestamper(),
                           revocation=pki.revocation_source())
    signed = service.sign(permit_pdf(), signer, PadesRequest(level=Level.B_T,
                                                             stamp=stamp_for())).data
    db, directory = nss
    report = pdfsig(signed, db, directory)
    assert report[0]["Signature Validation"] == "Signature is Valid."
    assert report[0]["Certificate Validation"] == "Certificate is Trusted."
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        token_key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------- placement


def _page_with(content: bytes) -> bytes:
    """A one-page A4 permit with ``content`` drawn after its title (font /F1)."""
    writer = PdfFileWriter()
    font = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Font"),
        generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
        generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica")})
    resources = generic.DictionaryObject({generic.NameObject("/Font"): generic.DictionaryObject(
        {generic.NameObject("/F1"): font})})
    stream = b"BT /F1 16 Tf 72 760 Td (Permis de construire) Tj ET " + content
    writer.insert_page(PageObject(
        contents=writer.add_object(generic.StreamObject(stream_data=stream)),
        media_box=generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
        resources=resources))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# The permit's own signature block, bottom right: a framed area with a caption.
SIGNATURE_BLOCK = (330.0, 50.0, 560.0, 170.0)
BLOCK = (b"q 0 0 0 RG 1 w 330 50 230 120 re S Q "
         b"BT /F1 11 Tf 340 150 Td (Le President du conseil communal) Tj ET")


def _stamp_boxes(data: bytes) -> list[tuple[float, ...]]:
    reader = read_pdf(data, max_bytes=10**8)
    return [tuple(float(v) for v in s.sig_field["/Rect"])
            for s in reader.embedded_regular_signatures]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_stamps_avoid_the_signature_block_and_each_other(pki, service, nss) -> None:  # type: ignore[no-untyped-def]
    """The third signature on a permit covers neither the permit's own signature block
    nor the two earlier stamps: each stamp goes where the page has no ink."""
    document = _page_with(BLOCK)
    for name in ("good", "second", "good"):
        document = service.sign(document, pki.signer(name), PadesRequest(
            level=Level.B_B, stamp=stamp_for(name))).data
    boxes = _stamp_boxes(document)
    assert len(boxes) == 3
    for index, box in enumerate(boxes):
        assert not _overlap(box, SIGNATURE_BLOCK), box
        assert all(not _overlap(box, other) for other in boxes[index + 1:])
    db, directory = nss
    report = pdfsig(document, db, directory)
    assert [s["Signature Validation"] for s in report] == ["Signature is Valid."] * 3


def test_a_full_page_gets_an_opaque_stamp(pki, service) -> None:  # type: ignore[no-untyped-def]
    """No free place: the stamp sits over content on a white background, still clear of
    earlier stamps."""
    lines = b" ".join(b"BT /F1 9 Tf 40 %d Td (%s) Tj ET" % (y, b"texte " * 20)
                      for y in range(30, 820, 10))
    document = _page_with(lines)
    first = service.sign(document, pki.signer(), PadesRequest(level=Level.B_B,
                                                              stamp=stamp_for())).data
    reader = read_pdf(first, max_bytes=10**8)
    [signature] = reader.embedded_regular_signatures
    appearance = signature.sig_field["/AP"]["/N"]
    assert b"1 1 1 rg" in appearance.data  # painted white before the text
    second = service.sign(first, pki.signer("second"), PadesRequest(
        level=Level.B_B, stamp=stamp_for("second"))).data
    one, two = _stamp_boxes(second)
    assert not _overlap(one, two)


def test_a_named_empty_field_takes_the_stamp(pki, service) -> None:  # type: ignore[no-untyped-def]
    writer = IncrementalPdfFileWriter(io.BytesIO(permit_pdf()))
    fields.append_signature_field(writer, fields.SigFieldSpec(
        "President", on_page=0, box=(60, 60, 360, 156)))
    out = io.BytesIO()
    writer.write(out)
    signed = service.sign(out.getvalue(), pki.signer(), PadesRequest(
        level=Level.B_B, stamp=stamp_for(), field_name="President")).data
    assert _stamp_boxes(signed) == [(60.0, 60.0, 360.0, 156.0)]


def test_a_document_signed_again_is_placed_without_a_new_render(  # type: ignore[no-untyped-def]
        pki, service, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bytes get the same place from the placement cache, without pdftoppm; other
    bytes (a signed copy: its page has a stamp now) are rendered and placed anew."""
    from pki.signing import pades

    pades.forget_placements()
    renders: list[int] = []
    real = pades.ink_map

    def counted(data: bytes, page: int, crop: tuple[float, float, float, float]
                ) -> pades.InkMap | None:
        renders.append(page)
        return real(data, page, crop)

    monkeypatch.setattr(pades, "ink_map", counted)
    document = _page_with(BLOCK)
    first = service.sign(document, pki.signer(), PadesRequest(level=Level.B_B,
                                                              stamp=stamp_for()))
    again = service.sign(document, pki.signer(), PadesRequest(
        level=Level.B_B, stamp=dataclasses.replace(stamp_for(), signed_at=LATER)))
    assert renders == [0]
    assert again.box == first.box and not _overlap(first.box, SIGNATURE_BLOCK)
    third = service.sign(first.data, pki.signer("second"), PadesRequest(
        level=Level.B_B, stamp=stamp_for("second")))
    assert renders == [0, 0]
    assert not _overlap(third.box, first.box)
    pades.forget_placements()
    fresh = service.sign(document, pki.signer(), PadesRequest(level=Level.B_B,
                                                              stamp=stamp_for()))
    assert renders == [0, 0, 0] and fresh.box == first.box


def _page_pixels(content: bytes, tmp_path: Path, name: str) -> bytes:
    """A one-page PDF drawing ``content``, rendered in grey by poppler at 300 dpi."""
    writer = PdfFileWriter()
    writer.insert_page(PageObject(
        contents=writer.add_object(generic.StreamObject(stream_data=content)),
        media_box=generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 300, 100)])))
    out = io.BytesIO()
    writer.write(out)
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(out.getvalue())
    subprocess.run(["pdftoppm", "-gray", "-r", "300", "-singlefile", str(path),
                    str(tmp_path / name)], check=True)
    return _pgm(tmp_path / f"{name}.pgm")[2]


def test_qr_operators_draw_the_modules_in_points(tmp_path: Path) -> None:
    """The QR code is written in module units under one matrix: poppler draws it as it
    draws one square per dark module placed in points (the former way of writing it)."""
    from pki.signing.stamp import _qr_ops

    x, y, side = 200.0, 6.0, 84.0
    matrix = qr_matrix(LINK)
    module = side / (len(matrix) + 2 * QR_QUIET)
    top, left = y + side - QR_QUIET * module, x + QR_QUIET * module
    squares = [b"%.3f %.3f %.3f %.3f re" % (left + c * module, top - (r + 1) * module,
                                            module, module)
               for r, row in enumerate(matrix) for c, dark in enumerate(row) if dark]
    in_points = b" ".join([b"q 1 1 1 rg %.3f %.3f %.3f %.3f re f 0 0 0 rg" % (x, y, side, side),
                           *squares, b"f Q"])
    drawn = _page_pixels(_qr_ops(LINK, x, y, side), tmp_path, "units")
    assert drawn == _page_pixels(in_points, tmp_path, "points")  # the same pixels
    assert sum(1 for v in drawn if v < 128) > 10_000  # a code was drawn
    assert drawn != _page_pixels(_qr_ops(LINK[:-1] + "B", x, y, side), tmp_path, "other")
