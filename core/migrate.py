"""Alembic, configured in code so that ``tawqi db upgrade`` needs no ini file.

Each package keeps its own migrations in ``<package>/migrations`` on its own Alembic
branch (label = package name); ``depends_on`` orders the branches. ``upgrade heads``
brings every branch up to date.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
PACKAGES_WITH_MIGRATIONS = ("core", "quotas", "pki", "pki/signing", "delivery", "api")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "core" / "alembic"))
    locations = [str(ROOT / name / "migrations") for name in PACKAGES_WITH_MIGRATIONS
                 if (ROOT / name / "migrations").is_dir()]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, target: str = "heads") -> None:
    command.upgrade(alembic_config(engine), target)


def downgrade(engine: Engine, target: str = "base") -> None:
    command.downgrade(alembic_config(engine), target)


def current_heads(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())
