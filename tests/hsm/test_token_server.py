"""One token state across processes: SoftHSM2 held by one token server (``hsm.server``),
reached by separate worker processes through p11-kit's client module.

Each test starts its own server over its own SoftHSM2 token directory and ends it by pid.
The workers are spawned processes, each with its own TokenLibrary and database PIN counter
(both databases), as gunicorn workers are.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine

from api.runtime import Runtime, token_server_socket
from core.config import Settings
from hsm import generate_pin
from hsm.server import client_module_path, is_serving, server_address, stop_server
from hsm.softhsm import write_softhsm_config
from tests.hsm.token_workers import MESSAGE, Worker, start_workers


@pytest.fixture
def token_server(tmp_path: Path, softhsm_module_path: str,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``python -m hsm.server`` over a fresh token directory; the workers spawned during
    the test inherit P11_KIT_SERVER_ADDRESS. Ended by its pid."""
    conf = write_softhsm_config(tmp_path / "softhsm")
    sock = tmp_path / "hsm" / "pkcs11.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "hsm.server", "--module", softhsm_module_path,
         "--socket", str(sock), "--pid-file", str(tmp_path / "hsm" / "pkcs11.pid")],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not is_serving(sock):
            assert process.poll() is None, "the token server exited"
            assert time.monotonic() < deadline, "the token server did not start"
            time.sleep(0.05)
        monkeypatch.setenv("P11_KIT_SERVER_ADDRESS", server_address(sock))
        # the workers reach the tokens through the server only, never the token files
        monkeypatch.setenv("SOFTHSM2_CONF", str(tmp_path / "no-token-files-here.conf"))
        yield server_address(sock)
    finally:
        process.terminate()
        process.wait(30)
    assert not sock.exists()  # it cleaned up after itself


def _workers(count: int, db_engine: Engine) -> list[Worker]:
    return start_workers(count, db_engine.url.render_as_string(hide_password=False))


def test_two_workers_see_one_token_state(token_server: str, db_engine: Engine) -> None:
    first, second = workers = _workers(2, db_engine)
    try:
        label = f"t-{secrets.token_hex(6)}"
        so_pin, pin = secrets.token_hex(8), generate_pin(8)

        # A token created in one worker is found, and signs, in the other.
        first.ok("init_token", label, so_pin, pin)
        assert second.ok("token_exists", label) is True
        public = serialization.load_pem_public_key(first.ok("generate", label, pin, b"\x01"))
        signature = second.ok("sign", label, pin, b"\x01")
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, MESSAGE, ec.ECDSA(hashes.SHA256()))

        # The second worker now holds a pooled, logged-in session on that token. A PIN
        # change in the first refuses the old PIN there, for checks and for signing.
        new_pin = generate_pin(8)
        first.ok("change_pin", label, pin, new_pin)
        assert second.call("check_pin", label, pin) == ("PinIncorrect", {"attempts_left": 4})
        assert second.call("sign", label, pin, b"\x01")[0] == "PinIncorrect"
        second.ok("check_pin", label, new_pin)  # and the new PIN is accepted (count reset)
        assert first.ok("failures", label) == 0

        # A reset in the first is honoured in the second: old PIN refused, new one works.
        reset_pin = first.ok("reset_pin", label, so_pin)
        assert second.call("check_pin", label, new_pin)[0] == "PinIncorrect"
        second.ok("check_pin", label, reset_pin)
        signature = second.ok("sign", label, reset_pin, b"\x01")
        public.verify(signature, MESSAGE, ec.ECDSA(hashes.SHA256()))
        # A worker that forks after using the module: the child gets its own connection.
        assert first.ok("forked_check_pin", label, reset_pin) == 0
    finally:
        for worker in workers:
            worker.stop()


def test_a_process_closing_its_library_leaves_the_others_logged_in(
        token_server: str, db_engine: Engine) -> None:
    """Through the token server every process shares one login per token: a process that
    ends (a recycled gunicorn worker) must not log the CA token out under the others."""
    first, second = workers = _workers(2, db_engine)
    try:
        label = f"t-{secrets.token_hex(6)}"
        so_pin, pin = secrets.token_hex(8), generate_pin(8)
        first.ok("init_token", label, so_pin, pin)
        public = serialization.load_pem_public_key(first.ok("generate", label, pin, b"\x02"))
        assert isinstance(public, ec.EllipticCurvePublicKey)
        first.ok("hold", label, pin, b"\x02")
        second.ok("sign", label, pin, b"\x02")
        second.ok("close")
        public.verify(first.ok("sign_held", label), MESSAGE, ec.ECDSA(hashes.SHA256()))
    finally:
        for worker in workers:
            worker.stop()


def test_processes_initialising_tokens_together_never_share_a_slot(
        token_server: str, db_engine: Engine) -> None:
    """Two processes behind one token server each initialise tokens at the same moment
    (personalisation does): each picks a free slot alone, so none fails for want of a slot
    and no token is initialised over another (PKCS#11 lets C_InitToken wipe a slot)."""
    workers = _workers(2, db_engine)
    try:
        so_pin, pin = secrets.token_hex(8), generate_pin(8)
        prefixes = [f"i{secrets.token_hex(3)}", f"j{secrets.token_hex(3)}"]
        for worker, prefix in zip(workers, prefixes, strict=True):
            worker.conn.send(("init_many", (prefix, so_pin, pin, 12)))
        for worker in workers:
            assert worker.conn.poll(300)
            assert worker.conn.recv() == ("ok", [])
        for prefix in prefixes:
            for n in range(12):
                assert workers[0].ok("token_exists", f"{prefix}-{n}") is True
    finally:
        for worker in workers:
            worker.stop()


def _sign_while_another_checks(db_engine: Engine, command: str, count: int) -> int:
    """One worker signs ``count`` times with one key object (``command``: one by one, or
    in batches) while another checks the right PIN 100 times: nothing is refused. Returns
    how many signatures the signer's signing lanes made."""
    signer, checker = workers = _workers(2, db_engine)
    try:
        label = f"t-{secrets.token_hex(6)}"
        so_pin, pin = secrets.token_hex(8), generate_pin(8)
        signer.ok("init_token", label, so_pin, pin)
        signer.ok("generate", label, pin, b"\x01")
        signer.conn.send((command, (label, pin, b"\x01", count)))
        checker.conn.send(("check_many", (label, pin, 100)))
        for worker in workers:
            assert worker.conn.poll(180)
        signed = signer.conn.recv()
        assert checker.conn.recv() == ("ok", 100)
        assert signed == ("ok", {"ok": count})
        lanes: int = signer.ok("signatures_in_lanes")
        return lanes
    finally:
        for worker in workers:
            worker.stop()


def test_signing_goes_on_while_another_process_checks_the_pin(token_server: str,
                                                              db_engine: Engine) -> None:
    """Login state is the token's, shared by every client of the server: a PIN check
    elsewhere logs the token out and in again. A key object in another worker that signs
    meanwhile must not fail (nor stay failed) because of that."""
    _sign_while_another_checks(db_engine, "sign_many", 400)


def test_batches_go_on_while_another_process_checks_the_pin(token_server: str,
                                                            db_engine: Engine) -> None:
    """The batch path under the same logouts: through the token server a batch is shared
    between the worker's own session and a signing lane (another connection, another
    thread), two module calls per signature; every signature of every batch verifies, in
    order, none is refused."""
    assert _sign_while_another_checks(db_engine, "sign_batches", 1000) > 0


def test_sealed_secrets_across_workers(token_server: str, db_engine: Engine) -> None:
    """Sealing goes through the token server like everything else (the key is derived on
    the token with CKM_SHA256_HMAC, which p11-kit's RPC carries): no process loads SoftHSM2,
    and a token made after a worker started is found at once."""
    first, second = workers = _workers(2, db_engine)
    try:
        labels = [f"t-{secrets.token_hex(6)}" for _ in range(2)]
        so_pin, pin = secrets.token_hex(8), generate_pin(8)
        first.ok("init_token", labels[0], so_pin, pin)
        first.ok("ensure_secret_key", labels[0], pin, "envelope")
        blob = second.ok("encrypt", labels[0], pin, "envelope", b"PIN 4829", b"req-1")
        assert first.ok("decrypt", labels[0], pin, "envelope", blob, b"req-1") == b"PIN 4829"
        assert first.call("decrypt", labels[0], pin, "envelope", blob, b"req-2")[0] == \
            "DecryptionFailed"
        # a token made after the second worker's sealing module started
        first.ok("init_token", labels[1], so_pin, pin)
        first.ok("ensure_secret_key", labels[1], pin, "envelope")
        blob = second.ok("encrypt", labels[1], pin, "envelope", b"PIN 7351", b"")
        assert first.ok("decrypt", labels[1], pin, "envelope", blob, b"") == b"PIN 7351"
    finally:
        for worker in workers:
            worker.stop()


def test_lockout_counts_exactly_five_across_processes(token_server: str,
                                                      db_engine: Engine) -> None:
    """16 wrong PINs at once over 4 processes (4 threads each), three times: exactly 5
    reach the token and are counted, every other attempt is refused as locked, and the
    right PIN is refused too until the SO resets the PIN."""
    workers = _workers(4, db_engine)
    try:
        label = f"t-{secrets.token_hex(6)}"
        so_pin, pin = secrets.token_hex(8), generate_pin(8)
        workers[0].ok("init_token", label, so_pin, pin)
        for _trial in range(3):
            wrong = generate_pin(8)
            while wrong == pin:
                wrong = generate_pin(8)
            for worker in workers:
                worker.conn.send(("burst", (label, wrong, 4)))
            outcomes: list[tuple[str, dict[str, int]]] = []
            for worker in workers:
                assert worker.conn.poll(120)
                status, value = worker.conn.recv()
                assert status == "ok", value
                outcomes += [(name, extras) for name, extras in value]
            assert len(outcomes) == 16
            names = Counter(name for name, _ in outcomes)
            # Five reached the token: four "wrong PIN" with 4..1 left, the fifth locked it;
            # the eleven others were refused before the token saw them.
            assert names == Counter({"PinIncorrect": 4, "PinLocked": 12})
            assert sorted(extras["attempts_left"] for name, extras in outcomes
                          if name == "PinIncorrect") == [1, 2, 3, 4]
            for worker in workers:
                assert worker.ok("failures", label) == 5
            assert workers[1].call("check_pin", label, pin)[0] == "PinLocked"
            assert workers[2].ok("failures", label) == 5  # a refused check counts nothing
            pin = workers[3].ok("reset_pin", label, so_pin)
            assert workers[0].ok("failures", label) == 0
            workers[1].ok("check_pin", label, pin)
    finally:
        for worker in workers:
            worker.stop()


def test_the_runtime_starts_and_reuses_one_token_server(
        tmp_path: Path, softhsm_module_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded default (TAWQI_PKCS11_SERVER=auto with SoftHSM2): the first Runtime
    starts the server under var/hsm, the next one reuses it; both load p11-kit's client.

    Not parametrised by database: p11-kit's client module reads P11_KIT_SERVER_ADDRESS once
    per process, so this pytest process talks to one token server only."""
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    monkeypatch.delenv("P11_KIT_SERVER_ADDRESS", raising=False)
    settings = Settings(var_dir=tmp_path / "var", pkcs11_module=softhsm_module_path,
                        pkcs11_server="auto")
    socket = token_server_socket(settings)
    first = Runtime(settings)
    second = Runtime(settings)
    try:
        tokens = first.tokens()
        assert tokens.module_path == client_module_path()
        assert is_serving(socket)
        assert tokens.token_exists("no-such-token") is False  # answered through the server
        pid = socket.with_suffix(".pid").read_text().strip()
        assert second.tokens().module_path == client_module_path()
        assert socket.with_suffix(".pid").read_text().strip() == pid  # reused, not another
        assert os.environ["P11_KIT_SERVER_ADDRESS"] == server_address(socket)
        assert os.environ["SOFTHSM2_CONF"].startswith(str(settings.var_dir.absolute()))
    finally:
        first.close()
        second.close()
        assert stop_server(socket.with_suffix(".pid"))
    assert not socket.exists()


def test_gunicorn_hook_and_cli_manage_the_token_server(
        tmp_path: Path, softhsm_module_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What deploy/gunicorn.conf.py's master does (start_token_server), and ``tawqi hsm
    status`` / ``stop`` ending exactly that server by its pid file."""
    from click.testing import CliRunner

    from api.cli import cli
    from api.runtime import start_token_server

    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    env = {"TAWQI_VAR_DIR": str(tmp_path / "var"), "TAWQI_PKCS11_SERVER": "auto",
           "TAWQI_PKCS11_MODULE": softhsm_module_path}
    settings = Settings(var_dir=tmp_path / "var", pkcs11_module=softhsm_module_path,
                        pkcs11_server="auto")
    runner = CliRunner()
    assert runner.invoke(cli, ["hsm", "status"], env=env).exit_code == 1
    pid_file = start_token_server(settings)
    try:
        assert pid_file is not None and pid_file.exists()
        assert start_token_server(settings) is None  # already running: not ours to end
        status = runner.invoke(cli, ["hsm", "status"], env=env)
        assert status.exit_code == 0 and "serving at unix:path=" in status.output
        stopped = runner.invoke(cli, ["hsm", "stop"], env=env)
        assert "stopped" in stopped.output
        assert not token_server_socket(settings).exists()
        assert runner.invoke(cli, ["hsm", "status"], env=env).exit_code == 1
    finally:
        if pid_file is not None:
            stop_server(pid_file)
    assert start_token_server(settings.replace(pkcs11_server="off")) is None
