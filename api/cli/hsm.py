"""``tawqi hsm``: the token server that gives every process one token state.

``tawqi hsm serve`` holds the PKCS#11 module (SoftHSM2) in one process and serves it to the
API workers, ``tawqi serve``, ``tawqi worker`` and the other commands through p11-kit's
client module. With ``TAWQI_PKCS11_SERVER=auto`` (the default) the processes start it on
demand; run it yourself (systemd, a container) and set ``TAWQI_PKCS11_SERVER`` to its socket
to manage its life explicitly. See docs/hsm.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from api.runtime import Runtime, token_server_socket
from core.config import Settings


def _socket(settings: Settings, socket: str | None) -> Path:
    if socket:
        return Path(socket).absolute()
    if settings.pkcs11_server not in ("auto", "off") and \
            not settings.pkcs11_server.startswith("unix:"):
        return Path(settings.pkcs11_server).absolute()
    return token_server_socket(settings)


@click.group("hsm")
def hsm_group() -> None:
    """The token server (one token state for every process)."""


@hsm_group.command("serve")
@click.option("--socket", help="unix socket to listen on (default: <var>/hsm/pkcs11.sock "
              "or TAWQI_PKCS11_SERVER)")
@click.option("--idle-timeout", type=float, default=None,
              help="exit after this many seconds without any client (default: never)")
def serve(socket: str | None, idle_timeout: float | None) -> None:
    """Serve TAWQI_PKCS11_MODULE on a unix socket until SIGTERM (foreground)."""
    from hsm import server

    settings = Settings.from_env()
    Runtime._prepare_softhsm_for(settings)
    path = _socket(settings, socket)
    args = ["--module", settings.pkcs11_module, "--socket", str(path),
            "--pid-file", str(path.with_suffix(".pid"))]
    if idle_timeout is not None:
        args += ["--idle-timeout", str(idle_timeout)]
    raise SystemExit(server.main(args))


@hsm_group.command("stop")
@click.option("--socket", help="the server's socket (its pid file sits beside it)")
def stop(socket: str | None) -> None:
    """End the token server named by the pid file beside its socket."""
    from hsm.server import stop_server

    path = _socket(Settings.from_env(), socket)
    if stop_server(path.with_suffix(".pid")):
        click.echo(f"token server at {path} stopped")
    else:
        click.echo(f"no token server running at {path}")


@hsm_group.command("status")
@click.option("--socket", help="the server's socket")
def status(socket: str | None) -> None:
    """Say whether the token server answers, and its P11_KIT_SERVER_ADDRESS."""
    from hsm.server import is_serving, server_address

    path = _socket(Settings.from_env(), socket)
    if is_serving(path):
        click.echo(f"serving at {server_address(path)}")
    else:
        click.echo(f"not running ({path})")
        raise SystemExit(1)


COMMANDS = [hsm_group]
