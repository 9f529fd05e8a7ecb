"""Outside judges: openssl (a subprocess) and pkilint (its CLI entry points, in-process)."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

from pkilint.bin import (
    lint_crl,
    lint_etsi_cert,
    lint_ocsp_response,
    lint_pkix_cert,
    lint_pkix_signer_signee_cert_chain,
)

_LINTERS = {
    "pkix": lint_pkix_cert.main,
    "etsi": lint_etsi_cert.main,
    "crl": lint_crl.main,
    "ocsp": lint_ocsp_response.main,
}


def lint(kind: str, path: Path, *options: str) -> str:
    """Run a pkilint linter exactly as shipped (its default decoder) at WARNING threshold;
    return its report ("" when clean)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = _LINTERS[kind](["lint", *options, "-s", "WARNING", str(path)])
    report = out.getvalue().strip()
    assert code == 0, f"pkilint {kind} {' '.join(options)} on {path.name}:\n{report}"
    return report


def lint_chain(issuer: Path, subject: Path) -> str:
    """pkilint's RFC 5280 issuer/subject chain linter, as shipped, at WARNING threshold."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lint_pkix_signer_signee_cert_chain.main(
            ["lint", "-s", "WARNING", str(issuer), str(subject)])
    report = out.getvalue().strip()
    assert code == 0, f"pkilint chain {issuer.name} -> {subject.name}:\n{report}"
    return report


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed "
                             f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
