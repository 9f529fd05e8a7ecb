"""The nation's rotation after communal elections, timed, through the campaign path.

Run: ``.venv/bin/python -m bench.election [--communes 1503] [--processes 2]
[--batch 40] [--postgres URL]``

Set-up (not timed): a throwaway service as :mod:`bench.sign_hash` builds it (SQLite under
``/tmp``, or with ``--postgres URL`` a fresh PostgreSQL database dropped afterwards; SoftHSM2
behind the token server, ``TAWQI_PKCS11_SERVER=auto``, so that every process sees one token
state), the CA, the envelope key, one designated contact per province, and for each of the
first ``--communes`` communes (by HCP code) an outgoing president in office with an active
credential (set-up shortcut: the outgoing certificates certify one key of one set-up token),
and the CSV file of the newly elected (one new president per commune).

Timed, the rotation as the DGCL and the operators run it (the domain functions behind
``tawqi campaign open|import|prepare|install``):

* a national campaign is opened, installation today;
* the CSV is imported (one transaction, all or nothing): the outgoing mandates end, the new
  presidents are registered and a request (hosted token) is submitted for each, reserving
  the commune's quota;
* ``--processes`` worker processes prepare the tokens (:mod:`delivery.preparation`), each
  its share, ``--batch`` requests per transaction: approval, a token of their own for each
  new president, the key generated ON it, the certificate issued and written to it, a fresh
  PIN sealed;
* the installation: one bulk revocation of every outgoing certificate
  (``affiliationChanged``: each OCSP answer re-signed, ONE CRL), then each hosted token
  activated (quota consumed, PIN notices queued in the outbox, SMS and email).

Also measured in the same run, the raw limit: SoftHSM2 key generation (EC P-256) plus one
signature per certificate in a bare python-pkcs11 loop, one process, times the number of
processes (an upper bound: the loop shares nothing).

Checks afterwards: as many active requests, issued certificates and queued PIN notices as
communes, every outgoing certificate revoked, one CRL for the bulk revocation, the campaign
installed with no blocked commune, the audit chain intact. Exits 1 if a check fails. The
LAST line is ``rotations_per_second=<x>``.

``--drill`` first kills two preparing workers mid-way (see :func:`_drill`) and lets the timed
preparation resume their work: the checks must still pass (its timings measure nothing).
``BENCH_ELECTION_PROFILE=<path>`` writes cProfile statistics of the import and the
installation (``<path>.main``) and of each preparing worker (``<path>.<worker>``).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench import end_token_server

ACTOR = "bench-election"


def _runtime() -> Any:
    from api.runtime import Runtime
    from core.config import Settings

    return Runtime(Settings.from_env())


def prepare(directory: Path, communes: int) -> tuple[list[str], str]:
    """The service, the outgoing presidents in office and the CSV of the newly elected.
    Returns the outgoing serials and the CSV text."""
    import csv
    import io
    import logging

    logging.disable(logging.WARNING)
    from sqlalchemy import select

    from api.wiring import Wiring
    from bench.sign_hash import environment
    from core import migrate
    from delivery import contacts, holders, requests
    from delivery.campaigns import CSV_COLUMNS
    from delivery.envelopes import provision_envelope_key
    from hsm import generate_pin
    from pki import ca, issuance
    from pki.models import PROFILE_HOLDER
    from pki.profiles import HolderIdentity, Profile
    from quotas import policy, refdata
    from quotas.models import Commune

    os.environ.update(environment(directory))
    runtime = _runtime()
    try:
        settings, clock = runtime.settings, runtime.clock
        migrate.upgrade(runtime.engine)
        tokens = runtime.tokens()
        with runtime.unit_of_work() as session:
            refdata.load(session, clock)
            policy.ensure_default_policies(session, clock)
            ca.init_ca(session, clock, tokens, Profile.from_settings(settings),
                       root_token=settings.root_token_label,
                       ca_token=settings.ca_token_label, so_pin=settings.so_pin,
                       pin=settings.service_pin, root_pin=settings.root_pin, actor=ACTOR)
        provision_envelope_key(tokens, token_label=settings.envelope_token,
                               token_pin=settings.envelope_token_pin,
                               key_label=settings.envelope_key, so_pin=settings.so_pin)
        # the outgoing presidents' certificates: one set-up key, certified once per commune
        setup_pin = generate_pin(8)
        tokens.init_token("outgoing", settings.so_pin, setup_pin)
        key_id = b"\x01"
        tokens.generate_key_pair("outgoing", setup_pin, key_type="EC-P256",
                                 key_label="outgoing", key_id=key_id)
        from cryptography.hazmat.primitives import serialization

        public = tokens.public_key("outgoing", key_id=key_id).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        authority = Wiring(runtime).authority()
        outgoing: list[str] = []
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        with runtime.unit_of_work() as session:
            rows = session.execute(select(Commune.code, Commune.province_code, Commune.name_fr)
                                   .where(Commune.kind != "arrondissement",
                                          Commune.code.not_like("%.%.%.%.%"))
                                   .order_by(Commune.code).limit(communes)).all()
            designated: dict[str, int] = {}
            for n, (code, province, name) in enumerate(rows):
                if province not in designated:
                    designated[province] = contacts.designate_contact(
                        session, clock, contacts.ContactDesignation(
                            province_code=province, full_name="Samira El Idrissi",
                            title="Cheffe de division", phone="0539981234",
                            postal_address="Province", email=f"c{province}@interieur.gov.ma",
                            decision_reference=f"DEC-{province}",
                            decision_date=date(2026, 1, 15), designated_by="Le gouverneur"),
                        actor=ACTOR).id
                # the outgoing president, in office, with an active credential (shortcut:
                # the set-up key certified for them, the request moved along without a token)
                holder = holders.register_holder(session, clock, holders.HolderRegistration(
                    cin=f"OU{n:06d}", given_name_fr="Sortant", surname_fr=f"Président {n}",
                    given_name_ar="منتهية", surname_ar=f"ولايته {n}", role="president",
                    commune_code=code, mobile=f"+2127{n:08d}",
                    email=f"sortant{n}@commune.example.ma"), actor=ACTOR,
                    contact_id=designated[province])
                identity = HolderIdentity(cin=holder.cin, given_name="Sortant",
                                          surname=f"Président {n}",
                                          title="Président du conseil communal",
                                          organization=name[:60])
                prepared = issuance.prepare(session, clock, authority, issuance.IssuanceRequest(
                    PROFILE_HOLDER, public, "outgoing", key_id, "EC-P256", holder=identity),
                    actor=ACTOR)
                serial = issuance.sign_prepared(session, clock, authority, prepared,
                                                actor=ACTOR).serial
                request = requests.submit_request(session, clock,
                                                  contact_id=designated[province],
                                                  holder_id=holder.id, token_form="hosted",
                                                  actor=ACTOR)
                requests.approve_request(session, clock, request.id, actor=ACTOR,
                                         identity_check="set-up")
                request.token_label, request.certificate_serial = f"outgoing-{n}", serial
                requests.move(session, clock, request, "personalise", actor=ACTOR)
                requests.move(session, clock, request, "activate", actor=ACTOR)
                outgoing.append(serial)
                writer.writerow([code, "president", f"IN{n:06d}", "Nouvelle",
                                 f"Présidente {n}", "جديدة", f"رئيسة {n}", "mrs",
                                 f"+2126{n:08d}", f"presidente{n}@commune.example.ma"])
        return outgoing, text.getvalue()
    finally:
        runtime.close()


class _Dying:
    """The fault drill's personaliser: the real one, except that it ends its process
    (``os._exit``, no clean-up) at a chosen step: ``write`` just before writing the first
    batch's certificates (after its commit), ``certify:N`` at the N-th certification
    (inside a batch's transaction)."""

    def __init__(self, inner: Any, step: str) -> None:
        self._inner = inner
        self._step = step
        self._certified = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def certify(self, *args: Any, **kwargs: Any) -> Any:
        self._certified += 1
        if self._step == f"certify:{self._certified}":
            os._exit(3)
        return self._inner.certify(*args, **kwargs)

    def write_certificates(self, *args: Any, **kwargs: Any) -> Any:
        if self._step == "write":
            os._exit(3)
        return self._inner.write_certificates(*args, **kwargs)


def _prepare_share(job: tuple[dict[str, str], int, int, int, int, Any, Any, str]) -> int:
    """One worker process: its share of the campaign's requests prepared, ``batch`` per
    transaction. It loads the CA (a PIN login on the shared service token), says it is
    ready, and waits for the start: a login in one process while another signs would race
    (the token server shares one login state between processes). ``die``: see
    :class:`_Dying`."""
    env, campaign_id, worker, workers, batch, ready, start, die = job
    os.environ.update(env)
    import logging

    logging.disable(logging.WARNING)
    from api.wiring import Wiring
    from delivery import preparation
    from delivery.personalisation import BatchPersonaliser

    runtime = _runtime()
    try:
        wiring = Wiring(runtime)
        personaliser, sealer, policy = wiring.personaliser(), wiring.sealer(), wiring.policy
        if not isinstance(personaliser, BatchPersonaliser):
            raise SystemExit("the wired personaliser cannot work in batches")
        if die:
            personaliser = _Dying(personaliser, die)
        wiring.authority()
        ready.put(os.getpid())
        start.wait()
        profile = os.environ.get("BENCH_ELECTION_PROFILE")
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        result = preparation.prepare_campaign(
            runtime.sessions, runtime.clock, campaign_id, personaliser=personaliser,
            sealer=sealer, policy=policy, actor=ACTOR,
            identity_check="CIN and installation minutes checked", batch_size=batch,
            worker=worker, workers=workers)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{worker}")
        return len(result.personalised)
    finally:
        # Not runtime.close(): closing the token library logs out every pooled token, and
        # through the token server a C_Logout ends the login of the shared CA token for
        # the other process too (it would fail mid-issuance). The pool ends the process.
        runtime.engine.dispose()


def _raw_loop(job: tuple[str, int]) -> float:
    """In a fresh process: EC P-256 key generation on the token plus one signature, a bare
    python-pkcs11 loop (no database, no CA); returns per second."""
    import subprocess

    import pkcs11
    import pkcs11.util.ec
    from pkcs11 import KeyType, Mechanism

    from hsm import default_module_path
    from hsm.softhsm import write_softhsm_config

    directory, count = Path(job[0]), job[1]
    conf = write_softhsm_config(directory / "raw-softhsm")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    so_pin, pin = secrets.token_hex(8), "73920145"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "raw",
                    "--so-pin", so_pin, "--pin", pin], check=True, capture_output=True)
    lib = pkcs11.lib(default_module_path())
    token = lib.get_token(token_label="raw")
    digest = hashlib.sha256(b"permit").digest()
    params = pkcs11.util.ec.encode_named_curve_parameters("secp256r1")
    with token.open(rw=True, user_pin=pin) as session:
        domain = session.create_domain_parameters(KeyType.EC, {pkcs11.Attribute.EC_PARAMS:
                                                               params}, local=True)
        started = time.perf_counter()
        for n in range(count):
            _pub, priv = domain.generate_keypair(store=True, label=f"k{n}",
                                                 mechanism=Mechanism.EC_KEY_PAIR_GEN)
            priv.sign(digest, mechanism=Mechanism.ECDSA)  # type: ignore[attr-defined]
        return count / (time.perf_counter() - started)


def raw_limit(directory: Path, count: int) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_raw_loop, ((str(directory), count),)))


def check(outgoing: list[str], communes: int, crl_before: int, campaign_id: int) -> list[str]:
    from sqlalchemy import func, select

    from api.wiring import Wiring
    from core.audit import AuditEvent, verify
    from delivery import campaigns, preparation
    from delivery.models import ACTIVE, CampaignEntry, CertificateRequest, OutboxMessage
    from delivery.personalisation import TOKEN_LABEL_PREFIX
    from pki.issuance import not_written
    from pki.models import CertificateRecord, CrlRecord

    problems = []
    runtime = _runtime()
    try:
        with runtime.unit_of_work() as session:
            active = session.scalar(select(func.count()).select_from(CertificateRequest)
                                    .join(CampaignEntry,
                                          CampaignEntry.request_id == CertificateRequest.id)
                                    .where(CampaignEntry.campaign_id == campaign_id,
                                           CertificateRequest.status == ACTIVE))
            if active != communes:
                problems.append(f"{active} active incoming requests, expected {communes}")
            notices = session.scalar(select(func.count()).select_from(OutboxMessage))
            if (notices or 0) < 2 * communes:
                problems.append(f"{notices} queued notices, expected at least {2 * communes}")
            issued = session.scalar(select(func.count()).select_from(CertificateRecord).where(
                CertificateRecord.profile == "holder", CertificateRecord.status == "issued",
                CertificateRecord.token_label != "outgoing"))
            if issued != communes:
                problems.append(f"{issued} incoming certificates issued, expected {communes}")
            serials = list(session.scalars(select(CertificateRequest.certificate_serial).join(
                CampaignEntry, CampaignEntry.request_id == CertificateRequest.id).where(
                CampaignEntry.campaign_id == campaign_id)))
            if len(set(serials)) != communes or None in serials:
                problems.append(f"{len(set(serials))} distinct certificates for {communes} "
                                "requests")
            unwritten = not_written(session, [s for s in serials if s])
            if unwritten:
                problems.append(f"{len(unwritten)} certificates not written to their token")
            half = session.scalar(select(func.count()).select_from(CertificateRecord).where(
                CertificateRecord.status == "prepared"))
            if half:
                problems.append(f"{half} issuances prepared and never signed")
            revoked = session.scalar(select(func.count()).select_from(CertificateRecord).where(
                CertificateRecord.serial.in_(outgoing),
                CertificateRecord.revocation_reason == "affiliationChanged"))
            if revoked != len(outgoing):
                problems.append(f"{revoked} of {len(outgoing)} outgoing certificates revoked")
            report = campaigns.report(session, runtime.clock, campaign_id)
            if report.campaign.status != "installed" or report.blocked or \
                    report.max_gap_days != 0:
                problems.append(f"campaign {report.campaign.status}, "
                                f"{len(report.blocked)} blocked, largest gap "
                                f"{report.max_gap_days} days")
            crls = session.scalar(select(func.count()).select_from(CrlRecord))
            if (crls or 0) - crl_before != 1:
                problems.append(f"{(crls or 0) - crl_before} CRLs published, expected 1")
            if not verify(session).ok:
                problems.append("the audit chain is broken")
            left = preparation.orphans(session, campaign_id, Wiring(runtime).tokens()
                                       .token_labels(TOKEN_LABEL_PREFIX))
            if left:
                problems.append(f"{len(left)} tokens made for nobody and not wiped: "
                                f"{', '.join(left[:5])}")
            wiped = session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == preparation.ORPHAN_WIPED))
            print(f"orphans: {wiped} token(s) made for nobody (a dead worker's) wiped, "
                  f"{len(left)} left")
    finally:
        runtime.close()
    return problems


def _drill(context: Any, env: dict[str, str], campaign_id: int, args: argparse.Namespace,
           ready: Any) -> None:
    """The fault drill (``--drill``): two workers each die once, worker 0 after its first
    batch's commit but before writing its certificates to the tokens, worker 1 inside its
    second batch's transaction. The timed preparation that follows resumes their work."""
    steps = ["write", f"certify:{args.batch + 1}"]
    go = context.Event()
    dying = [context.Process(target=_prepare_share, args=(
        (env, campaign_id, worker, 2, args.batch, ready, go, steps[worker]),))
        for worker in range(2)]
    for process in dying:
        process.start()
    for _ in dying:
        ready.get(timeout=300)
    go.set()
    for process in dying:
        process.join(timeout=600)
    codes = [process.exitcode for process in dying]
    if codes != [3, 3]:
        raise SystemExit(f"drill: the workers were to die, they ended with {codes}")
    print("drill: worker 0 died after its first batch's commit, before writing its "
          "certificates; worker 1 died inside its second batch's transaction "
          "(timings of a drill measure nothing)")


def run(args: argparse.Namespace, directory: Path) -> int:
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from api.wiring import Wiring
    from delivery import campaigns, mandate_change
    from pki.models import CrlRecord

    set_up = time.perf_counter()
    outgoing, elected = prepare(directory, args.communes)
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAWQI_", "SOFTHSM2_"))}
    print(f"set-up: {len(outgoing)} communes, {len(outgoing)} outgoing presidents in office "
          f"({time.perf_counter() - set_up:.1f} s, not timed)")
    runtime = _runtime()
    with runtime.unit_of_work() as session:
        crl_before = session.scalar(select(func.count()).select_from(CrlRecord)) or 0
    runtime.close()

    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    start, ready = manager.Event(), manager.Queue()
    with context.Pool(args.processes) as pool:
        runtime = _runtime()
        try:
            clock = runtime.clock
            authority = Wiring(runtime).authority()
            profiler = None
            if os.environ.get("BENCH_ELECTION_PROFILE"):
                import cProfile

                profiler = cProfile.Profile()
            began = time.perf_counter()
            with runtime.unit_of_work() as session:
                campaign_id = campaigns.open_campaign(
                    session, clock, name=f"Communales {time.time():.0f}",
                    installation_date=datetime.now(UTC).date(), scope_kind="nation",
                    funding="quota", actor=ACTOR).id
            with runtime.unit_of_work() as session:
                if profiler is not None:
                    profiler.enable()
                imported = campaigns.import_elected(session, clock, campaign_id, elected,
                                                    actor=ACTOR, token_form="hosted")
                if profiler is not None:
                    profiler.disable()
            imported_at = time.perf_counter()
            import_seconds = imported_at - began
            if args.drill:
                _drill(context, env, campaign_id, args, ready)
            jobs = [(env, campaign_id, worker, args.processes, args.batch, ready, start, "")
                    for worker in range(args.processes)]
            pending = pool.map_async(_prepare_share, jobs)
            waited = time.perf_counter()
            for _ in jobs:  # the workers' start-up (imports, the CA's login): not timed
                ready.get(timeout=300)
            began += time.perf_counter() - waited
            start.set()
            prepared_began = time.perf_counter()
            done = sum(pending.get())
            prepared_at = time.perf_counter()
            with runtime.unit_of_work() as session:
                if profiler is not None:
                    profiler.enable()
                installed = campaigns.install(
                    session, clock, campaign_id, actor=ACTOR, activate=True,
                    revoke=mandate_change.lifecycle_revoker(session, clock, authority))
                if profiler is not None:
                    profiler.disable()
            ended = time.perf_counter()
            if profiler is not None:
                profiler.dump_stats(f"{os.environ['BENCH_ELECTION_PROFILE']}.main")
        finally:
            runtime.close()
    manager.shutdown()
    wall = ended - began
    database = "PostgreSQL" if "postgresql" in os.environ.get("TAWQI_DATABASE_URL", "") \
        else "SQLite"
    print(f"database: {database}; processes: {args.processes}; batch: {args.batch}")
    print(f"campaign: opened and {imported.lines} newly elected imported, "
          f"{imported.requests} requests submitted in {import_seconds:.2f} s "
          f"(one transaction)")
    print(f"prepared: {done} tokens approved and personalised in "
          f"{prepared_at - prepared_began:.2f} s ({done / (prepared_at - prepared_began):.1f}/s)")
    print(f"installed: {len(installed.revoked)} outgoing revoked (one CRL) and "
          f"{len(installed.activated)} tokens activated in {ended - prepared_at:.2f} s")
    print(f"wall time: {wall:.2f} s for {len(installed.activated)} rotations")
    raw = raw_limit(directory, min(args.raw_count, max(done, 1)))
    print(f"raw limit: {raw:.1f} keygen+sign/s in one process, {raw * args.processes:.1f}/s "
          f"for {args.processes} (bare python-pkcs11, SoftHSM2)")
    problems = check(outgoing, len(outgoing), crl_before, campaign_id)
    if len(installed.activated) != len(outgoing):
        problems.append(f"{len(installed.activated)} activated, expected {len(outgoing)}")
    for problem in problems:
        print(f"FAILED: {problem}")
    print("checks: " + ("all passed" if not problems else f"{len(problems)} failed"))
    print(f"rotations_per_second={len(installed.activated) / wall:.2f}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    from bench.load import database, stop_token_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--communes", type=int, default=1503,
                        help="communes whose president changes (the nation: 1503)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=40,
                        help="requests prepared per transaction")
    parser.add_argument("--drill", action="store_true",
                        help="fault drill: two workers die mid-way (one after a commit, one "
                             "inside a transaction) before the preparation resumes; the "
                             "checks must still pass")
    parser.add_argument("--raw-count", type=int, default=300,
                        help="key generations + signatures for the raw limit")
    parser.add_argument("--postgres", metavar="URL",
                        help="run on a fresh database of this PostgreSQL server, dropped "
                             "afterwards; default: SQLite")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tawqi-bench-election-"))
    try:
        with database(args.postgres):
            try:
                return run(args, directory)
            finally:
                stop_token_server(directory)
    finally:
        end_token_server(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
