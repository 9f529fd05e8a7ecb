"""Hand-made malformed PDFs for the upload checks (each with the ``reason`` it must get)."""

from __future__ import annotations

import io

from pyhanko.pdf_utils.writer import PdfFileWriter

CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"


def raw_pdf(objects: list[bytes], *, root: int = 1) -> bytes:
    """A PDF made of ``objects`` (numbered from 1) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, xref)
    return bytes(out)


def one_page() -> bytes:
    return raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE])


def encrypted() -> bytes:
    writer = PdfFileWriter()
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def broken() -> dict[str, tuple[bytes, str]]:
    """name -> (document, the ``reason`` of its ``pki-invalid-document``)."""
    good = one_page()
    return {
        # /Pages whose /Kids is itself: the page tree loops.
        "pages-kids-itself": (raw_pdf([CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"]),
                              "page-tree-loop"),
        "pages-loop-below": (raw_pdf([
            CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>"]), "page-tree-loop"),
        "page-twice": (raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R 3 0 R] /Count 2 >>",
                                PAGE]), "page-tree-loop"),
        "count-lies": (raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 7 >>",
                                PAGE]), "page-count-mismatch"),
        "no-page": (raw_pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"]), "no-pages"),
        "kid-not-a-page": (raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                                    b"42"]), "page-tree-invalid"),
        "form-field-loop": (raw_pdf([
            b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [4 0 R] >> >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE,
            b"<< /T (a) /Kids [4 0 R] >>"]), "form-loop"),
        "broken-xref": (good[:good.index(b"xref")]
                        + b"trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n99999\n%%EOF\n",
                        "unreadable"),
        "truncated": (good[:60], "unreadable"),
        "encrypted": (encrypted(), "encrypted"),
        "not-a-pdf": (b"GIF89a not a PDF at all", "not-pdf"),
        "empty": (b"", "empty"),
    }
