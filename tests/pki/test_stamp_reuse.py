"""The stamp's font subsets are made once and reused (pki.signing.fontcache): the page looks
the same as with a fresh subset per signature (poppler renders both to the same pixels), the
date line's changing digits do not make a new subset, and the outside judges still accept
the files."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.clock import FrozenClock
from pki.signing import fontcache
from pki.signing.pades import Level, PadesRequest, PadesService
from pki.signing.stamp import BilingualStampStyle, StampText, font_paths
from tests.pki.test_pades_pki import (
    FROZEN_AT,
    build_pki,
    make_nss_db,
    pdfsig,
    permit_pdf,
    stamp_for,
)


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    return build_pki()


def _sign(pki: Any, stamp: StampText, *, reuse: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    regular, bold = font_paths()

    def for_text(cls: type[BilingualStampStyle], text: StampText,
                 font_dir: object = None, **options: Any) -> BilingualStampStyle:
        return cls(text=text, regular_font=regular, bold_font=bold,
                   reuse_font_subsets=reuse, **options)

    with monkeypatch.context() as patch:
        patch.setattr(BilingualStampStyle, "for_text", classmethod(for_text))
        service = PadesService(FrozenClock(stamp.signed_at), trust_roots=[pki.root])
        return service.sign(permit_pdf(), pki.signer(),
                            PadesRequest(level=Level.B_B, stamp=stamp)).data


def _render(pdf: bytes, directory: Path, name: str) -> bytes:
    """The whole page as poppler draws it (grey levels, 100 dpi)."""
    path = directory / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-gray", "-r", "100", "-singlefile", str(path),
                    str(directory / name)], check=True)
    return (directory / f"{name}.pgm").read_bytes()


def test_reused_subsets_render_like_fresh_ones(pki, tmp_path: Path,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fontcache.clear()
    for minutes in (0, 7, 23):  # three date lines: 09:30, 09:37, 09:53 ...
        stamp = stamp_for(at=FROZEN_AT + timedelta(minutes=minutes))
        fresh = _render(_sign(pki, stamp, reuse=False, monkeypatch=monkeypatch), tmp_path,
                        f"fresh{minutes}")
        reused = _render(_sign(pki, stamp, reuse=True, monkeypatch=monkeypatch), tmp_path,
                         f"reused{minutes}")
        assert reused == fresh, f"the stamp of {stamp.signed_at} renders differently"
    # One subset per face (regular, bold) for this holder, whatever the time on the stamp.
    assert fontcache.cache_size() == 2
    # Another holder's stamp has other letters: subsets of its own.
    _sign(pki, stamp_for("second"), reuse=True, monkeypatch=monkeypatch)
    assert fontcache.cache_size() > 2


def test_reused_subsets_are_accepted_by_pdfsig(pki, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = make_nss_db(tmp_path / "db", pki.root)
    first = _sign(pki, stamp_for(), reuse=True, monkeypatch=monkeypatch)
    again = _sign(pki, stamp_for(at=FROZEN_AT + timedelta(minutes=1)), reuse=True,
                  monkeypatch=monkeypatch)
    for pdf in (first, again):
        report = pdfsig(pdf, db, tmp_path)
        assert report[0]["Signature Validation"] == "Signature is Valid."
    text = subprocess.run(["pdftotext", "-", "-"], input=again, capture_output=True,
                          check=True).stdout.decode()
    assert "09:31" in text or ":31" in text
