"""The composition root (see ``docs/architecture.md``, "Wiring").

- :class:`Wiring` (``root.py``) builds, once each, every service and adapter from the
  Runtime: token library, envelope sealer, the CA (PIN checked before any transaction),
  personaliser, outbox worker, OCSP responder, remote signing, PAdES, verifier, trust roots,
  revocation source. Tests replace parts with ``Wiring(rt, overrides={...})`` or
  ``wiring.override(name=...)`` — the one mechanism.
- ``adapters.py``: what plugs one domain into another (delivery's holders and outbox for
  remote signing, our CA's records for PAdES and verification).
- ``flaskapp.py``: ``init_app`` (the one place Flask extensions attach), ``wiring()`` and
  ``runtime()`` for views, the ``prepare=`` hook of CA operations. Imported apart
  (``from api.wiring.flaskapp import wiring``) so that the CLI loads no Flask.
- Periodic jobs: the scheduler's part is built by :class:`Wiring` (see the placeholder in
  ``root.py``) and attached in ``init_app``.

Blueprints, web pages, the CLI, the demo and ``bench/`` take their collaborators from here.
"""

from api.wiring.root import PARTS, ServiceUnavailable, Wiring

__all__ = ["PARTS", "ServiceUnavailable", "Wiring"]
