"""SoftHSM2-only helpers, for tests and the demo. Nothing in the main path uses this file.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is initialised (C_Initialize). So a new
token directory takes effect either in a process that has not loaded the module yet, or
after :func:`use_config`, which points the environment at the new file and finalises and
initialises the module again in this process.
"""

from __future__ import annotations

import os
from pathlib import Path

from hsm import _module


def write_softhsm_config(directory: str | os.PathLike[str]) -> Path:
    """Write ``softhsm2.conf`` with its own ``tokens/`` directory under ``directory``.

    Returns the path of the file; the caller sets ``SOFTHSM2_CONF`` to it (or calls
    :func:`use_config`) before the module is initialised.
    """
    base = Path(directory)
    tokens = base / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = base / "softhsm2.conf"
    conf.write_text(
        "# Written by hsm.softhsm.write_softhsm_config\n"
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n",
        encoding="utf-8",
    )
    return conf


def use_config(conf: str | os.PathLike[str], module_path: str) -> None:
    """Make ``conf`` the SoftHSM2 configuration of this process, now.

    Sets ``SOFTHSM2_CONF``; if the module is already initialised in this process, finalises
    and initialises it again so that it reads the new file. Every session and key object of
    every :class:`~hsm.TokenLibrary` on that module is dead afterwards (their pools notice the
    new module generation and start afresh).
    """
    os.environ["SOFTHSM2_CONF"] = str(conf)
    module = _module._registry.get(module_path)
    if module is not None and module.pid == os.getpid():
        module.reinitialize()
