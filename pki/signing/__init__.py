"""Signing and verification of documents, on top of ``pki``.

- :mod:`pki.signing.service`: remote signing with hosted keys (CSC-style: code, PIN, SAD),
  with its tables (:mod:`~pki.signing.models`), errors (:mod:`~pki.signing.errors`), the
  sealed PIN (:mod:`~pki.signing.sealing`) and the seams it needs from delivery
  (:mod:`~pki.signing.ports`);
- :mod:`pki.signing.pades`: PAdES B-B/B-T/B-LT signatures with :mod:`pki.signing.stamp`'s
  bilingual visible stamp;
- :mod:`pki.signing.verification`: ETSI-style verification reports.

``pki.signing`` may import ``pki``; ``pki`` never imports ``pki.signing`` (a test enforces it).
"""
