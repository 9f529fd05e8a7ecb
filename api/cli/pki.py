"""``tawqi ca``, ``tawqi cert``, ``tawqi crl`` and ``tawqi ocsp``: the operators' CA tools.

PINs: the service token's PIN comes from ``TAWQI_SERVICE_PIN`` (or ``_FILE``), the root's
from ``TAWQI_ROOT_PIN`` and the SO PIN from ``TAWQI_SO_PIN``; a holder token's PIN is typed
at a hidden prompt or read from ``--pin-file``. None is ever printed.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from api.audit_anchor import anchor_quietly
from api.cli.common import current_wiring, fail, pass_runtime, print_json, print_table
from api.runtime import Runtime
from core.errors import ConfigurationError, TawqiError
from hsm.errors import HsmError
from pki import ca, crl, issuance, lifecycle, ocsp, queries
from pki.authority import Authority
from pki.errors import BulkRevocationRefused
from pki.models import PROFILES, STATUSES
from pki.profiles import HolderIdentity, Profile
from pki.reasons import REVOCATION_REASONS
from pki.signer import KEY_TYPES

ACTOR = "cli"
F = TypeVar("F", bound=Callable[..., Any])


def _token_errors(func: F) -> F:
    """Token-layer errors (wrong PIN, unknown token) end the command like domain errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HsmError as exc:
            fail(cast(TawqiError, exc))

    return cast(F, wrapper)


def _then_anchor(func: F) -> F:
    """After a CA operation committed, anchor the audit log (time-stamp its head into the
    anchor store). Never fails the operation: without the PIN or on error it says so."""

    @functools.wraps(func)
    def wrapper(runtime: Runtime, *args: Any, **kwargs: Any) -> Any:
        result = func(runtime, *args, **kwargs)
        done = anchor_quietly(runtime)
        if done is not None and done.checkpoint is not None:
            click.echo(f"audit log anchored: checkpoint {done.checkpoint.number} at seq "
                       f"{done.checkpoint.seq}")
        return result

    return cast(F, wrapper)


def _profile(runtime: Runtime) -> Profile:
    return Profile.from_settings(runtime.settings)


def _service_pin(runtime: Runtime) -> str:
    pin = runtime.settings.service_pin
    if not pin:
        raise ConfigurationError("set TAWQI_SERVICE_PIN (or TAWQI_SERVICE_PIN_FILE): the PIN "
                                 "of the service token holding the CA keys")
    return pin


@contextmanager
def _with_authority(runtime: Runtime) -> Iterator[tuple[Session, Authority]]:
    """The CA from the composition root (PIN checked before any transaction), then the
    command's unit of work."""
    _service_pin(runtime)
    authority = current_wiring().authority()
    with runtime.unit_of_work() as session:
        yield session, authority


def _check_pin(runtime: Runtime, label: str, pin: str) -> None:
    """Check a token PIN before any database transaction opens: a wrong PIN is counted in
    the database, which on SQLite cannot be written while our own transaction holds the
    write lock."""
    runtime.tokens().check_pin(label, pin)


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM).decode("ascii")


def _read_pin(pin_file: Path | None, prompt: str) -> str:
    if pin_file is not None:
        return pin_file.read_text(encoding="utf-8").strip()
    return cast(str, click.prompt(prompt, hide_input=True))


# ----------------------------------------------------------------------------------- ca

@click.group("ca")
def ca_group() -> None:
    """The certificate authority: set-up, status, scheduled refresh."""


@ca_group.command("init")
@click.option("--root-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the root certificate (PEM). Default: <var>/pki/root.pem")
@pass_runtime
@_token_errors
@_then_anchor
def ca_init(runtime: Runtime, root_out: Path | None) -> None:
    """Create the root CA (on its own token) and the issuing CA, OCSP responder and TSA
    (on the service token), then the first CRLs. Tokens are initialised if missing."""
    settings = runtime.settings
    _profile(runtime).policy(0)  # no policy arc, no CA: refuse before touching a token
    pin = _service_pin(runtime)
    tokens = runtime.tokens()
    for label, token_pin in ((settings.root_token_label, settings.root_pin or pin),
                             (settings.ca_token_label, pin)):
        if tokens.token_exists(label):
            _check_pin(runtime, label, token_pin)
    with runtime.unit_of_work() as session:
        result = ca.init_ca(session, runtime.clock, runtime.tokens(), _profile(runtime),
                            root_token=settings.root_token_label,
                            ca_token=settings.ca_token_label, so_pin=settings.so_pin,
                            pin=pin, root_pin=settings.root_pin or pin,
                            key_type=settings.ca_key_type, actor=ACTOR)
    out = root_out or settings.var_dir / "pki" / "root.pem"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.root_pem, encoding="ascii")
    (out.parent / "issuing.pem").write_text(result.issuing_pem, encoding="ascii")
    fingerprint = hashlib.sha256(result.root_der).hexdigest()
    click.echo(f"root CA     {result.root_serial} (token {settings.root_token_label})")
    click.echo(f"issuing CA  {result.issuing_serial} (token {settings.ca_token_label})")
    click.echo(f"OCSP        {result.ocsp_serial}")
    click.echo(f"TSA         {result.tsa_serial}")
    click.echo(f"root certificate written to {out} (SHA-256 {fingerprint})")
    click.echo("production: move the root token offline now; it is needed again only for "
               "`tawqi crl publish --root`.")


@ca_group.command("show")
@click.option("--pem", type=click.Choice(["root", "issuing"]),
              help="Print that CA certificate as PEM instead of the summary.")
@pass_runtime
def ca_show(runtime: Runtime, pem: str | None) -> None:
    """Our CA certificates: kind, subject, validity, token."""
    with runtime.unit_of_work() as session:
        rows = queries.authorities(session)
        if pem:
            chosen = [r for r in rows if r.kind == pem and r.active]
            if not chosen:
                raise ca.AuthorityNotInitialised("the CA is not initialised")
            click.echo(_pem(chosen[-1].der), nl=False)
            return
        print_table(["id", "kind", "subject", "not_after", "token", "crl#"],
                    [(r.id, r.kind, r.subject, r.not_after.date(), r.token_label,
                      r.crl_number) for r in rows])


@ca_group.command("refresh")
@click.option("--force", is_flag=True, help="Publish a CRL and re-sign every OCSP response.")
@pass_runtime
@_token_errors
def ca_refresh(runtime: Runtime, force: bool) -> None:
    """The scheduled job (run it from cron every few minutes): CRL past half its life,
    OCSP responses past half theirs, OCSP responder certificate near its end."""
    with _with_authority(runtime) as (session, authority):
        report = ca.refresh(session, runtime.clock, authority, runtime.tokens(),
                            pin=_service_pin(runtime), actor=ACTOR, force=force)
    click.echo(f"CRL: {'#' + str(report.crl_number) if report.crl_number else 'not due'}; "
               f"OCSP responses signed: {report.ocsp_signed}; responder renewed: "
               f"{report.responder_renewed or 'no'}")


# ----------------------------------------------------------------------------------- cert

@click.group("cert")
def cert_group() -> None:
    """Holder certificates: issue, list, show, suspend, release, revoke, renew."""


@cert_group.command("issue")
@click.option("--token", "token_label", required=True, help="Label of the holder's token.")
@click.option("--cin", required=True, help="National ID number, e.g. AB123456.")
@click.option("--given-name", required=True)
@click.option("--surname", required=True)
@click.option("--title", required=True, help="e.g. 'Président du conseil communal'.")
@click.option("--org", required=True, help="The commune or provincial service.")
@click.option("--key-type", type=click.Choice(list(KEY_TYPES)), default="EC-P256",
              show_default=True)
@click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the token's PIN from this file instead of a prompt.")
@click.option("--create-token", is_flag=True,
              help="Initialise the token first (needs TAWQI_SO_PIN); the PIN given becomes "
                   "its user PIN.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate (PEM). Default: <var>/pki/<serial>.pem")
@pass_runtime
@_token_errors
@_then_anchor
def cert_issue(runtime: Runtime, token_label: str, cin: str, given_name: str, surname: str,
               title: str, org: str, key_type: str, pin_file: Path | None,
               create_token: bool, out: Path | None) -> None:
    """A holder certificate on a new key pair generated on the token.

    The preparation (serial, subject, public key) is committed before the signature, so an
    interruption leaves a traceable prepared row, never an unrecorded certificate."""
    holder = HolderIdentity(cin=cin, given_name=given_name, surname=surname, title=title,
                            organization=org, country=runtime.settings.ca_country)
    pin = _read_pin(pin_file, f"PIN of token {token_label}")
    tokens = runtime.tokens()
    if create_token:
        if not runtime.settings.so_pin:
            raise ConfigurationError("--create-token needs TAWQI_SO_PIN")
        tokens.init_token(token_label, runtime.settings.so_pin, pin)
    _check_pin(runtime, token_label, pin)
    with _with_authority(runtime) as (session, authority):
        prepared = issuance.prepare_holder(session, runtime.clock, authority, tokens,
                                           token_label=token_label, token_pin=pin,
                                           holder=holder, key_type=key_type, actor=ACTOR)
    with _with_authority(runtime) as (session, authority):
        issued = issuance.complete_holder(session, runtime.clock, authority, tokens,
                                          prepared.id, token_pin=pin, actor=ACTOR)
    path = out or runtime.settings.var_dir / "pki" / f"{issued.serial}.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(issued.pem, encoding="ascii")
    click.echo(f"serial {issued.serial}")
    click.echo(f"subject {issued.subject}")
    click.echo(f"valid until {issued.not_after.isoformat()}")
    click.echo(f"certificate written to {path}"
               + ("" if issued.written_to_token else
                  " (NOT written to the token: retry with `tawqi cert write`)"))


@cert_group.command("list")
@click.option("--status", type=click.Choice(list(STATUSES)))
@click.option("--profile", type=click.Choice(list(PROFILES)))
@click.option("--cin")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_runtime
def cert_list(runtime: Runtime, status: str | None, profile: str | None, cin: str | None,
              limit: int, fmt: str) -> None:
    """Certificates, newest first."""
    with runtime.unit_of_work() as session:
        found = lifecycle.list_certificates(session, status=status, profile=profile, cin=cin,
                                            limit=limit)
    if fmt == "json":
        print_json([c.as_dict() for c in found])
        return
    print_table(["serial", "profile", "status", "cin", "subject", "not_after"],
                [(c.serial, c.profile, c.status, c.cin or "", c.subject[:60],
                  c.not_after.date()) for c in found])


@cert_group.command("show")
@click.argument("serial")
@click.option("--pem", is_flag=True, help="Print the certificate as PEM.")
@pass_runtime
def cert_show(runtime: Runtime, serial: str, pem: bool) -> None:
    """One certificate's registry entry (or its PEM)."""
    with runtime.unit_of_work() as session:
        if pem:
            click.echo(_pem(lifecycle.certificate_der(session, serial)), nl=False)
            return
        status = lifecycle.certificate_status(session, serial)
    print_table(["field", "value"], [(k, "" if v is None else v)
                                     for k, v in status.as_dict().items()])


def _change(runtime: Runtime, action: Callable[[Session, Authority], lifecycle.CertificateStatus]
            ) -> None:
    with _with_authority(runtime) as (session, authority):
        status = action(session, authority)
    extra = f" ({status.revocation_reason})" if status.revocation_reason else ""
    click.echo(f"{status.serial}: {status.status}{extra}; CRL and OCSP updated")


@cert_group.command("suspend")
@click.argument("serial")
@click.option("--note", default="", help="Why (kept in the audit log).")
@pass_runtime
@_token_errors
@_then_anchor
def cert_suspend(runtime: Runtime, serial: str, note: str) -> None:
    """Put a certificate on hold (certificateHold)."""
    _change(runtime, lambda s, a: lifecycle.suspend(s, runtime.clock, a, serial, actor=ACTOR,
                                                    note=note))


@cert_group.command("release")
@click.argument("serial")
@click.option("--note", default="")
@pass_runtime
@_token_errors
@_then_anchor
def cert_release(runtime: Runtime, serial: str, note: str) -> None:
    """Lift a suspension."""
    _change(runtime, lambda s, a: lifecycle.release(s, runtime.clock, a, serial, actor=ACTOR,
                                                    note=note))


@cert_group.command("revoke")
@click.argument("serial")
@click.option("--reason", required=True,
              help="RFC 5280 reason: " + ", ".join(REVOCATION_REASONS) +
                   " (affiliationChanged after elections).")
@pass_runtime
@_token_errors
@_then_anchor
def cert_revoke(runtime: Runtime, serial: str, reason: str) -> None:
    """Revoke for good (the active request holding it is closed: ``ended``)."""
    from api.wiring.adapters import revoke_certificate

    _change(runtime, lambda s, a: revoke_certificate(s, runtime.clock, a, serial, reason,
                                                     actor=ACTOR))


@cert_group.command("revoke-bulk")
@click.option("--from-file", "from_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serials, one a line (blank lines and '#' comments ignored); '-' "
                   "is not accepted: keep the list in a file, to run it again if needed.")
@click.option("--reason", required=True,
              help="RFC 5280 reason for all of them (affiliationChanged after elections).")
@click.option("--dry-run", is_flag=True, help="Check the list and say what would be done; "
                                              "change nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_runtime
@_token_errors
@_then_anchor
def cert_revoke_bulk(runtime: Runtime, from_file: Path, reason: str, dry_run: bool,
                     fmt: str) -> None:
    """Revoke a list of certificates as one operation: each OCSP answer re-signed, ONE CRL
    at the end. Interrupted? Run the same command again: what is already revoked with this
    reason is skipped, and the rest is done (work is committed every 200 certificates)."""
    from api.wiring.adapters import revoke_certificates

    serials = [line.split("#", 1)[0].strip()
               for line in from_file.read_text(encoding="utf-8").splitlines()]
    serials = [s for s in serials if s]
    with _with_authority(runtime) as (session, authority):
        with click.progressbar(length=len(serials), label="revoking",
                               file=sys.stderr) as bar:
            state = {"done": 0}

            def advance(done: int, total: int) -> None:
                bar.update(done - state["done"])
                state["done"] = done

            try:
                result = revoke_certificates(
                    session, runtime.clock, authority, serials, reason, actor=ACTOR,
                    dry_run=dry_run, progress=advance, checkpoint=session.commit)
            except BulkRevocationRefused as exc:
                for problem in exc.extras.get("problems", []):
                    click.echo(f"{problem['serial']}: {problem['problem']}", err=True)
                fail(exc)
    if fmt == "json":
        print_json(result.as_dict())
        return
    if dry_run:
        for serial in result.revoked:
            click.echo(f"would revoke {serial} ({result.reason})")
        for serial in result.skipped:
            click.echo(f"already revoked {serial} ({result.reason}): skip")
    for serial, other in result.other_reason:
        click.echo(f"already revoked {serial} with another reason ({other}): left as is")
    verb = "would revoke" if dry_run else "revoked"
    click.echo(f"{verb} {len(result.revoked)}, skipped {len(result.skipped)} already "
               f"revoked, {len(result.other_reason)} revoked otherwise"
               + (f"; CRL #{result.crl_number} published" if result.crl_number else ""))


@cert_group.command("renew")
@click.argument("serial")
@click.option("--rekey", is_flag=True, help="New key pair on the same token; the old "
                                            "certificate is revoked as superseded.")
@click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_runtime
@_token_errors
@_then_anchor
def cert_renew(runtime: Runtime, serial: str, rekey: bool, pin_file: Path | None) -> None:
    """A new certificate for the same holder (same key, or a new one with --rekey)."""
    with runtime.unit_of_work() as session:
        label = lifecycle.certificate_status(session, serial).token_label
    pin = _read_pin(pin_file, f"PIN of token {label}")
    _check_pin(runtime, label, pin)
    with _with_authority(runtime) as (session, authority):
        issued = issuance.renew(session, runtime.clock, authority, runtime.tokens(), serial,
                                actor=ACTOR, token_pin=pin, rekey=rekey)
    click.echo(f"serial {issued.serial} replaces {serial}")


@cert_group.command("write")
@click.argument("serial")
@click.option("--pin-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_runtime
@_token_errors
def cert_write(runtime: Runtime, serial: str, pin_file: Path | None) -> None:
    """(Re)write a certificate to the token that holds its key."""
    with runtime.unit_of_work() as session:
        label = lifecycle.certificate_status(session, serial).token_label
    pin = _read_pin(pin_file, f"PIN of token {label}")
    _check_pin(runtime, label, pin)
    with runtime.unit_of_work() as session:
        issued = issuance.write_to_token(session, runtime.clock, runtime.tokens(), serial,
                                         token_pin=pin, actor=ACTOR)
    click.echo(f"{serial}: {'written to' if issued.written_to_token else 'NOT written to'} "
               f"token {label}")


# ----------------------------------------------------------------------------------- crl

@click.group("crl")
def crl_group() -> None:
    """Certificate revocation lists."""


@crl_group.command("publish")
@click.option("--root", "with_root", is_flag=True,
              help="Also sign the root's CRL (the root token must be online).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the CRLs (DER) into this directory.")
@pass_runtime
@_token_errors
@_then_anchor
def crl_publish(runtime: Runtime, with_root: bool, out: Path | None) -> None:
    """Sign and publish a new full CRL now."""
    published = []
    settings = runtime.settings
    root_pin = settings.root_pin or _service_pin(runtime)
    if with_root:
        _check_pin(runtime, settings.root_token_label, root_pin)
    with _with_authority(runtime) as (session, authority):
        published.append(crl.publish_crl(session, runtime.clock, authority, actor=ACTOR,
                                         trigger="operator"))
        if with_root:
            root_id, root_signer = ca.load_root_signer(session, runtime.tokens(),
                                                       root_pin=root_pin)
            published.append(crl.publish_root_crl(
                session, runtime.clock, root_id, root_signer,
                validity=timedelta(days=settings.root_crl_validity_days), actor=ACTOR))
    for info in published:
        click.echo(f"CA {info.authority_id}: CRL #{info.number}, {info.entries} entries, "
                   f"next update {info.next_update.isoformat()}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{info.authority_id}.crl").write_bytes(info.der)


# ----------------------------------------------------------------------------------- ocsp

@click.group("ocsp")
def ocsp_group() -> None:
    """Pre-signed OCSP responses."""


@ocsp_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@pass_runtime
def ocsp_export(runtime: Runtime, directory: Path) -> None:
    """Write the current responses as RFC 5019 static files: a GET of
    /ocsp/<url-encoded base64 request> is the file DIRECTORY/ocsp/<base64 request>.der
    (see DIRECTORY/nginx.conf.example and DIRECTORY/index.tsv)."""
    with runtime.unit_of_work() as session:
        report = ocsp.export_static(session, runtime.clock, directory)
    click.echo(f"{report.files} responses written under {report.directory}/ocsp "
               f"({report.skipped_expired} expired skipped)")


COMMANDS = [ca_group, cert_group, crl_group, ocsp_group]
