"""Alembic, driven from code: `python -m mailer migrate`, `make run` and the tests use this."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from mailer.db import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`. Runs its own event loop: call it outside one."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@cache  # the scripts do not change under a running process (GET /ready asks each time)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(revision_of)
    finally:
        await engine.dispose()


def revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(database_url: str) -> bool:
    return asyncio.run(current_revision(database_url)) == head_revision()
