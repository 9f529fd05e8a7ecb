"""``tawqi demo``: the main job, end to end, on the embedded default (SQLite + SoftHSM2).

It works in a fresh ``<var>/demo`` directory each time, so it can be run again and again, and
prints each step. Each chapter of the story is one function taking the composition root
(:class:`api.wiring.Wiring`, whose ``runtime`` it uses) and the
story's shared state; later capabilities add their chapters to ``CHAPTERS``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from api.cli.common import LazyRuntime
from api.runtime import Runtime
from api.wiring import Wiring
from core import migrate
from core.audit import verify
from core.config import Settings
from quotas import ledger, policy, refdata

ACTOR = "demo"
Story = dict[str, Any]


def say(text: str) -> None:
    click.echo(text)


def chapter(title: str) -> None:
    click.echo("")
    click.secho(f"== {title}", bold=True)


def quotas_chapter(wiring: Wiring, story: Story) -> None:
    runtime = wiring.runtime
    chapter("Reference data and quotas")
    migrate.upgrade(runtime.engine)
    say("database migrated (Alembic, all packages)")
    with runtime.unit_of_work() as session:
        loaded = refdata.load(session, runtime.clock, actor=ACTOR)
        policy.ensure_default_policies(session, runtime.clock, actor=ACTOR)
    say("reference data loaded: " + "; ".join(loaded.lines()[:4]))
    year = runtime.clock.now().year
    story["year"] = year
    commune = ledger.Entity.parse("01.051.01.01")  # Al Hoceima
    with runtime.unit_of_work() as session:
        allot = ledger.allotment(session, commune, year)
        say(f"{allot.name_fr} ({allot.name_ar}), population {allot.population:,} at the "
            f"{allot.census_year} census: tier {allot.tier}, {allot.allotted} certificates "
            f"for {year} (policy v{allot.policy_version})")
        decision = ledger.reserve(session, runtime.clock, commune, year, actor=ACTOR,
                                  reference="demo")
        say(f"reserved one: {decision.remaining} left, {decision.reserved} reserved")
    with runtime.unit_of_work() as session:
        assert decision.reservation_id is not None
        released = ledger.release(session, runtime.clock, decision.reservation_id,
                                  actor=ACTOR)
        say(f"released it again (request withdrawn): {released.remaining} available")
    with runtime.unit_of_work() as session:
        national = ledger.report(session, year)
    totals = national.totals
    tiers = national.tier_counts
    say(f"national report {year} (census {national.census_year}): "
        f"{tiers.get('large', 0)} large / {tiers.get('medium', 0)} medium / "
        f"{tiers.get('small', 0)} small communes; {totals['allotted']:,} certificates "
        f"allotted including provincial services, {totals['available']:,} available")


DEMO_SECRET = re.compile(r"(?<!\d)\d{6,8}(?!\d)")


def _masked(text: str) -> str:
    """What the demo's terminal shows of a message: every PIN-like number masked."""
    from delivery.backends import MASK

    return DEMO_SECRET.sub(MASK, text)


def delivery_chapter(wiring: Wiring, story: Story) -> None:
    """A contact registers holders for two communes and asks for certificates within quota
    (one beyond it is refused); an operator approves; tokens are personalised, shipped,
    received and handed over; PINs arrive by SMS and email (console, masked here); a holder
    accepts the terms, changes the PIN and signs."""
    runtime = wiring.runtime
    import secrets
    from datetime import date

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from delivery import batches, contacts, holders, pins, requests
    from delivery.backends import ConsoleInbox
    from delivery.envelopes import count_sealed, provision_envelope_key
    from delivery.personalisation import personalise_request
    from hsm import generate_pin
    from pki import ca
    from pki.errors import AuthorityNotInitialised
    from pki.issuance import HOLDER_KEY_LABEL
    from pki.profiles import Profile
    from quotas.errors import QuotaExhausted

    chapter("Delivery: from a contact's request to a holder's PIN")
    missing = {name: value for name, value in (
        ("so_pin", secrets.token_hex(8)), ("service_pin", generate_pin(8)),
        ("envelope_token_pin", generate_pin(8))) if not getattr(runtime.settings, name)}
    if missing:
        runtime.settings = runtime.settings.replace(**missing)
        say(f"demo token PINs generated in memory, never shown: {', '.join(sorted(missing))}")
    settings = runtime.settings
    tokens = runtime.tokens()
    clock = runtime.clock
    with runtime.unit_of_work() as session:
        try:
            ca.issuing_record(session)
        except AuthorityNotInitialised:
            ca.init_ca(session, clock, tokens, Profile.from_settings(settings),
                       root_token=settings.root_token_label, ca_token=settings.ca_token_label,
                       so_pin=settings.so_pin, pin=settings.service_pin,
                       root_pin=settings.root_pin or settings.service_pin, actor=ACTOR)
            say("certificate authority initialised on SoftHSM2 (root and issuing CA)")
    provision_envelope_key(tokens, token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)
    say(f"PINs waiting to be sent are sealed under AES key {settings.envelope_key!r}, "
        f"non-extractable, on token {settings.envelope_token!r}")
    policy = wiring.policy
    sealer = wiring.sealer()
    year = clock.now().year

    with runtime.unit_of_work() as session:
        contact = contacts.designate_contact(session, clock, contacts.ContactDesignation(
            province_code="01.051", full_name="Samira El Idrissi",
            title="Cheffe de la division des collectivités territoriales",
            phone="0539 98 12 34", postal_address="Province d'Al Hoceima, Al Hoceima",
            email="contact.alhoceima@interieur.gov.ma",
            decision_reference="DEC-2026-017", decision_date=date(year, 1, 15),
            designated_by="Le gouverneur de la province d'Al Hoceima"), actor="governor")
        contact_id = contact.id
        say(f"designated contact for Al Hoceima: {contact.full_name} ({contact.phone})")
        people = [
            ("R100001", "Karim", "Benali", "كريم", "بنعلي", "president", "01.051.03.01"),
            ("R100002", "Amina", "Tahiri", "أمينة", "الطاهري", "vice_president", "01.051.03.01"),
            ("R100003", "Said", "Ouali", "سعيد", "والي", "secretary_general", "01.051.03.01"),
            ("R100004", "Nadia", "Kabbaj", "نادية", "القباج", "official", "01.051.03.01"),
            ("RB20005", "Youssef", "Amrani", "يوسف", "العمراني", "president", "01.051.01.05"),
        ]
        registered = []
        for index, (cin, gfr, sfr, gar, sar, role, commune) in enumerate(people):
            holder = holders.register_holder(session, clock, holders.HolderRegistration(
                cin=cin, given_name_fr=gfr, surname_fr=sfr, given_name_ar=gar,
                surname_ar=sar, role=role, commune_code=commune,
                mobile=f"+21266100{index:04d}", email=f"{gfr.lower()}@commune.example.ma"),
                actor="contact", contact_id=contact_id)
            registered.append(holder.id)
        names = {code: ledger.allotment(session, ledger.Entity.parse(code), year)
                 for code in ("01.051.03.01", "01.051.01.05")}
        first_name = names["01.051.03.01"].name_fr
        say(f"the contact registered {len(registered)} holders for two communes: "
            + "; ".join(f"{a.name_fr} ({a.name_ar}), {a.allotted} certificates a year"
                        for a in names.values()))
    request_ids = []
    for holder_id in [*registered[:3], registered[4]]:
        with runtime.unit_of_work() as session:
            request = requests.submit_request(session, clock, contact_id=contact_id,
                                              holder_id=holder_id, token_form="device",
                                              actor="contact")
            request_ids.append(request.id)
    say(f"{len(request_ids)} certificate requests submitted within quota")
    try:
        with runtime.unit_of_work() as session:
            requests.submit_request(session, clock, contact_id=contact_id,
                                    holder_id=registered[3], token_form="device",
                                    actor="contact")
        say(f"UNEXPECTED: a fourth request for {first_name} was accepted")
    except QuotaExhausted as exc:
        say(f"a fourth request for {first_name} is refused: {exc.detail}")

    personaliser = wiring.personaliser()
    for request_id in request_ids:
        with runtime.unit_of_work() as session:
            requests.approve_request(session, clock, request_id, actor="operator",
                                     identity_check="CIN copy and council minutes checked")
            personalise_request(session, clock, request_id, personaliser=personaliser,
                                sealer=sealer, actor="operator", policy=policy)
    say(f"the operator approved {len(request_ids)} requests; each token got its key "
        "(generated on the token) and its certificate, and a PIN sealed until hand-over")
    with runtime.unit_of_work() as session:
        batch = batches.prepare_batch(session, clock, "01.051", actor="operator")
        batches.dispatch_batch(session, clock, batch.id, tracking_number="EE123456785MA",
                               actor="operator", policy=policy)
        batch_id = batch.id
    say(f"batch {batch_id} shipped by Amana, tracking EE123456785MA (no PIN in the parcel)")
    with runtime.unit_of_work() as session:
        batches.receive_batch(session, clock, batch_id, actor="contact",
                              contact_id=contact_id)
        for request_id in request_ids:
            batches.record_handover(session, clock, request_id, handed_to="the holder",
                                    acknowledgement=f"receipt R-{request_id:04d}",
                                    actor="contact", contact_id=contact_id, policy=policy)
    say("the contact received the batch and handed each token to its holder")

    inbox = ConsoleInbox()
    report = wiring.worker(inbox=inbox).drain()
    say(f"outbox worker: {report.sent} messages sent (SMS and email, French and Arabic)")
    with runtime.unit_of_work() as session:
        holder = holders.get_holder(session, registered[0])
        mobile, email = holder.mobile, holder.email
        waiting = count_sealed(session)
    messages = inbox.for_recipient(mobile)
    for _channel, body in messages:
        say(f"  SMS to {mobile}: {_masked(body.splitlines()[0])}")
    for _channel, body in inbox.for_recipient(email):
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        say(f"  email to {email}: {lines[1][:70]}… {_masked(lines[2])}")
    say(f"sealed PINs still waiting: {waiting} (each destroyed once sent)")

    # The holder reads the PIN on their phone (the demo's memory, never printed).
    found = DEMO_SECRET.search(messages[0][1]) if messages else None
    if found is None:
        say("UNEXPECTED: no PIN arrived")
        return
    first = request_ids[0]
    with runtime.unit_of_work() as session:
        requests.accept_terms(session, clock, first, version=settings.terms_version,
                              actor="holder")
        requests.activate_request(session, clock, first, actor="holder")
    new_pin = generate_pin(6)
    pins.change_pin(runtime.sessions, clock, tokens, first, old_pin=found.group(0),
                    new_pin=new_pin, actor="holder")
    with runtime.unit_of_work() as session:
        label = str(requests.get_request(session, first).token_label)
        ready = requests.signing_readiness(session, first).ready
        timeline = requests.timeline(session, first)
    key = tokens.private_key(label, new_pin, key_label=HOLDER_KEY_LABEL)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key.sign(b"permis de construire n 2026/0042", ec.ECDSA(hashes.SHA256()))
    say(f"Karim Benali accepted the terms ({settings.terms_version}), changed his PIN and "
        f"signed a permit with it (ready to sign: {'yes' if ready else 'no'})")
    say("lead time: " + ", ".join(f"{k} {v}" for k, v in timeline.durations.items()
                                  if k == "total") + f" over {len(timeline.steps)} steps")
    story["delivery_requests"] = request_ids


def pki_chapter(wiring: Wiring, story: Story) -> None:
    """The CA as outside tools see it: a holder certificate on a fresh token, the CRL, and
    an OCSP answer served from the pre-signed store (no signature spent on the request)."""
    runtime = wiring.runtime
    import secrets

    from hsm import generate_pin
    from pki import ca, crl, issuance, ocsp
    from pki.errors import AuthorityNotInitialised
    from pki.profiles import HolderIdentity, Profile

    chapter("Certificate authority: issue, publish, answer")
    missing = {name: value for name, value in (
        ("so_pin", secrets.token_hex(8)), ("service_pin", generate_pin(8)))
        if not getattr(runtime.settings, name)}
    if missing:
        runtime.settings = runtime.settings.replace(**missing)
    settings, tokens, clock = runtime.settings, runtime.tokens(), runtime.clock
    profile = Profile.from_settings(settings)
    with runtime.unit_of_work() as session:
        try:
            ca.issuing_record(session)
        except AuthorityNotInitialised:
            ca.init_ca(session, clock, tokens, profile, root_token=settings.root_token_label,
                       ca_token=settings.ca_token_label, so_pin=settings.so_pin,
                       pin=settings.service_pin,
                       root_pin=settings.root_pin or settings.service_pin, actor=ACTOR)
    authority = wiring.authority()
    say(f"issuing CA: {authority.certificate.subject.rfc4514_string()}, key on token "
        f"{settings.ca_token_label!r}; root on its own token {settings.root_token_label!r}")
    label, pin = "demo-holder-pki", generate_pin(6)
    tokens.init_token(label, settings.so_pin, pin)
    holder = HolderIdentity(cin="JB123456", given_name="Yassine", surname="Amrani",
                            title="Président du conseil communal",
                            organization="جماعة تافراوت — Commune de Tafraout")
    with runtime.unit_of_work() as session:
        issued = issuance.issue_holder_certificate(
            session, clock, authority, tokens, token_label=label, token_pin=pin,
            holder=holder, actor=ACTOR)
    say(f"holder certificate {issued.serial}: {holder.common_name}, "
        f"{holder.semantics_identifier}, key generated on token {label!r} (never leaves it), "
        f"certificate written back to the token; valid until {issued.not_after.date()}")
    with runtime.unit_of_work() as session:
        published = crl.publish_crl(session, clock, authority, actor=ACTOR,
                                    trigger="operator")
    say(f"CRL #{published.number} published ({published.entries} entries), next update "
        f"{published.next_update.isoformat(timespec='minutes')}, served at "
        f"{profile.crl_url(authority.id)}")
    responder = ocsp.OcspResponder(runtime.sessions, clock)
    answer = responder.respond(ocsp.canonical_request(authority.name_hash, authority.key_hash,
                                                      int(issued.serial, 16)))
    from cryptography.x509 import ocsp as x509_ocsp

    parsed = x509_ocsp.load_der_ocsp_response(answer.der)
    say(f"OCSP at {profile.ocsp_url()}: {parsed.certificate_status.name.lower()}, "
        f"pre-signed at {parsed.produced_at_utc.isoformat(timespec='seconds')}, "
        f"{len(answer.der)} bytes served from storage")
    story["pki_serial"] = issued.serial


def _permit_pdf(number: str, holder_fr: str, commune_fr: str) -> bytes:
    """A one-page building permit (text in Helvetica) for the signing chapter."""
    import io

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

    name = generic.NameObject
    fonts = generic.DictionaryObject({
        name(f"/F{i}"): generic.DictionaryObject({
            name("/Type"): name("/Font"), name("/Subtype"): name("/Type1"),
            name("/BaseFont"): name(base), name("/Encoding"): name("/WinAnsiEncoding")})
        for i, base in ((1, "/Helvetica"), (2, "/Helvetica-Bold"))})
    lines = [(2, 11, "ROYAUME DU MAROC"), (1, 10, "Ministère de l'Intérieur"),
             (1, 10, f"Province d'Al Hoceima - {commune_fr}"), (1, 10, ""),
             (2, 16, f"PERMIS DE CONSTRUIRE N° {number}"), (1, 10, ""),
             (1, 11, "Bénéficiaire : M. Rachid Haddou, CIN R654321"),
             (1, 11, "Objet : construction d'une maison individuelle R+1"),
             (1, 11, "Adresse du projet : lotissement Al Amal, lot 17"),
             (1, 11, "Dossier instruit par la commission sur la plateforme des autorisations"),
             (1, 10, ""),
             (1, 11, "Le présent permis est délivré sous réserve du respect des plans"),
             (1, 11, "approuvés et des prescriptions de la commission."), (1, 10, ""),
             (1, 11, f"Le président du conseil de la commune, par délégation : {holder_fr}")]
    ops = [b"BT 60 770 Td"]
    for font, size, text in lines:
        ops.append(b"/F%d %d Tf (%s) Tj 0 -%d Td" % (font, size, text.encode("cp1252"),
                                                    size + 9))
    ops.append(b"ET")
    writer = PdfFileWriter()
    writer.insert_page(PageObject(
        contents=writer.add_object(generic.StreamObject(stream_data=b" ".join(ops))),
        media_box=generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
        resources=generic.DictionaryObject({name("/Font"): fonts})))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _pdfsig_verdicts(pdf: Path, root_der: bytes) -> str:
    """poppler's pdfsig on ``pdf``, with an NSS database trusting our root (if installed)."""
    import shutil as _shutil
    import subprocess
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if not (_shutil.which("pdfsig") and _shutil.which("certutil")):
        return "not installed (poppler-utils, libnss3-tools)"
    with tempfile.TemporaryDirectory() as nss:
        root_pem = Path(nss) / "root.pem"
        root_pem.write_bytes(x509.load_der_x509_certificate(root_der).public_bytes(
            Encoding.PEM))
        subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"],
                       capture_output=True, check=True)
        subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "root", "-t", "CT,C,C",
                        "-i", str(root_pem)], capture_output=True, check=True)
        judged = subprocess.run(["pdfsig", "-nssdir", f"sql:{nss}", "-no-ocsp", str(pdf)],
                                capture_output=True, text=True, check=False).stdout
    return "; ".join(line.split(":", 1)[1].strip() for line in judged.splitlines()
                     if "Validation:" in line)


def signing_chapter(wiring: Wiring, story: Story) -> None:
    """The permits platform has a permit signed with a holder's hosted key once she
    authorises it (PIN + SMS code): PAdES B-LT with the bilingual stamp, verified
    TOTAL-PASSED; then the operator revokes the certificate, OCSP says revoked and a new
    signature is refused. The signed PDF is written under the demo's var directory."""
    runtime = wiring.runtime
    import base64
    import hashlib
    import io
    import secrets
    import time

    from cryptography.x509 import ocsp as x509_ocsp

    from api import accounts
    from api.app import create_app
    from delivery import contacts, holders, pins, requests
    from delivery.backends import ConsoleInbox
    from delivery.envelopes import provision_envelope_key
    from delivery.personalisation import personalise_request
    from delivery.policy import DeliveryPolicy
    from hsm import generate_pin
    from pki import lifecycle, ocsp, queries

    chapter("Remote signing and verification: a permit signed in the HSM")
    missing = {name: value for name, value in (
        ("so_pin", secrets.token_hex(8)), ("service_pin", generate_pin(8)),
        ("envelope_token_pin", generate_pin(8))) if not getattr(runtime.settings, name)}
    if missing:
        runtime.settings = runtime.settings.replace(**missing)
    settings, tokens, clock = runtime.settings, runtime.tokens(), runtime.clock
    provision_envelope_key(tokens, token_label=settings.envelope_token,
                           token_pin=settings.envelope_token_pin,
                           key_label=settings.envelope_key, so_pin=settings.so_pin)
    sealer = wiring.sealer()

    def sms_to(mobile: str) -> str:
        """The holder's phone: the newest SMS the outbox worker sent to ``mobile``."""
        inbox = ConsoleInbox()
        wiring.worker(inbox=inbox).drain()
        texts = [body for channel, body in inbox.for_recipient(mobile) if channel == "sms"]
        return texts[-1] if texts else ""

    # A holder with a hosted token: the key stays in the service's HSM.
    personaliser = wiring.personaliser()  # (the CA, loaded once by the wiring)
    with runtime.unit_of_work() as session:
        contact = contacts.active_contact(session, "01.051")
        if contact is None:
            say("UNEXPECTED: no designated contact for Al Hoceima")
            return
        holder = holders.register_holder(session, clock, holders.HolderRegistration(
            cin="R100006", given_name_fr="Hanane", surname_fr="Alaoui",
            given_name_ar="حنان", surname_ar="العلوي", role="vice_president",
            civility="mrs", commune_code="01.051.01.05", mobile="+212661000010",
            email="hanane.alaoui@commune.example.ma"), actor="contact",
            contact_id=contact.id)
        request = requests.submit_request(session, clock, contact_id=contact.id,
                                          holder_id=holder.id, token_form="hosted",
                                          actor="contact")
        requests.approve_request(session, clock, request.id, actor="operator",
                                 identity_check="CIN copy and council minutes checked")
        personalise_request(session, clock, request.id, personaliser=personaliser,
                            sealer=sealer, actor="operator",
                            policy=DeliveryPolicy.from_settings(settings))
        requests.activate_request(session, clock, request.id, actor="operator")
        requests.accept_terms(session, clock, request.id, version=settings.terms_version,
                              actor="holder")
        named = holders.profile(session, holder)
        holder_id, cin, mobile, request_id = holder.id, holder.cin, holder.mobile, request.id
    initial = DEMO_SECRET.search(sms_to(mobile))
    if initial is None:
        say("UNEXPECTED: the hosted token's PIN did not arrive")
        return
    pin = generate_pin(6)
    pins.change_pin(runtime.sessions, clock, tokens, request_id, old_pin=initial.group(0),
                    new_pin=pin, actor="holder")
    name_fr = f"{named.given_name_fr} {named.surname_fr}"
    say(f"{name_fr} ({named.title_fr}, {named.organisation_fr}) has a hosted key in the "
        "service's HSM; its PIN came by SMS and she changed it")

    # The permits platform, through the CSC-style API, with its API key.
    with runtime.unit_of_work() as session:
        platform = accounts.create_api_key(session, clock, name="permits platform",
                                           actor="operator").key
    client = create_app(wiring=wiring).test_client()
    auth = {"Authorization": f"Bearer {platform}"}
    listed = client.post("/csc/v2/credentials/list", headers=auth, json={
        "userID": cin, "credInfo": True, "authInfo": True}).get_json()
    credential = listed["credentialIDs"][0]
    info = listed["credentialInfos"][0]
    say(f"platform: credentials/list for CIN {cin} -> credential {credential} "
        f"(certificate {info['cert']['status']}, authorisation {info['auth']['expression']})")
    document = _permit_pdf("2026/0042", name_fr, named.organisation_fr)
    digest = base64.b64encode(hashlib.sha256(document).digest()).decode()
    client.post("/csc/v2/credentials/sendOTP", headers=auth, json={"credentialID": credential})
    code_sms = sms_to(mobile)
    say(f"  SMS to {mobile}: {_masked(code_sms.splitlines()[0] if code_sms else '')}")
    code = DEMO_SECRET.search(code_sms)
    granted = client.post("/csc/v2/credentials/authorize", headers=auth, json={
        "credentialID": credential, "PIN": pin, "OTP": code.group(0) if code else "",
        "documentDigests": [digest]})
    if granted.status_code != 200:
        say(f"UNEXPECTED: authorisation refused: {granted.get_json()}")
        return
    sad = granted.get_json()
    say("the holder authorised it with her PIN and the SMS code: a single-use SAD bound to "
        f"this permit's SHA-256, valid {sad['expiresIn']} s")
    signed = client.post("/csc/v2/signatures/signDoc", headers=auth,
                         content_type="multipart/form-data", data={
                             "credentialID": credential, "SAD": sad["SAD"],
                             "conformance_level": "AdES-B-LT",
                             "document": (io.BytesIO(document), "permis.pdf")})
    if signed.status_code != 200:
        say(f"UNEXPECTED: signing failed: {signed.get_json()}")
        return
    output = settings.var_dir / "permis-2026-0042-signe.pdf"
    output.write_bytes(signed.data)
    say(f"signatures/signDoc: {signed.headers['X-Signature-Level']}, visible stamp in French "
        f"and Arabic, written to {output} ({len(signed.data):,} bytes)")
    report = client.post("/v1/verify", headers=auth, data=signed.data,
                         content_type="application/pdf").get_json()
    sig = report["signatures"][0]
    say(f"/v1/verify: {sig['indication']} — {sig['signer']['name']}, CIN "
        f"{sig['signer']['cin']}, {sig['level']}, time-stamp {sig['timestamp_time']}, "
        f"certificate {sig['certificate_now']['status']}")
    with runtime.unit_of_work() as session:
        root_der = next(r.der for r in queries.authorities(session) if r.kind == "root")
    say(f"poppler's pdfsig (our root trusted): {_pdfsig_verdicts(output, root_der)}")

    # The operator revokes the certificate: OCSP says so, and nothing more is signed.
    # (Two seconds later: time-stamps and revocation times count whole seconds, and a
    # revocation in the same second as the signature would leave its order undecided.)
    time.sleep(2)
    authority = wiring.authority()
    with runtime.unit_of_work() as session:
        lifecycle.revoke(session, clock, authority, credential, "key-compromise",
                         actor="operator")
    answer = ocsp.OcspResponder(runtime.sessions, clock).respond(ocsp.canonical_request(
        authority.name_hash, authority.key_hash, int(credential, 16)))
    parsed = x509_ocsp.load_der_ocsp_response(answer.der)
    reason = parsed.revocation_reason.name if parsed.revocation_reason else "unspecified"
    say(f"the operator revoked certificate {credential}; OCSP answers "
        f"{parsed.certificate_status.name.lower()} ({reason})")
    refused = client.post("/csc/v2/credentials/sendOTP", headers=auth,
                          json={"credentialID": credential})
    say(f"a new signature is refused: HTTP {refused.status_code}, "
        f"{refused.get_json()['detail']}")
    again = client.post("/v1/verify", headers=auth, data=signed.data,
                        content_type="application/pdf").get_json()["signatures"][0]
    say(f"the permit signed before the revocation: {again['indication']} (certificate "
        f"{again['certificate_at_signing']['status']} at signing, "
        f"{again['certificate_now']['status']} now)")
    story["signed_pdf"] = str(output)
    story["signing_holder"] = holder_id


def election_chapter(wiring: Wiring, story: Story) -> None:
    """Communal elections in two communes: Karim Benali is re-elected president of
    Nekkour (he keeps his certificate); in Imzouren, Youssef Amrani leaves and the
    vice-president Hanane Alaoui becomes president, with a newcomer as vice-president. Their
    tokens are prepared and shipped before the installation; on the day, the contact hands
    them over, the outgoing certificate is revoked in bulk and the new president signs. The
    report shows no commune blocked and a zero-day gap."""
    runtime = wiring.runtime
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from delivery import batches, campaigns, contacts, holders, mandate_change, mandates, pins
    from delivery import requests as req
    from delivery.backends import ConsoleInbox
    from delivery.personalisation import personalise_request
    from delivery.titles import title_for
    from hsm import generate_pin
    from pki import lifecycle
    from pki.issuance import HOLDER_KEY_LABEL

    chapter("Elections: new councils that can sign on the day they are installed")
    settings, tokens, clock = runtime.settings, runtime.tokens(), runtime.clock
    policy, sealer, personaliser = wiring.policy, wiring.sealer(), wiring.personaliser()
    today = clock.now().date()
    with runtime.unit_of_work() as session:
        contact = contacts.active_contact(session, "01.051")
        outgoing = holders.find_by_cin(session, "RB20005")
        if contact is None or outgoing is None:
            say("UNEXPECTED: the delivery chapter's contact and holders are missing")
            return
        contact_id = contact.id
        sitting = req.current_credential(session, outgoing.id)
        if sitting is not None and sitting.status == "handed_over":
            req.accept_terms(session, clock, sitting.id, version=settings.terms_version,
                             actor="holder")
            req.activate_request(session, clock, sitting.id, actor="holder")
        campaign = campaigns.open_campaign(
            session, clock, name=f"Élections communales {today.year} (démo)",
            installation_date=today, scope_kind="communes",
            scope_codes=["01.051.03.01", "01.051.01.05"], funding="extra", actor="dgcl-admin")
        campaign_id = campaign.id
    say(f"the DGCL opened campaign {campaign_id}: installation of the councils on {today}, "
        "two communes, replacements funded by an extra allotment billed to the DGCL")
    csv_text = "\n".join([
        ",".join(campaigns.CSV_COLUMNS),
        "01.051.03.01,president,R100001,Karim,Benali,كريم,بنعلي,M,0661000000,"
        "karim@commune.example.ma",
        "01.051.01.05,president,R100006,Hanane,Alaoui,حنان,العلوي,Mme,0661000010,"
        "hanane.alaoui@commune.example.ma",
        "01.051.01.05,vice_president,R100007,Omar,Idrissi,عمر,الإدريسي,M,0661000011,"
        "omar.idrissi@commune.example.ma"])
    with runtime.unit_of_work() as session:
        try:
            campaigns.import_elected(session, clock, campaign_id, csv_text.replace(
                "R100007", "R10000X"), actor="dgcl-admin")
        except campaigns.CampaignImportInvalid as exc:
            first = exc.extras["errors"][0]
            say(f"a list with a typo is refused whole: line {first['line']} "
                f"[{first['field']}] {first['message']}")
    with runtime.unit_of_work() as session:
        result = campaigns.import_elected(session, clock, campaign_id, csv_text,
                                          actor="dgcl-admin")
    say(f"the corrected list imported: {result.re_elected} re-elected (keeps the "
        f"certificate), {result.changed_mandate} vice-president who becomes president, "
        f"{result.new_holders} newcomer; {result.requests} requests submitted at once")
    with runtime.unit_of_work() as session:
        seats = campaigns.report(session, clock, campaign_id).seats
        request_ids = [s.request_id for s in seats if s.request_id is not None]
    for request_id in request_ids:
        with runtime.unit_of_work() as session:
            req.approve_request(session, clock, request_id, actor="operator",
                                identity_check="CIN copy and installation minutes checked")
            personalise_request(session, clock, request_id, personaliser=personaliser,
                                sealer=sealer, actor="operator", policy=policy)
    with runtime.unit_of_work() as session:
        batch = batches.prepare_batch(session, clock, "01.051", actor="operator")
        batches.dispatch_batch(session, clock, batch.id, tracking_number="EE202611306MA",
                               actor="operator", policy=policy)
        batches.receive_batch(session, clock, batch.id, actor="contact",
                              contact_id=contact_id)
    say(f"before the installation: {len(request_ids)} tokens personalised (keys generated on "
        "them), shipped by Amana and received by the contact")
    with runtime.unit_of_work() as session:
        dry = campaigns.install(session, clock, campaign_id, actor="dgcl-admin", revoke=None,
                                dry_run=True)
    say(f"installation dry run: would revoke {len(dry.to_revoke)} outgoing certificate(s)")

    # Installation day: hand-over first, then the bulk revocation.
    with runtime.unit_of_work() as session:
        for request_id in request_ids:
            batches.record_handover(session, clock, request_id, handed_to="the new council",
                                    acknowledgement=f"installation receipt {request_id}",
                                    actor="contact", contact_id=contact_id, policy=policy)
            req.accept_terms(session, clock, request_id, version=settings.terms_version,
                             actor="holder")
            req.activate_request(session, clock, request_id, actor="holder")
    authority = wiring.authority()
    with runtime.unit_of_work() as session:
        done = campaigns.install(session, clock, campaign_id, actor="dgcl-admin",
                                 revoke=mandate_change.lifecycle_revoker(session, clock,
                                                                         authority))
        statuses = [lifecycle.certificate_status(session, s).revocation_reason
                    for s in done.revoked]
    say(f"installation: tokens handed over and activated, then {len(done.revoked)} outgoing "
        f"certificate(s) revoked in bulk ({', '.join(map(str, statuses)) or '-'})")
    inbox = ConsoleInbox()
    wiring.worker(inbox=inbox).drain()
    with runtime.unit_of_work() as session:
        hanane = holders.find_by_cin(session, "R100006")
        assert hanane is not None
        mandate = mandates.current_mandate(session, hanane.id)
        credential = req.current_credential(session, hanane.id)
        assert mandate is not None and credential is not None
        title = title_for(mandate.role, hanane.civility, "fr")
        title_ar = title_for(mandate.role, hanane.civility, "ar")
        credential_id, label = credential.id, str(credential.token_label)
        mobile = hanane.mobile
    texts = [body for channel, body in inbox.for_recipient(mobile) if channel == "sms"]
    found = DEMO_SECRET.search(texts[-1]) if texts else None
    if found is None:
        say("UNEXPECTED: the new president's PIN did not arrive")
        return
    new_pin = generate_pin(6)
    pins.change_pin(runtime.sessions, clock, tokens, credential_id, old_pin=found.group(0),
                    new_pin=new_pin, actor="holder")
    key = tokens.private_key(label, new_pin, key_label=HOLDER_KEY_LABEL)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key.sign(b"permis d'habiter n 2026/0107", ec.ECDSA(hashes.SHA256()))
    say(f"Hanane Alaoui, {title} ({title_ar}), changed her PIN and signed a permit the "
        "same day")
    with runtime.unit_of_work() as session:
        final = campaigns.report(session, clock, campaign_id)
        queued = campaigns.notify_contacts(session, clock, campaign_id, actor="dgcl-admin")
    for seat in final.seats:
        say(f"  {seat.commune_fr} — {seat.role}: {seat.incoming_name_fr}"
            f"{' (re-elected)' if seat.re_elected else ''}; outgoing certificate "
            f"{seat.outgoing_status or '-'}; can sign: {'yes' if seat.can_sign else 'no'}")
    say(f"blocked communes: {len(final.blocked)}; largest gap: {final.max_gap_days} day(s); "
        f"{queued} province list(s) emailed to the contact")
    story["campaign"] = campaign_id


def audit_chapter(wiring: Wiring, story: Story) -> None:
    runtime = wiring.runtime
    chapter("Audit")
    with runtime.unit_of_work() as session:
        report = verify(session)
    say(f"audit chain {'intact' if report.ok else 'BROKEN'}: {report.checked} events")


CHAPTERS: list[Callable[[Wiring, Story], None]] = [quotas_chapter, delivery_chapter,
                                                   pki_chapter, signing_chapter,
                                                   election_chapter]
CLOSING: list[Callable[[Wiring, Story], None]] = [audit_chapter]


@click.command("demo")
@click.pass_obj
def demo(lazy: LazyRuntime) -> None:
    """Run the whole story on a fresh embedded database under <var>/demo."""
    from pki.profiles import DOCUMENTATION_POLICY_OID

    base = Settings.from_env()
    var_dir = base.var_dir / "demo"
    # A token server left by the previous run serves the old token directory: end it first.
    from api.runtime import token_server_socket
    from hsm.server import stop_server

    server_pid_file = token_server_socket(base.replace(var_dir=var_dir)).with_suffix(".pid")
    stop_server(server_pid_file)
    shutil.rmtree(var_dir, ignore_errors=True)
    # The demo certifies under RFC 5612's documentation arc unless an arc is configured.
    settings = base.replace(var_dir=var_dir, database_url="",
                            policy_oid=base.policy_oid or DOCUMENTATION_POLICY_OID)
    if "softhsm" in Path(settings.pkcs11_module).name:
        # A fresh token directory too, so the story starts from empty tokens every time.
        from hsm.softhsm import write_softhsm_config

        os.environ["SOFTHSM2_CONF"] = str(write_softhsm_config(var_dir / "softhsm"))
    wiring = Wiring(Runtime(settings))
    say(f"Tawqi demo — working in {var_dir}/ (SQLite + {settings.pkcs11_module})")
    story: Story = {}
    try:
        for step in [*CHAPTERS, *CLOSING]:
            step(wiring, story)
    finally:
        wiring.close()
        stop_server(server_pid_file)  # the token server this run started, by its pid
    click.echo("")
    click.secho("demo complete", bold=True)


COMMANDS = [demo]
