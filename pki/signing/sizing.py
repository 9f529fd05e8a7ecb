"""Room for the signature container in a PDF, computed rather than measured.

pyHanko sizes the ``/Contents`` placeholder by building a whole dummy CMS signature first
(``estimate_signature_container_size``): every attribute, every certificate, the dummy
time-stamp token, encoded, then thrown away; about a third of an unstamped signature's
time. The container's size is known without building it: the certificates it embeds, the
signature value (at most its key's size), the time-stamp token (pyHanko's dummy token of
our TSA, cached by the time-stamper), the signed attributes and the CMS framing, which take
well under :data:`FRAMING_BYTES`. The result keeps pyHanko's own margin (hexadecimal, then
half again), so it is never smaller than pyHanko's estimate.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

#: The signed attributes (content type, signing time, message digest, signing certificate
#: v2, CMS algorithm protection) and the SignedData framing take about 600 bytes.
FRAMING_BYTES = 2048


def signature_value_bytes(certificate: x509.Certificate) -> int:
    """The largest signature value the certificate's key can make (DER ECDSA, or RSA)."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return 2 * ((key.key_size + 7) // 8) + 9
    if isinstance(key, rsa.RSAPublicKey):
        return (key.key_size + 7) // 8
    return 1024


def bytes_reserved(certificates: Iterable[x509.Certificate], signature_bytes: int,
                   timestamp_token_bytes: int = 0, extra_bytes: int = 0) -> int:
    """Hexadecimal characters to reserve for a CMS container embedding ``certificates``, a
    signature of at most ``signature_bytes``, a time-stamp token of about
    ``timestamp_token_bytes`` and ``extra_bytes`` more (other signed attributes)."""
    certs = sum(len(c.public_bytes(serialization.Encoding.DER)) for c in certificates)
    raw = certs + signature_bytes + timestamp_token_bytes + extra_bytes + FRAMING_BYTES
    hex_chars = 2 * raw
    return hex_chars + 2 * (hex_chars // 4)
