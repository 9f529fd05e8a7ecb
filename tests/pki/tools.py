"""Outside judges: openssl (a subprocess) and pkilint (its CLI entry points, in-process)."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkilint.document
from pkilint.bin import (
    lint_crl,
    lint_etsi_cert,
    lint_ocsp_response,
    lint_pkix_cert,
)
from pyasn1.codec.der import decoder as der_decoder

_LINTERS = {
    "pkix": lint_pkix_cert.main,
    "etsi": lint_etsi_cert.main,
    "crl": lint_crl.main,
    "ocsp": lint_ocsp_response.main,
}


@contextlib.contextmanager
def _reference_decoder() -> Iterator[None]:
    """pkilint decodes with pyasn1-fasder, which caps OID arcs at 32 bits and so cannot
    read our 2.25.<UUID> policy OIDs (X.667; legal, 128-bit arc). Swap in pyasn1's own DER
    decoder (same schemas, same validations, arbitrary arcs) for the duration."""
    original = pkilint.document.decode_der
    pkilint.document.decode_der = der_decoder.decode
    try:
        yield
    finally:
        pkilint.document.decode_der = original


def lint(kind: str, path: Path, *options: str, uuid_arcs: bool = True) -> str:
    """Run a pkilint linter at WARNING threshold; return its report ("" when clean).

    ``uuid_arcs=False`` runs pkilint exactly as shipped (fasder decoder)."""
    out = io.StringIO()
    decoder = _reference_decoder() if uuid_arcs else contextlib.nullcontext()
    with contextlib.redirect_stdout(out), decoder:
        code = _LINTERS[kind](["lint", *options, "-s", "WARNING", str(path)])
    report = out.getvalue().strip()
    assert code == 0, f"pkilint {kind} {' '.join(options)} on {path.name}:\n{report}"
    return report


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed "
                             f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
