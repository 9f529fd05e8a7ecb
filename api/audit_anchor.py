"""Wiring of audit anchoring (:mod:`core.anchors` + :mod:`pki.anchoring`) for the CLI, the
app and the worker: which store, which TSA key, when.

Anchoring needs the service token's PIN (the TSA key is on it). The hooks that run after a
CA operation never fail what they follow: without the PIN they skip with a warning, and any
other failure is logged. The worker's periodic anchoring is the ``audit-anchor`` job of
``api/jobs.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session

from api.runtime import Runtime
from core.anchors import (
    AnchoredReport,
    AnchorResult,
    AnchorStore,
    DirectoryAnchorStore,
    anchor,
    verify_anchored,
)
from core.config import Settings
from core.errors import ConfigurationError, TawqiError
from hsm.errors import HsmError
from pki import anchoring
from pki.authority import Authority
from pki.profiles import Profile

log = logging.getLogger("tawqi.audit.anchor")

ACTOR = "system:audit-anchor"


def anchor_store(settings: Settings) -> AnchorStore:
    """The store the settings name. Another store (a WORM bucket) plugs in here."""
    return DirectoryAnchorStore(settings.effective_audit_anchor_dir)


def anchor_now(runtime: Runtime, *, authority: Authority | None = None, actor: str = ACTOR,
               force: bool = False) -> AnchorResult:
    """Time-stamp the audit head now and store the checkpoint, in a unit of work of its
    own. Raises :class:`ConfigurationError` without TAWQI_SERVICE_PIN."""
    settings = runtime.settings
    if authority is None:
        if not settings.service_pin:
            raise ConfigurationError("set TAWQI_SERVICE_PIN: anchoring time-stamps the audit "
                                     "head with the TSA key on the service token")
        from api.wiring.root import read_authority

        authority = read_authority(runtime)
    profile = Profile.from_settings(settings)
    with runtime.unit_of_work() as session:
        stamper = anchoring.HeadStamper(authority.tsa_signer, runtime.clock, profile)
        return anchor(session, runtime.clock, anchor_store(settings), stamper, actor=actor,
                      force=force)


def anchor_quietly(runtime: Runtime, *, authority: Authority | None = None
                   ) -> AnchorResult | None:
    """The hook run after a CA operation committed: anchor, or say why not (never raises;
    ``None`` when nothing could be attempted or it failed)."""
    if authority is None and not runtime.settings.service_pin:
        log.warning("TAWQI_SERVICE_PIN is not set: the audit log was not anchored")
        return None
    try:
        result = anchor_now(runtime, authority=authority)
    except (TawqiError, HsmError, OSError) as exc:
        log.error("the audit log could not be anchored: %s", getattr(exc, "detail", exc))
        return None
    if result.checkpoint is not None:
        log.info("audit log anchored at seq %d (checkpoint %d)", result.checkpoint.seq,
                 result.checkpoint.number)
    return result


def verify_now(runtime: Runtime, *, tsa_cert_file: Path | None = None) -> AnchoredReport:
    """The chain and its checkpoints. TSA certificates are trusted from ``tsa_cert_file``
    (PEM) when given, else from the certificate registry."""
    with runtime.unit_of_work() as session:
        return verify_in(session, runtime.settings, tsa_cert_file=tsa_cert_file)


def verify_in(session: Session, settings: Settings, *, tsa_cert_file: Path | None = None
              ) -> AnchoredReport:
    """:func:`verify_now` in the caller's session (the HTTP view's)."""
    if tsa_cert_file is not None:
        trusted = anchoring.load_pem_certificates(tsa_cert_file.read_bytes())
    else:
        trusted = anchoring.trusted_tsa_certificates(session)
    return verify_anchored(session, anchor_store(settings), anchoring.TsaTokenVerifier(trusted))
