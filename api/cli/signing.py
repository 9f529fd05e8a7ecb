"""``tawqi sign``: operations on signed PDFs that need no holder (the TSA signs).

``tawqi sign extend IN OUT`` adds an archive time-stamp (PAdES B-LTA): a signed PDF of any
level becomes B-LTA; a B-LTA one gets a fresh time-stamp before the last one's TSA
certificate expires. Needs the service token (``TAWQI_SERVICE_PIN``), as ``tawqi ca``.
"""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.common import current_wiring, fail
from core.errors import TawqiError


@click.group("sign")
def sign_group() -> None:
    """Signed PDFs: add an archive time-stamp (B-LTA)."""


@sign_group.command("extend")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def sign_extend(source: Path, target: Path) -> None:
    """Write SOURCE to TARGET with the current validation data of its signatures and a new
    archive time-stamp from our TSA (PAdES B-LTA)."""
    try:
        extended = current_wiring().pades().extend(source.read_bytes())
    except TawqiError as exc:
        fail(exc)
    target.write_bytes(extended.data)
    click.echo(f"{target}: PAdES B-LTA, {extended.signatures} signature(s), archive "
               f"time-stamp #{extended.archive_timestamps} ({extended.field_name}); extend "
               f"again before {extended.archive_expires:%Y-%m-%d}")


COMMANDS = [sign_group]
