"""PAdES signing of PDF documents (ETSI EN 319 142-1 baseline levels B-B to B-LTA).

pyHanko does the PDF work; the signature itself is made through :func:`pki.signer.
pyhanko_signer`, hence on the holder's token. :class:`PadesService` adds what a level needs:

* **B-B**: a CAdES-style signature (``ETSI.CAdES.detached``) with the signing certificate
  and its chain embedded;
* **B-T**: plus a signature time-stamp from our TSA (any pyHanko ``TimeStamper``; in the
  service it is :class:`LocalTimeStamper`, our RFC 3161 authority called in-process);
* **B-LT**: plus, in a Document Security Store written in an incremental update after the
  signature, the certificates, OCSP responses and CRLs that prove the signing certificate
  and the time-stamping certificate were valid (from a :class:`RevocationSource`);
* **B-LTA**: plus a document time-stamp from our TSA, followed by its own validation data
  (the TSA's chain and revocation data, in the DSS with a VRI entry).

:meth:`PadesService.extend` takes a signed PDF (any level, ours or not) to B-LTA, or adds a
fresh archive time-stamp to a B-LTA document before the last one's TSA certificate expires:
one DSS update with the current validation data of every signature and time-stamp in the
file, then a new document time-stamp with its own validation data.

Signing never touches a network: revocation data comes from our own records, the TSA is
called in-process. The visible stamp is :mod:`pki.signing.stamp`. A document that already carries
signatures is signed in an incremental update, so earlier signatures stay valid.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.decode_limits import DecodeLimits
from pyhanko.pdf_utils.generic import ArrayObject, DictionaryObject, IndirectObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, read_certification_data
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import Clock, as_utc
from core.errors import InvalidInput
from core.memo import Memo
from pki.authority import sha1
from pki.models import AuthorityRecord, CrlRecord, OcspRecord
from pki.signer import Signer, from_asn1, pyhanko_signer, to_asn1
from pki.signing import sizing
from pki.signing.errors import (
    DocumentLocked,
    DocumentTooLarge,
    InvalidDocument,
    InvalidPlacement,
    SigningFailed,
    TimeStampUnavailable,
)
from pki.signing.stamp import BilingualStampStyle, StampText

# pyHanko warns that B-LT revocation data is embedded "but fetching is not allowed": by
# design, our data comes from our own records.
logging.getLogger("pyhanko.sign.signers.pdf_signer").setLevel(logging.ERROR)

#: Default size of the visible stamp, in PDF points (1/72 in).
STAMP_WIDTH = 300
STAMP_HEIGHT = 96
#: A stamp with a QR code is wider by the code's square, so its text keeps its size.
STAMP_QR_WIDTH = STAMP_WIDTH + STAMP_HEIGHT - 12
STAMP_MARGIN = 36
STAMP_GAP = 8
FIELD_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Level(StrEnum):
    """PAdES baseline levels we produce."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        return self in (Level.B_LT, Level.B_LTA)

    @property
    def archival(self) -> bool:
        return self is Level.B_LTA


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Placement:
    """Where the visible stamp goes: ``page`` (0-based, negative counts from the end) and
    ``box`` ``(x1, y1, x2, y2)`` in points; ``box=None`` picks a free spot at the bottom of
    the page, above earlier stamps."""

    page: int = -1
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.page, int) or isinstance(self.page, bool):
            raise InvalidPlacement("page must be an integer")
        if self.box is not None:
            if len(self.box) != 4:
                raise InvalidPlacement("box is four numbers: x1, y1, x2, y2")
            x1, y1, x2, y2 = (float(v) for v in self.box)
            if x2 - x1 < 120 or y2 - y1 < 40:
                raise InvalidPlacement("the stamp box must be at least 120 x 40 points")
            object.__setattr__(self, "box", (x1, y1, x2, y2))


@dataclass(frozen=True)
class PadesRequest:
    """One signature to add. ``stamp=None`` makes an invisible signature."""

    level: Level = Level.B_LT
    stamp: StampText | None = None
    placement: Placement = field(default_factory=Placement)
    reason: str | None = None
    location: str | None = None
    field_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            try:
                object.__setattr__(self, "level", Level(self.level))
            except ValueError as exc:
                raise InvalidInput("level must be B-B, B-T, B-LT or B-LTA",
                                   allowed=[lv.value for lv in Level]) from exc
        if self.field_name is not None and not FIELD_NAME.fullmatch(self.field_name):
            raise InvalidInput("field_name is 1 to 64 letters, digits, '_', '.' or '-'")
        for name in ("reason", "location"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise InvalidInput(f"{name} is text of at most 200 characters")


@dataclass(frozen=True)
class RevocationData:
    """DER OCSP responses and CRLs to embed or to validate with."""

    ocsps: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()

    def __add__(self, other: RevocationData) -> RevocationData:
        return RevocationData(_unique(self.ocsps + other.ocsps),
                              _unique(self.crls + other.crls))


def _unique(items: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(dict.fromkeys(items))


class RevocationSource(Protocol):
    """Current revocation data for certificates (ours: from the CA's records)."""

    def revocation_data(self, certificates: Sequence[x509.Certificate]) -> RevocationData:
        """OCSP responses and CRLs covering as many of ``certificates`` as known; certificates
        not issued by us are ignored."""
        ...


class RecordsRevocation:
    """Our CA's current revocation data, from its records: the pre-signed OCSP response of
    each certificate it issued, and the latest CRL of each of our CAs. Certificates that are
    not ours are ignored. Stale data is left out (it would not validate); keeping it fresh
    is ``tawqi ca refresh``'s job."""

    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def revocation_data(self, certificates: Sequence[x509.Certificate]) -> RevocationData:
        now = as_utc(self.clock.now())
        authorities = {row.name_hash: row for row in self.session.scalars(
            select(AuthorityRecord))}
        # Ours, by issuing CA (roots are their own issuers and carry no status).
        serials: dict[int, list[str]] = {}
        for cert in certificates:
            issuer = authorities.get(sha1(cert.issuer.public_bytes()).hex())
            if issuer is None or cert.subject == cert.issuer:
                continue
            serials.setdefault(issuer.id, []).append(format(cert.serial_number, "x"))
        ocsps: list[bytes] = []
        crls: list[bytes] = []
        # One query per CA for its certificates' responses, one for its latest CRL (they
        # were asked certificate by certificate).
        for authority_id, wanted in serials.items():
            rows = {row.serial: row for row in self.session.scalars(select(OcspRecord).where(
                OcspRecord.authority_id == authority_id, OcspRecord.serial.in_(wanted)))}
            for serial in wanted:
                ocsp_row = rows.get(serial)
                if ocsp_row is not None and as_utc(ocsp_row.next_update) > now:
                    ocsps.append(ocsp_row.der)
            crl_row = self.session.scalars(select(CrlRecord).where(
                CrlRecord.authority_id == authority_id).order_by(CrlRecord.number.desc())
                .limit(1)).one_or_none()
            if crl_row is not None and as_utc(crl_row.next_update) > now:
                crls.append(crl_row.der)
        return RevocationData(_unique(ocsps), _unique(crls))


@dataclass(frozen=True)
class ExtendedPdf:
    """A document after :meth:`PadesService.extend`: ``archive_expires`` is when the new
    archive time-stamp's TSA certificate expires (extend again before then)."""

    data: bytes
    field_name: str
    timestamped_at: datetime
    archive_expires: datetime
    signatures: int
    archive_timestamps: int
    sha256: str


@dataclass(frozen=True)
class SignedPdf:
    data: bytes
    level: Level
    field_name: str
    signed_at: datetime
    sha256: str
    page: int | None
    box: tuple[float, float, float, float] | None
    #: The public id of the signature's status page (remote signing with a QR code).
    public_id: str | None = None


# --------------------------------------------------------------------------- time-stamps


class LocalTimeStamper(TimeStamper):
    """A pyHanko time-stamper that asks an in-process RFC 3161 responder.

    ``respond`` takes a DER ``TimeStampReq`` and returns a DER ``TimeStampResp`` (our TSA's
    HTTP endpoint does the same over the wire).
    """

    def __init__(self, respond: Callable[[bytes], bytes]) -> None:
        super().__init__(include_nonce=True)
        self._respond = respond

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        try:
            answer = self._respond(req.dump())
        except Exception as exc:
            raise TimeStampUnavailable("the time-stamping authority did not answer") from exc
        try:
            return tsp.TimeStampResp.load(answer)
        except ValueError as exc:
            raise TimeStampUnavailable("the time-stamping authority answered garbage") \
                from exc


# --------------------------------------------------------------------------- helpers


def read_pdf(data: bytes, *, max_bytes: int) -> PdfFileReader:
    """Parse an untrusted upload, or raise a 4xx domain error (``reason`` says why)."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise InvalidDocument("the document is empty", reason="empty")
    if len(data) > max_bytes:
        raise DocumentTooLarge(f"the document exceeds {max_bytes} bytes", limit=max_bytes,
                               size=len(data))
    if b"%PDF-" not in data[:1024]:  # the header may follow some junk (ISO 32000 7.5.2)
        raise InvalidDocument("the document is not a PDF (no %PDF- header)",
                              reason="not-pdf")
    try:
        reader = PdfFileReader(io.BytesIO(bytes(data)), strict=False,
                               decode_limits=DecodeLimits())
        if reader.security_handler is not None:
            raise InvalidDocument("encrypted PDFs are not supported", reason="encrypted")
        pages = reader.root["/Pages"]
        int(pages["/Count"])
    except InvalidDocument:
        raise
    except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            RecursionError) as exc:
        raise InvalidDocument("the PDF cannot be read", reason="unreadable",
                              error=type(exc).__name__) from exc
    return reader


#: Bounds of the page tree walk: nodes visited, nesting.
MAX_PAGE_TREE_NODES = 100_000
MAX_PAGE_TREE_DEPTH = 64
MAX_FIELDS = 10_000


def _broken(message: str, reason: str) -> InvalidDocument:
    return InvalidDocument(message, reason=reason)


def _entry(node: DictionaryObject, key: str) -> Any:
    """``node[key]`` dereferenced (pyHanko's ``get`` returns indirect references as they
    are), or None."""
    return node[key] if key in node else None


def _page_tree(reader: PdfFileReader) -> list[DictionaryObject]:
    """Every page of the tree, in order, checked: each node reached once (no loops, no
    shared kids), ``/Type`` /Pages or /Page, ``/Kids`` indirect references, each ``/Count``
    equal to the pages below it, bounded depth and size."""
    root_ref = reader.root.raw_get("/Pages")
    if not isinstance(root_ref, IndirectObject):
        raise _broken("the page tree root is not an indirect object", "page-tree-invalid")
    pages: list[DictionaryObject] = []
    seen: set[tuple[int, int]] = set()

    def walk(ref: IndirectObject, depth: int) -> int:
        key = (ref.idnum, ref.generation)
        if key in seen:
            raise _broken("the page tree loops or shares a node", "page-tree-loop")
        seen.add(key)
        if depth > MAX_PAGE_TREE_DEPTH or len(seen) > MAX_PAGE_TREE_NODES:
            raise _broken("the page tree is too deep or too large", "page-tree-too-large")
        node = ref.get_object()
        if not isinstance(node, DictionaryObject):
            raise _broken("a page tree node is not a dictionary", "page-tree-invalid")
        kind = _entry(node, "/Type")
        if kind == "/Page" and depth > 0:
            pages.append(node)
            return 1
        if kind != "/Pages":
            raise _broken("a page tree node is neither /Pages nor /Page",
                          "page-tree-invalid")
        kids = _entry(node, "/Kids")
        if not isinstance(kids, ArrayObject):
            raise _broken("a /Pages node has no /Kids array", "page-tree-invalid")
        below = 0
        for index in range(len(kids)):
            kid = kids.raw_get(index)
            if not isinstance(kid, IndirectObject):
                raise _broken("a page tree child is not an indirect object",
                              "page-tree-invalid")
            below += walk(kid, depth + 1)
        count = _entry(node, "/Count")
        if not isinstance(count, int) or isinstance(count, bool) or int(count) != below:
            raise _broken(f"a /Pages node's /Count is {count}, its pages {below}",
                          "page-count-mismatch")
        return below

    walk(root_ref, 0)
    if not pages:
        raise _broken("the document has no page", "no-pages")
    return pages


def _form_fields(reader: PdfFileReader) -> set[str]:
    """The full names' last parts of the AcroForm fields, walking ``/Kids`` with the same
    care as the page tree (pyHanko recurses into them when it adds a field)."""
    names: set[str] = set()
    acro = _entry(reader.root, "/AcroForm")
    if acro is None:
        return names
    if not isinstance(acro, DictionaryObject):
        raise _broken("/AcroForm is not a dictionary", "form-invalid")
    fields_array = _entry(acro, "/Fields")
    if fields_array is None:
        return names
    if not isinstance(fields_array, ArrayObject):
        raise _broken("/AcroForm /Fields is not an array", "form-invalid")
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, int]] = [(fields_array.raw_get(i), 0)
                                    for i in range(len(fields_array))]
    while stack:
        ref, depth = stack.pop()
        if isinstance(ref, IndirectObject):
            key = (ref.idnum, ref.generation)
            if key in seen:
                raise _broken("the form's field tree loops", "form-loop")
            seen.add(key)
        if depth > MAX_PAGE_TREE_DEPTH or len(seen) > MAX_FIELDS:
            raise _broken("the form's field tree is too deep or too large", "form-too-large")
        node = ref.get_object()
        if not isinstance(node, DictionaryObject):
            raise _broken("a form field is not a dictionary", "form-invalid")
        if "/T" in node and depth == 0:
            names.add(str(node["/T"]))
        kids = _entry(node, "/Kids")
        if isinstance(kids, ArrayObject):
            stack.extend((kids.raw_get(i), depth + 1) for i in range(len(kids)))
    return names


@dataclass(frozen=True)
class CheckedDocument:
    """What :meth:`PadesService.check` learnt: the document can take this signature."""

    pages: int
    field_name: str
    page: int | None
    box: tuple[float, float, float, float] | None
    opaque: bool = False  # the only free place has content: the stamp hides it
    existing_field: bool = False  # the caller named an empty signature field of the file
    #: The parsed document, for the signature that follows (not parsed again).
    reader: PdfFileReader | None = field(default=None, compare=False, repr=False)


def page_count(reader: PdfFileReader) -> int:
    return int(reader.root["/Pages"]["/Count"])


def _rect(value: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in value)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _inherited(page: Any, key: str) -> Any:
    """A page attribute, looked up the page tree (MediaBox and CropBox are inheritable)."""
    node, depth = page, 0
    while node is not None and depth < 64:
        if key in node:
            return node[key]
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
        depth += 1
    return None


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True)
class InkMap:
    """Where a rendered page has ink: a grayscale raster of the page's crop box (earlier
    stamps included, as they are drawn), ``scale`` pixels per point, origin top left."""

    width: int
    height: int
    pixels: bytes
    scale: float
    origin: tuple[float, float]  # the crop box's (x1, y2) in PDF coordinates

    def inked(self, box: tuple[float, float, float, float], pad: float = 2.0) -> bool:
        """Whether any pixel inside ``box`` (PDF coordinates, ``pad`` points larger) is
        not white."""
        left = max(0, int((box[0] - pad - self.origin[0]) * self.scale))
        right = min(self.width, int((box[2] + pad - self.origin[0]) * self.scale) + 1)
        top = max(0, int((self.origin[1] - box[3] - pad) * self.scale))
        bottom = min(self.height, int((self.origin[1] - box[1] + pad) * self.scale) + 1)
        for row in range(top, bottom):
            start = row * self.width
            if min(self.pixels[start + left:start + right], default=255) < INK_THRESHOLD:
                return True
        return False


#: Rendering resolution of the ink map (dots per inch) and the gray level below which a
#: pixel counts as ink.
INK_DPI = 36
INK_THRESHOLD = 245
PDFTOPPM = "pdftoppm"
log = logging.getLogger(__name__)


def ink_map(data: bytes, page: int, crop: tuple[float, float, float, float]
            ) -> InkMap | None:
    """Render ``page`` (0-based) with poppler's ``pdftoppm`` and return its ink map, or
    None when it cannot be rendered (the placement then only avoids earlier widgets)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(data)
        handle.flush()
        try:
            run = subprocess.run(
                [PDFTOPPM, "-r", str(INK_DPI), "-gray", "-cropbox", "-f", str(page + 1),
                 "-l", str(page + 1), "-singlefile", handle.name],
                capture_output=True, check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("pdftoppm could not render the page to stamp: %r", exc)
            return None
    parsed = _pgm(run.stdout) if run.returncode == 0 else None
    if parsed is None:
        log.warning("pdftoppm did not render the page to stamp (exit %s)", run.returncode)
        return None
    width, height, pixels = parsed
    return InkMap(width, height, pixels, INK_DPI / 72, (crop[0], crop[3]))


def _pgm(raw: bytes) -> tuple[int, int, bytes] | None:
    """Width, height and 8-bit pixels of a binary PGM (``P5``), or None."""
    fields: list[bytes] = []
    position = 0
    while len(fields) < 4 and position < len(raw):
        while position < len(raw) and raw[position:position + 1].isspace():
            position += 1
        if raw[position:position + 1] == b"#":
            position = raw.find(b"\n", position) + 1 or len(raw)
            continue
        end = position
        while end < len(raw) and not raw[end:end + 1].isspace():
            end += 1
        fields.append(raw[position:end])
        position = end
    if len(fields) < 4 or fields[0] != b"P5" or fields[3] != b"255":
        return None
    width, height = int(fields[1]), int(fields[2])
    pixels = raw[position + 1:position + 1 + width * height]
    if len(pixels) != width * height:
        return None
    return width, height, pixels


def page_box(reader: PdfFileReader, page: int) -> tuple[float, float, float, float]:
    """The visible area of ``page``: its CropBox, else its MediaBox (A4 if neither)."""
    page_ref, _resources = reader.find_page_for_modification(page)
    page_obj = page_ref.get_object()
    box = _inherited(page_obj, "/CropBox") or _inherited(page_obj, "/MediaBox")
    return _rect(box) if box is not None else (0.0, 0.0, 595.0, 842.0)  # A4


#: Steps of the search for a free place, in points.
STEP_X = 12
STEP_Y = 8


def choose_box(reader: PdfFileReader, page: int, ink: InkMap | None = None,
               width: float = STAMP_WIDTH, height: float = STAMP_HEIGHT
               ) -> tuple[tuple[float, float, float, float], bool]:
    """A place for a stamp on ``page`` and whether it needs an opaque background.

    Candidates run from the bottom right of the page, right to left, then upwards. The
    first one clear of earlier widgets (signature stamps, form fields) and of ink is
    chosen; when every place clear of widgets has ink (a full page), the first of those,
    with an opaque background. A stamp never covers an earlier one: a page with no place
    left is :class:`InvalidPlacement` (``reason: page-full``)."""
    page_ref, _resources = reader.find_page_for_modification(page)
    page_obj = page_ref.get_object()
    media = page_box(reader, page)
    taken = []
    annots = _entry(page_obj, "/Annots")
    if isinstance(annots, ArrayObject):
        for annot in annots:
            annot = annot.get_object()
            if isinstance(annot, DictionaryObject) and "/Rect" in annot:
                taken.append(_rect(annot["/Rect"]))
    width = min(width, media[2] - media[0] - 2 * STAMP_MARGIN)
    if width < 120 or media[3] - media[1] - 2 * STAMP_MARGIN < height:
        raise InvalidPlacement("the page is too small for a signature stamp")
    right, bottom = media[2] - STAMP_MARGIN, media[1] + STAMP_MARGIN
    clear_of_widgets: list[tuple[float, float, float, float]] = []
    y = bottom
    while y + height <= media[3] - STAMP_MARGIN + 0.5:
        x = right
        while x - width >= media[0] + STAMP_MARGIN - 0.5:
            box = (x - width, y, x, y + height)
            if not any(_overlaps(box, other) for other in taken):
                if ink is None or not ink.inked(box):
                    return box, False
                clear_of_widgets.append(box)
            x -= STEP_X
        y += STEP_Y
    if clear_of_widgets:
        return clear_of_widgets[0], True
    raise InvalidPlacement("no place is left for a stamp on this page: name another page "
                           "or a box", reason="page-full", page=page)


def free_box(reader: PdfFileReader, page: int, width: float = STAMP_WIDTH,
             height: float = STAMP_HEIGHT, ink: InkMap | None = None
             ) -> tuple[float, float, float, float]:
    """The box :func:`choose_box` picks (opaque or not)."""
    return choose_box(reader, page, ink, width, height)[0]


#: Placements kept per process (:func:`place_stamp`), a few dozen bytes each.
MAX_PLACEMENTS = 1024
_placements: Memo[tuple[bytes, int, float, float],
                  tuple[tuple[float, float, float, float], bool]] = Memo(MAX_PLACEMENTS)


def place_stamp(reader: PdfFileReader, data: bytes, page: int, width: float = STAMP_WIDTH,
                height: float = STAMP_HEIGHT
                ) -> tuple[tuple[float, float, float, float], bool]:
    """:func:`choose_box` with the page's ink map, remembered per document: the same bytes
    (by SHA-256), page and stamp size give the same place, so a document signed again as it
    is (a permit template, a batch of copies) is not rendered again. The render is the
    costly part (a ``pdftoppm`` process, 10 to 300 ms); a place chosen without an ink map
    (the page could not be rendered) is not remembered."""
    key = (hashlib.sha256(data).digest(), page, float(width), float(height))
    found = _placements.get(key)
    if found is not None:
        return found
    ink = ink_map(data, page, page_box(reader, page))
    chosen = choose_box(reader, page, ink, width, height)
    if ink is not None:
        _placements.put(key, chosen)
    return chosen


def forget_placements() -> None:
    """Empty the cache of :func:`place_stamp` (tests)."""
    _placements.clear()


_SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"  # id-aa-signatureTimeStampToken


def _empty_signature_fields(reader: PdfFileReader) -> set[str]:
    """Names of the signature fields of the form that are not signed yet."""
    return {name for name, _value, _ref in
            fields.enumerate_sig_fields(reader, filled_status=False)}


def _signature_certs(embedded: EmbeddedPdfSignature) -> list[asn1_x509.Certificate]:
    """The certificates a signature or document time-stamp carries, with those of the
    time-stamp tokens in its unsigned attributes."""
    found = [embedded.signer_cert, *embedded.other_embedded_certs]
    unsigned = embedded.signer_info["unsigned_attrs"]
    if not isinstance(unsigned, asn1_core.Void):
        for attr in unsigned:
            if attr["type"].dotted != _SIGNATURE_TIMESTAMP:
                continue
            for token in attr["values"]:
                for choice in token["content"]["certificates"] or ():
                    if choice.name == "certificate":
                        found.append(choice.chosen)
    return found


def _time_stamping_cert(certs: Sequence[x509.Certificate]) -> x509.Certificate:
    """The TSA's own certificate among those its token carries (the one for time-stamping,
    not a CA)."""
    for cert in certs:
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if x509.oid.ExtendedKeyUsageOID.TIME_STAMPING in usage:
            return cert
    return certs[0]


def _archive_digest(reader: PdfFileReader) -> str:
    """The digest of the last document time-stamp (an archive chain keeps its algorithm),
    else SHA-256."""
    stamps = list(reader.embedded_timestamp_signatures)
    if stamps:
        return str(stamps[-1].md_algorithm)
    return "sha256"


def _dedupe_certs(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    return list(seen.values())


# --------------------------------------------------------------------------- service


class PadesService:
    """Signs PDFs at B-B, B-T or B-LT through a :class:`pki.signer.Signer`.

    ``trust_roots`` are our root certificates (the B-LT validation must reach one);
    ``timestamper`` is needed for B-T and B-LT, ``revocation`` for B-LT. One instance per
    application: the time-stamper caches its certificates after the first request.
    """

    def __init__(self, clock: Clock, *, trust_roots: Sequence[x509.Certificate] = (),
                 timestamper: TimeStamper | None = None,
                 revocation: RevocationSource | None = None,
                 font_dir: Path | str | None = None,
                 max_bytes: int = 20 * 1024 * 1024) -> None:
        self.clock = clock
        self.trust_roots = tuple(trust_roots)
        self.timestamper = timestamper
        self.revocation = revocation
        self.font_dir = font_dir
        self.max_bytes = max_bytes

    def check(self, data: bytes, request: PadesRequest) -> CheckedDocument:
        """Parse and check ``data`` for ``request`` without signing: a 4xx domain error
        (``pki-invalid-document`` with a ``reason``, ``pki-document-too-large``,
        ``pki-document-locked``, ``pki-invalid-placement``) for anything that would stop
        the signature. Remote signing calls it before it touches the SAD."""
        reader = read_pdf(data, max_bytes=self.max_bytes)
        try:
            pages = _page_tree(reader)
            existing = _form_fields(reader)
            certification = read_certification_data(reader)
        except InvalidDocument:
            raise
        except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                RecursionError) as exc:
            raise InvalidDocument("the PDF cannot be read", reason="unreadable",
                                  error=type(exc).__name__) from exc
        if certification is not None and certification.permission == MDPPerm.NO_CHANGES:
            raise DocumentLocked("the document's certification forbids new signatures")
        field_name = request.field_name or f"Signature{len(existing) + 1}"
        while field_name in existing and request.field_name is None:
            field_name = f"Signature-{uuid.uuid4().hex[:8]}"
        if field_name in existing:
            if field_name not in _empty_signature_fields(reader):
                raise InvalidInput(f"the document already has a field named {field_name}",
                                   field_name=field_name)
            # The caller named an empty signature field: pyHanko signs into it, and the
            # stamp takes the field's place.
            return CheckedDocument(len(pages), field_name, None, None,
                                   existing_field=True, reader=reader)
        page: int | None = None
        box: tuple[float, float, float, float] | None = None
        opaque = False
        if request.stamp is not None:
            count = len(pages)
            page = request.placement.page
            if not -count <= page < count:
                raise InvalidPlacement(f"the document has {count} page(s)", pages=count)
            page %= count
            try:
                if request.placement.box is not None:
                    box = request.placement.box
                else:
                    width = STAMP_QR_WIDTH if request.stamp.link else STAMP_WIDTH
                    box, opaque = place_stamp(reader, bytes(data), page, width)
            except InvalidPlacement:
                raise
            except (PdfError, ValueError, KeyError, TypeError, IndexError,
                    AttributeError) as exc:
                raise InvalidDocument("the page to stamp cannot be read",
                                      reason="page-invalid", page=page) from exc
        return CheckedDocument(len(pages), field_name, page, box, opaque,
                               reader=reader)

    def sign(self, data: bytes, signer: Signer, request: PadesRequest,
             checked: CheckedDocument | None = None) -> SignedPdf:
        """Return ``data`` with one more signature. Earlier signatures are kept intact.
        ``checked``: what :meth:`check` returned for the same ``data`` and ``request``
        (the document is then not parsed again)."""
        return asyncio.run(self.async_sign(data, signer, request, checked))

    async def async_sign(self, data: bytes, signer: Signer, request: PadesRequest,
                         checked: CheckedDocument | None = None) -> SignedPdf:
        level = request.level
        if level.timestamped and self.timestamper is None:
            raise SigningFailed(f"{level.value} needs a time-stamping authority")
        if level.long_term and (self.revocation is None or not self.trust_roots):
            raise SigningFailed("B-LT needs revocation data and a trust root")
        if checked is None or checked.reader is None:
            checked = self.check(data, request)
        now = self.clock.now()
        field_name, page, box = checked.field_name, checked.page, checked.box
        stamp_style = None
        if request.stamp is not None:
            stamp_style = BilingualStampStyle.for_text(request.stamp, self.font_dir,
                                                       opaque=checked.opaque)
        field_spec = None if checked.existing_field else fields.SigFieldSpec(
            field_name, on_page=page or 0,
            box=tuple(round(v) for v in box) if box else None)  # type: ignore[arg-type]

        validation_context = None
        if level.long_term:
            validation_context = await self._validation_context(signer, now)
        meta = signers.PdfSignatureMetadata(
            field_name=field_name, md_algorithm=signer.digest_name,
            subfilter=fields.SigSeedSubFilter.PADES, reason=request.reason,
            location=request.location,
            embed_validation_info=level.long_term, validation_context=validation_context,
            use_pades_lta=False)
        pdf_signer = signers.PdfSigner(
            meta, pyhanko_signer(signer),
            timestamper=self.timestamper if level.timestamped else None,
            stamp_style=stamp_style, new_field_spec=field_spec)
        try:
            writer = IncrementalPdfFileWriter.from_reader(checked.reader) \
                if checked.reader is not None \
                else IncrementalPdfFileWriter(io.BytesIO(bytes(data)), strict=False)
            session = pdf_signer.init_signing_session(writer)
            session.system_time = now
            presign = await session.perform_presign_validation(writer)
            reserved = await self._bytes_reserved(signer, level, presign)
            tbs = session.prepare_tbs_document(validation_info=presign,
                                               bytes_reserved=reserved)
            digest, output = tbs.digest_tbs_document()
            post = await tbs.perform_signature(
                document_digest=digest.document_digest,
                pdf_cms_signed_attrs=PdfCMSSignedAttributes(
                    signing_time=now,
                    adobe_revinfo_attr=None if presign is None
                    else presign.adobe_revinfo_attr))
            await post.post_signature_processing(output)
        except SigningError as exc:
            message = str(exc)
            if "forbids all changes" in message:
                raise DocumentLocked("the document's certification forbids new "
                                     "signatures") from exc
            raise SigningFailed("the signature could not be made: " + message[:300]) from exc
        except (PdfError, KeyError, IndexError, RecursionError) as exc:
            # A structure the checks above did not foresee: still the document's fault.
            raise InvalidDocument("the PDF cannot be signed: " + str(exc)[:200],
                                  reason="unsignable", error=type(exc).__name__) from exc
        finally:
            if validation_context is not None:
                await validation_context.aclose()
        output.seek(0)
        signed = output.read()
        if level.archival:
            signed = (await self._archive(signed, now)).data
        return SignedPdf(data=signed, level=level, field_name=field_name, signed_at=now,
                         sha256=hashlib.sha256(signed).hexdigest(), page=page, box=box)

    def extend(self, data: bytes) -> ExtendedPdf:
        """Take a signed PDF to B-LTA, or add a fresh archive time-stamp to one that is
        already B-LTA: the current validation data of every signature and time-stamp in
        the file (from our records), then a document time-stamp from our TSA with its own
        validation data. Signatures are left untouched; the file grows by two incremental
        updates. Raises ``pki-invalid-document`` (``reason=unsigned``) for a PDF without
        signature."""
        return asyncio.run(self.async_extend(data))

    async def async_extend(self, data: bytes) -> ExtendedPdf:
        if self.timestamper is None or self.revocation is None or not self.trust_roots:
            raise SigningFailed("extending needs a time-stamping authority, revocation data "
                                "and a trust root")
        reader = read_pdf(data, max_bytes=self.max_bytes)
        try:
            regular = list(reader.embedded_regular_signatures)
        except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                RecursionError) as exc:
            raise InvalidDocument("the signature fields cannot be read", reason="unreadable",
                                  error=type(exc).__name__) from exc
        if not regular:
            raise InvalidDocument("the document has no signature to extend",
                                  reason="unsigned")
        return await self._archive(bytes(data), self.clock.now(), reader=reader)

    async def _archive(self, data: bytes, now: datetime, *,
                       reader: PdfFileReader | None = None) -> ExtendedPdf:
        """One DSS update with the current validation data of everything signed in
        ``data``, then a document time-stamp followed by its own validation data."""
        if self.timestamper is None or self.revocation is None:  # pragma: no cover
            raise SigningFailed("B-LTA needs a time-stamping authority and revocation data")
        if reader is None:
            reader = PdfFileReader(io.BytesIO(data), strict=False,
                                   decode_limits=DecodeLimits())
        try:
            embedded = list(reader.embedded_signatures)
            certs = [from_asn1(c) for e in embedded for c in _signature_certs(e)]
            digest_name = _archive_digest(reader)
            existing = _form_fields(reader)
        except InvalidDocument:
            raise
        except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                RecursionError) as exc:
            raise InvalidDocument("the signatures of the PDF cannot be read",
                                  reason="unreadable", error=type(exc).__name__) from exc
        tsa_certs = await self._tsa_certificates(digest_name)
        if not tsa_certs:
            raise TimeStampUnavailable("the time-stamping authority sent no certificate")
        certs = _dedupe_certs([*certs, *tsa_certs])
        revocation = self.revocation.revocation_data(certs)
        context = ValidationContext(
            trust_roots=[to_asn1(root) for root in self.trust_roots],
            other_certs=[to_asn1(c) for c in certs],
            ocsps=list(revocation.ocsps), crls=list(revocation.crls),
            allow_fetching=False, revocation_mode="hard-fail", moment=now)
        count = sum(1 for e in embedded if e.sig_object_type == "/DocTimeStamp") + 1
        field_name = f"ArchiveTimeStamp{count}"
        while field_name in existing:
            field_name = f"ArchiveTimeStamp-{uuid.uuid4().hex[:8]}"
        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
            DocumentSecurityStore.supply_dss_in_writer(
                writer, None, certs=[to_asn1(c) for c in certs],
                ocsps=[ocsp.OCSPResponse.load(d) for d in revocation.ocsps],
                crls=[asn1_crl.CertificateList.load(d) for d in revocation.crls])
            stamper = PdfTimeStamper(self.timestamper, field_name=field_name)
            output = await stamper.async_timestamp_pdf(writer, digest_name, context)
        except SigningError as exc:
            raise SigningFailed("the archive time-stamp could not be made: "
                                + str(exc)[:300]) from exc
        except (PdfError, KeyError, IndexError, RecursionError) as exc:
            raise InvalidDocument("the PDF cannot be time-stamped: " + str(exc)[:200],
                                  reason="unsignable", error=type(exc).__name__) from exc
        finally:
            await context.aclose()
        output.seek(0)
        extended = output.read()
        tsa = _time_stamping_cert(tsa_certs)
        return ExtendedPdf(
            data=extended, field_name=field_name, timestamped_at=now,
            archive_expires=as_utc(tsa.not_valid_after_utc),
            signatures=sum(1 for e in embedded if e.sig_object_type != "/DocTimeStamp"),
            archive_timestamps=count, sha256=hashlib.sha256(extended).hexdigest())

    async def _bytes_reserved(self, signer: Signer, level: Level, presign: Any) -> int:
        """Room for the CMS container, computed (:mod:`pki.signing.sizing`) instead of
        pyHanko's dummy signature."""
        token = 0
        if level.timestamped and self.timestamper is not None:
            dummy = await self.timestamper.async_dummy_response(signer.digest_name)
            token = len(dummy.dump()) + 512  # our TSA's tokens vary by a few bytes
        revinfo = presign.adobe_revinfo_attr if presign is not None else None
        return sizing.bytes_reserved(
            signer.full_chain(), sizing.signature_value_bytes(signer.certificate), token,
            len(revinfo.dump()) if revinfo is not None else 0)

    async def _validation_context(self, signer: Signer, now: datetime) -> ValidationContext:
        """Certificates and revocation data for the signer's chain and the TSA's chain,
        from our records only (no fetching)."""
        if self.revocation is None:  # pragma: no cover - checked by the caller
            raise SigningFailed("B-LT needs revocation data")
        certs = list(signer.full_chain())
        if self.timestamper is not None:
            certs.extend(await self._tsa_certificates(signer.digest_name))
        certs = _dedupe_certs(certs)
        revocation = self.revocation.revocation_data(certs)
        return ValidationContext(
            trust_roots=[to_asn1(root) for root in self.trust_roots],
            other_certs=[to_asn1(c) for c in certs],
            ocsps=list(revocation.ocsps), crls=list(revocation.crls),
            allow_fetching=False, revocation_mode="hard-fail", moment=now)

    async def _tsa_certificates(self, digest_name: str) -> list[x509.Certificate]:
        if self.timestamper is None:
            return []
        token = await self.timestamper.async_dummy_response(digest_name)
        certificates = token["content"]["certificates"]
        found = []
        for choice in certificates or ():
            if choice.name == "certificate":
                found.append(from_asn1(choice.chosen))
        return found
