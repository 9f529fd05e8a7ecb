"""Alembic environment: runs migrations on the engine handed over by core.migrate.

SQLite: a batch migration copies a table into a new one and drops the old; with foreign keys
enforced (``core.db`` turns them on for every connection) dropping a table that other rows
reference fails. As SQLite's documentation prescribes for such changes, foreign keys are
turned off for the migration (outside any transaction, the only place SQLite honours it),
``PRAGMA foreign_key_check`` must find nothing before the commit, and they are on again
before the connection goes back to the pool.
"""

from __future__ import annotations

from alembic import context

from core.db import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    raw = connection.connection.driver_connection if sqlite else None
    if raw is not None:
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if raw is not None:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"the migration broke {len(broken)} foreign key(s), "
                                   f"e.g. {tuple(broken[0])}; nothing was committed")
        connection.commit()
    finally:
        if raw is not None:
            connection.rollback()
            raw.execute("PRAGMA foreign_keys=ON")
